"""NWPU VHR-10: horizontal-box object detection in very-high-resolution images, 10 classes.

Cheng, Han, Zhou, Guo: "Multi-class geospatial object detection and geographic image classification based on
collection of part detectors", ISPRS JPRS 2014; Cheng, Han: "A survey on object detection in optical remote sensing
images", ISPRS JPRS 2016. Distributed by Northwestern Polytechnical University for research use only; no
georeferencing. Google Earth and Vaihingen imagery, 0.08–2 m.

The copy in ``../shared/data/nwpu_vhr10`` comes from github.com/anlimo1510/faster_rcnn_NWPU_VHR @ fa87518e, path
``data/NWPU_VHR/{positive_image_set,ground_truth,image_set}``: the 650 positive images (``001.jpg``..``650.jpg``,
about 500–1100 pixels), one ground-truth file per image with one box per line ``(x1,y1),(x2,y2),class_id``, and that
repository's ``train.txt``/``test.txt`` lists (454 / 196 images). The 150 negative images are not included.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from skysense.containers import Sample
from skysense.data.datasets.base import (
    SkySenseDataset,
    Transform,
    hash_order,
    letterbox,
    open_image,
    require_path,
    rgb_image,
)
from skysense.data.sensors import HR_RGB

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX_LINE = re.compile(rf"^\s*\({_NUMBER},{_NUMBER}\)\s*,\s*\({_NUMBER},{_NUMBER}\)\s*,\s*(\d+)\s*$")


def parse_nwpu_vhr10_boxes(path: Path, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one NWPU VHR-10 ground-truth file.

    Each non-empty line is ``(x1,y1),(x2,y2),class_id`` (spaces allowed), with (x1, y1) the top-left and (x2, y2)
    the bottom-right corner in pixels and ``class_id`` in 1..10.

    Returns:
        boxes (N, 4) float32 xyxy in pixels, labels (N,) int64 in 1..``num_classes``.

    Raises:
        ValueError: naming the file and line of a malformed box, an unknown class or a box with x2 <= x1 or y2 <= y1.
    """
    require_path(path, "NWPU VHR-10 ground-truth file")
    boxes, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = _BOX_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected '(x1,y1),(x2,y2),class_id', got {line!r}")
        x1, y1, x2, y2 = (float(match[i]) for i in range(1, 5))
        label = int(match[5])
        if not 1 <= label <= num_classes:
            raise ValueError(f"{path}:{number}: class id {label} outside 1..{num_classes}")
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"{path}:{number}: empty box {line.strip()!r}")
        boxes.append((x1, y1, x2, y2))
        labels.append(label)
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
    )


class NWPUVHR10(SkySenseDataset):
    """NWPU VHR-10 positive images as the HR image, target the boxes (horizontal object detection).

    Each sample: ``hr`` (3, S, S) float32 in DN 0–255, ``hr_valid`` False on padding, ``target`` a dict
    ``{"boxes": (N, 4) float32 xyxy in output pixels, "labels": (N,) int64 in 1..10}`` (0 is reserved for the
    background, as torchvision detectors expect: ``classes[label]`` is the name), no date or coordinates. ``meta``
    records the file's size and the scale applied.

    Size: images are about 500–1100 pixels and of many shapes. With ``image_size`` (default 800, a multiple of 32)
    the longer side is resized to it (aspect kept, bilinear) and the image padded at the bottom/right to a square
    (boxes scaled with the image), so that batches stack. With ``image_size=None`` the native size is padded up to
    the next multiple of 32 (no resampling; only ``batch_size=1`` then collates).

    Splits: "train" / "test" from ``image_set/{train,test}.txt`` (that repository's split), "all" = the 650 images.
    With ``val_fraction`` > 0, "val" takes that share of the train list in a seeded SHA-256 order of the image ids and
    "train" the rest; with 0 (default) "train" is the list as published and "val" is refused.

    Args:
        root: the folder with ``positive_image_set/``, ``ground_truth/``, ``image_set/`` (or one holding
            ``data/NWPU_VHR/`` with them, as in ``../shared/data/nwpu_vhr10``).
        split: "all", "train", "val" or "test".
        image_size: square canvas side, or None (native size padded to a multiple of 32).
        val_fraction: share of the train list held out as "val".
        seed: seed of that hold-out.
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.
    """

    sensors = {"hr": HR_RGB}
    splits = ("all", "train", "val", "test")
    classes = (
        "background",
        "airplane",
        "ship",
        "storage tank",
        "baseball diamond",
        "tennis court",
        "basketball court",
        "ground track field",
        "harbor",
        "bridge",
        "vehicle",
    )

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        image_size: int | None = 800,
        val_fraction: float = 0.0,
        seed: int = 0,
        transforms: Transform | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, split, transforms, download)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if split == "val" and val_fraction == 0.0:
            raise ValueError("NWPU VHR-10 has no published validation list: pass val_fraction > 0 to hold one out")
        self.image_size, self.val_fraction, self.seed = image_size, val_fraction, seed
        base = self.root if (self.root / "positive_image_set").is_dir() else self.root / "data" / "NWPU_VHR"
        self.image_dir = require_path(base / "positive_image_set", "NWPU VHR-10 image folder")
        self.label_dir = require_path(base / "ground_truth", "NWPU VHR-10 ground-truth folder")
        if split == "all":
            ids = sorted(p.stem for p in self.image_dir.glob("*.jpg"))
        else:
            list_name = "test" if split == "test" else "train"
            path = require_path(base / "image_set" / f"{list_name}.txt", f"NWPU VHR-10 {list_name} list")
            ids = path.read_text().split()
            if split in ("train", "val") and val_fraction > 0:
                order = hash_order(ids, seed)
                cut = round(val_fraction * len(ids))
                chosen = sorted(order[:cut] if split == "val" else order[cut:])
                ids = [ids[i] for i in chosen]
        self.ids = ids
        self.annotations = [parse_nwpu_vhr10_boxes(self.label_dir / f"{i}.txt", len(self.classes) - 1) for i in ids]
        for i in ids:
            require_path(self.image_dir / f"{i}.jpg", "NWPU VHR-10 image")

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, index: int) -> Sample:
        image_id = self.ids[index]
        path = self.image_dir / f"{image_id}.jpg"
        image, valid = rgb_image(open_image(path), path)
        width, height = image.size
        boxes, labels = self.annotations[index]
        if len(boxes) and (boxes[:, 2].max() > width or boxes[:, 3].max() > height or boxes.min() < 0):
            raise ValueError(
                f"{self.label_dir / f'{image_id}.txt'}: boxes reach outside the {width}×{height} image {path}"
            )
        hr, hr_valid, (scale_x, scale_y) = letterbox(image, valid, self.image_size)
        scaled = boxes * torch.tensor([scale_x, scale_y, scale_x, scale_y])
        return Sample(
            hr=hr,
            hr_valid=hr_valid,
            target={"boxes": scaled, "labels": labels.clone()},
            meta={
                "source": str(path),
                "id": image_id,
                "annotation": str(self.label_dir / f"{image_id}.txt"),
                "original_size": (height, width),
                "scale": (scale_y, scale_x),
            },
        )
