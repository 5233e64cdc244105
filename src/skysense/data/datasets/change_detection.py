"""Bi-temporal building/land-cover change detection pairs (LEVIR-CD, DSIFN): two RGB images and a change mask.

LEVIR-CD: Chen, Shi: "A Spatial-Temporal Attention-Based Method and a New Dataset for Remote Sensing Image Change
Detection", Remote Sensing 2020; released for academic use. Google Earth, 0.5 m/pixel; A = 2002–2012, B = 2016–2018;
label 255 = changed building. DSIFN-CD: Zhang et al.: "A deeply supervised image fusion network for change detection
in high resolution bi-temporal remote sensing images", ISPRS JPRS 2020; no explicit licence. Google Earth, six
Chinese cities.

The samples in ``../shared/data/change_detection_samples`` come from github.com/wgcban/ChangeFormer @ afd1b7ed (MIT
licence for the code), folders ``samples_LEVIR/{A,B,label}`` (11 pairs; LEVIR names are
``<split>_<tile>_<row>_<col>.png``; ``train_386_0512_0768`` has an all-zero mask) and ``samples_DSIFN/{A,B,label}``
(10 pairs): 256×256 PNG, labels {0, 255}, no georeferencing. Good for pipeline tests and demos, not a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from skysense.containers import Sample
from skysense.data.datasets.base import (
    SkySenseDataset,
    Transform,
    list_files,
    open_image,
    read_rgb,
    require_path,
    split_folders,
)
from skysense.data.sensors import HR_RGB


def read_change_mask(path: Path) -> torch.Tensor:
    """A {0, 255} (or boolean) mask image → (H, W) int64 with 1 = changed, 0 = unchanged.

    Raises:
        ValueError: naming the file if it holds any other value.
    """
    image = open_image(path)
    if image.mode not in ("L", "1", "P"):
        raise ValueError(f"{path}: expected a single-band change mask, got PIL mode {image.mode!r}")
    values = np.asarray(image.convert("L") if image.mode == "1" else image)
    found = np.unique(values)
    if not np.isin(found, (0, 255)).all():
        raise ValueError(f"{path}: change mask values must be 0 or 255, found {found.tolist()}")
    return torch.from_numpy((values == 255).astype(np.int64))


FIRST_FOLDERS = ("A", "t1", "im1", "time1")  # LEVIR-CD, WHU-CD, S2Looking … / DSIFN-CD / SECOND
SECOND_FOLDERS = ("B", "t2", "im2", "time2")
LABEL_FOLDERS = ("label", "OUT", "mask", "mask1", "gt")  # ChangeFormer/BIT name the masks label (or OUT); DSIFN mask


def _first_folder(parent: Path, names: tuple[str, ...]) -> Path | None:
    return next((parent / n for n in names if (parent / n).is_dir()), None)


class BitemporalChangeDataset(SkySenseDataset):
    """Pairs of a first-date image, a second-date image and a change mask as change-detection samples, in the layouts
    the datasets ship:

    - split folders (the official LEVIR-CD, WHU-CD and DSIFN-CD downloads): ``root/<split>/A``, ``B``, ``label``
      (DSIFN-CD: ``t1``, ``t2``, ``mask``; its test masks are ``.tif`` where the images are ``.jpg``: files are
      paired by name without suffix). ``split="all"`` takes every split folder.
    - one folder of each (ChangeFormer's and BIT's 256² crops): ``root/A``, ``root/B``, ``root/label`` (or ``OUT``),
      the splits listed in ``root/list/<split>.txt`` (one file name per line), else from the file names
      (:class:`LEVIRCD`: ``<split>_…``).

    Each sample: ``hr`` (3, H, W) float32 DN 0–255 = the first date, ``hr_t2`` the same for the second, ``target``
    (H, W) int64, 1 = changed, 0 = unchanged (from 255 / 0), no date (only year ranges are known) and no coordinates.

    Args:
        root: the dataset's folder (holding the split folders, or ``A``, ``B`` and ``label``).
        split: "all", "train", "val" or "test".
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.

    Raises:
        FileNotFoundError: a folder, an image's partner or its mask is missing, or the split has no pair; naming it.
    """

    sensors = {"hr": HR_RGB}
    splits = ("all", "train", "val", "test")
    classes = ("unchanged", "changed")
    suffixes = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "all",
        transforms: Transform | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, split, transforms, download)
        by_split = self.split_folders(self.root)
        if by_split:
            if split != "all" and split not in by_split:
                raise FileNotFoundError(
                    f"{type(self).__name__}: no {split} folder in {self.root} (its split folders: "
                    f"{', '.join(p.name for p in by_split.values())})"
                )
            folders = list(by_split.items()) if split == "all" else [(split, by_split[split])]
        else:
            folders = [("", self.root)]
        self.pairs: list[tuple[Path, Path, Path]] = []
        self.ids: list[str] = []
        for name, folder in folders:
            first = require_path(_first_folder(folder, FIRST_FOLDERS) or folder / FIRST_FOLDERS[0],
                                 "first-date image folder")  # fmt: skip
            second = require_path(_first_folder(folder, SECOND_FOLDERS) or folder / SECOND_FOLDERS[0],
                                  "second-date image folder")  # fmt: skip
            labels = _first_folder(folder, LABEL_FOLDERS)
            if labels is None:
                raise FileNotFoundError(
                    f"change-mask folder not found in {folder}: expected one of {', '.join(LABEL_FOLDERS)}"
                )
            images = list_files(first, self.suffixes)
            if not name and split != "all":
                images = self._select(images, split)
            seconds, masks = _by_stem(list_files(second, self.suffixes)), _by_stem(list_files(labels, self.suffixes))
            for image in images:
                partner, mask = seconds.get(image.stem), masks.get(image.stem)
                if partner is None:
                    raise FileNotFoundError(f"second-date image of {image} not found in {second}")
                if mask is None:
                    raise FileNotFoundError(f"change mask of {image} not found in {labels}")
                self.pairs.append((image, partner, mask))
                self.ids.append(f"{name}/{image.stem}" if len(folders) > 1 else image.stem)
        if not self.pairs:
            raise FileNotFoundError(f"{type(self).__name__}: no image pairs for split {split!r} in {self.root}")
        self.names = [a.name for a, _, _ in self.pairs]

    @classmethod
    def split_folders(cls, root: str | Path) -> dict[str, Path]:
        """{split: folder} of the split folders under ``root`` that hold a first-date image folder."""
        return split_folders(Path(root), lambda folder: _first_folder(folder, FIRST_FOLDERS) is not None)

    @classmethod
    def has_splits(cls, root: str | Path) -> bool:
        """Whether ``root`` is split by folders or list files (else only "all", or the file names, can split it)."""
        return bool(cls.split_folders(root)) or (Path(root) / "list").is_dir()

    def _select(self, images: list[Path], split: str) -> list[Path]:
        """The images of ``split`` in a one-folder layout: by ``root/list/<split>.txt``, else :meth:`_in_split`."""
        listing = self.root / "list" / f"{split}.txt"
        if listing.is_file():
            listed = {Path(line.strip()).stem for line in listing.read_text().splitlines() if line.strip()}
            chosen = [p for p in images if p.stem in listed]
            missing = len(listed) - len(chosen)
            if missing:
                raise FileNotFoundError(f"{listing} lists {missing} images that are not in {images[0].parent}")
            return chosen
        return [p for p in images if self._in_split(p.name, split)]

    def _in_split(self, name: str, split: str) -> bool:
        raise FileNotFoundError(
            f"{type(self).__name__}: {self.root} has no split folders (train/, val/, test/) and no list/{split}.txt; "
            "give split='all', or add the list files"
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> Sample:
        paths = self.pairs[index]
        first, second, mask = read_rgb(paths[0]), read_rgb(paths[1]), read_change_mask(paths[2])
        if first.shape != second.shape or tuple(mask.shape) != tuple(first.shape[-2:]):
            raise ValueError(
                f"pair {self.ids[index]} in {self.root}: A {tuple(first.shape)}, B {tuple(second.shape)} and mask "
                f"{tuple(mask.shape)} differ in size"
            )
        return Sample(
            hr=first, hr_t2=second, target=mask, meta={"source": [str(p) for p in paths], "id": self.ids[index]}
        )


def _by_stem(files: list[Path]) -> dict[str, Path]:
    return {p.stem: p for p in files}


class LEVIRCD(BitemporalChangeDataset):
    """LEVIR-CD pairs (building change): the official download (``train/``, ``val/``, ``test/`` folders of 1024²
    tiles), or a one-folder crop set whose splits come from ``list/<split>.txt`` or from the file-name prefix
    ``<split>_...`` (LEVIR-CD's own split, kept by the 256² crops' names)."""

    def _in_split(self, name: str, split: str) -> bool:
        return name.startswith(f"{split}_")


class DSIFN(BitemporalChangeDataset):
    """DSIFN-CD pairs (land-cover change): the official download (``train/``, ``val/``, ``test/``, each with ``t1``,
    ``t2`` and ``mask``), or a one-folder crop set with ``list/<split>.txt``; the shared sample (one folder, no lists)
    has "all" only."""
