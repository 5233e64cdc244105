"""DOTA v1.0 oriented-box labels: the ``labelTxt`` parser, and a small dataset over ``images/`` + ``labelTxt/``.

Xia, Bai, Ding, Zhu, Belongie, Luo, Datcu, Pelillo, Zhang: "DOTA: A Large-scale Dataset for Object Detection in
Aerial Images", CVPR 2018. DOTA images are for academic research use only (Google Earth terms). The example in
``../shared/data/dota_devkit_example`` comes from github.com/CAPTAIN-WHU/DOTA_devkit @ 99388551, folder ``example/``
(2 of its 7 images: P0706.png 1111×1182 with 536 objects, P1888.png 712×557 with 64); the devkit has no licence file.

``labelTxt`` format: optional header lines ``imagesource:<source>`` and ``gsd:<metres per pixel>``, then one object
per line ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult`` (the four corners clockwise from the first one; ``difficult``
0 or 1).
"""

from __future__ import annotations

from pathlib import Path

import torch

from skysense.containers import Sample
from skysense.data.datasets.base import SkySenseDataset, Transform, letterbox, open_image, require_path, rgb_image
from skysense.data.sensors import HR_RGB

DOTA_V1_CLASSES = (
    "plane",
    "ship",
    "storage-tank",
    "baseball-diamond",
    "tennis-court",
    "basketball-court",
    "ground-track-field",
    "harbor",
    "bridge",
    "large-vehicle",
    "small-vehicle",
    "helicopter",
    "roundabout",
    "soccer-ball-field",
    "swimming-pool",
)


def parse_dota_labels(
    path: str | Path, classes: tuple[str, ...] = DOTA_V1_CLASSES
) -> tuple[dict[str, torch.Tensor], dict[str, str | float | None]]:
    """Parse one DOTA ``labelTxt`` file.

    Args:
        path: the label file (CRLF or LF line ends).
        classes: the category list (default DOTA v1.0); label = 1 + the category's position, 0 = background.

    Returns:
        target: ``{"polygons": (N, 4, 2) float32 corner (x, y) in pixels in file order, "boxes": (N, 4) float32 xyxy
        enclosing each polygon, "labels": (N,) int64 in 1..len(classes), "difficult": (N,) bool}``;
        header: ``{"imagesource": str or None, "gsd": float or None}`` (metres per pixel; None when absent or
        "null").

    Raises:
        FileNotFoundError / ValueError: naming the file and line of a malformed object or an unknown category.
    """
    path = Path(path)
    require_path(path, "DOTA label file")
    header: dict[str, str | float | None] = {"imagesource": None, "gsd": None}
    polygons, labels, difficult = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep and key in header:
            if key == "gsd":
                try:
                    header["gsd"] = None if value.strip().lower() in ("null", "none", "") else float(value)
                except ValueError as err:
                    raise ValueError(f"{path}:{number}: gsd must be a number, got {value!r}") from err
            else:
                header[key] = value.strip()
            continue
        fields = line.split()
        if len(fields) not in (9, 10):
            raise ValueError(f"{path}:{number}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 category difficult', got {line!r}")
        try:
            coordinates = [float(v) for v in fields[:8]]
            hard = bool(int(fields[9])) if len(fields) == 10 else False
        except ValueError as err:
            raise ValueError(f"{path}:{number}: non-numeric coordinate or difficult flag in {line!r}") from err
        category = fields[8]
        if category not in classes:
            raise ValueError(f"{path}:{number}: unknown category {category!r}; expected one of {list(classes)}")
        polygons.append(coordinates)
        labels.append(classes.index(category) + 1)
        difficult.append(hard)
    polygon_tensor = torch.tensor(polygons, dtype=torch.float32).reshape(-1, 4, 2)  # (N, 4 corners, xy)
    boxes = torch.cat([polygon_tensor.amin(dim=1), polygon_tensor.amax(dim=1)], dim=1)  # (N, 4) x1 y1 x2 y2
    target = {
        "polygons": polygon_tensor,
        "boxes": boxes,
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
    }
    return target, header


class DOTA(SkySenseDataset):
    """DOTA images with oriented and enclosing horizontal boxes (``root/images/<id>.png``, ``root/labelTxt/<id>.txt``).

    Each sample: ``hr`` (3, S, S) float32 DN 0–255 (grayscale images, which DOTA contains, are replicated to three
    channels), ``hr_valid`` False on padding, ``target`` the :func:`parse_dota_labels` dict with polygons and boxes
    scaled to the output pixels, ``meta`` with the ground sample distance and the scale applied.

    Size: as :class:`~skysense.data.datasets.NWPUVHR10`: ``image_size`` resizes the longer side and pads to a square
    (a multiple of 32); None (default, DOTA images are large and usually tiled) keeps the native size padded to a
    multiple of 32.

    Geometric transforms of :mod:`skysense.data.transforms` move ``boxes`` but not ``polygons``, which would be
    stale after a flip or rotation: train with ``keep_polygons=False`` when using them, or use no geometric
    transforms.

    Args:
        root: the folder with ``images/`` and ``labelTxt/`` (e.g. ``../shared/data/dota_devkit_example/example``).
        image_size: square canvas side, or None.
        keep_polygons: include ``polygons`` in the target.
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.
    """

    sensors = {"hr": HR_RGB}
    splits = ("all",)
    classes = ("background", *DOTA_V1_CLASSES)
    image_suffixes = (".png", ".jpg", ".tif")

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "all",
        image_size: int | None = None,
        keep_polygons: bool = True,
        transforms: Transform | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, split, transforms, download)
        self.image_size, self.keep_polygons = image_size, keep_polygons
        self.image_dir = require_path(self.root / "images", "DOTA image folder")
        self.label_dir = require_path(self.root / "labelTxt", "DOTA label folder")
        self.ids = sorted(p.stem for p in self.label_dir.glob("*.txt"))
        if not self.ids:
            raise FileNotFoundError(f"no DOTA label files (*.txt) in {self.label_dir}")
        self.images = [self._image_path(i) for i in self.ids]

    def _image_path(self, image_id: str) -> Path:
        for suffix in self.image_suffixes:
            if (path := self.image_dir / f"{image_id}{suffix}").is_file():
                return path
        raise FileNotFoundError(
            f"DOTA image not found: expected {self.image_dir / image_id}{{{','.join(self.image_suffixes)}}}"
        )

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, index: int) -> Sample:
        path, label_path = self.images[index], self.label_dir / f"{self.ids[index]}.txt"
        target, header = parse_dota_labels(label_path, DOTA_V1_CLASSES)
        image, valid = rgb_image(open_image(path), path, allow_gray=True)
        width, height = image.size
        hr, hr_valid, (scale_x, scale_y) = letterbox(image, valid, self.image_size)
        target["polygons"] = target["polygons"] * torch.tensor([scale_x, scale_y])
        target["boxes"] = target["boxes"] * torch.tensor([scale_x, scale_y, scale_x, scale_y])
        if not self.keep_polygons:
            del target["polygons"]
        return Sample(
            hr=hr,
            hr_valid=hr_valid,
            target=target,
            meta={
                "source": str(path),
                "id": self.ids[index],
                "annotation": str(label_path),
                "gsd": header["gsd"],
                "imagesource": header["imagesource"],
                "original_size": (height, width),
                "scale": (scale_y, scale_x),
            },
        )
