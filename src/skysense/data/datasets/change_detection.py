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


class BitemporalChangeDataset(SkySenseDataset):
    """Pairs ``root/A/<name>``, ``root/B/<name>``, ``root/label/<name>`` as change-detection samples.

    Each sample: ``hr`` (3, H, W) float32 DN 0–255 = image A (first date), ``hr_t2`` the same for B (second date),
    ``target`` (H, W) int64, 1 = changed, 0 = unchanged (from 255 / 0), no date (only year ranges are known) and no
    coordinates. The ChangeFormer/BIT folder name ``label`` (or ``OUT``) is accepted for the masks.

    Splits: "all"; subclasses may add named splits.

    Args:
        root: the folder holding ``A``, ``B`` and ``label``.
        split: a split name.
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.
    """

    sensors = {"hr": HR_RGB}
    splits = ("all",)
    classes = ("unchanged", "changed")
    suffixes = (".png", ".jpg", ".tif")
    label_folders = ("label", "OUT")

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "all",
        transforms: Transform | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, split, transforms, download)
        self.dir_a = require_path(self.root / "A", "first-date image folder")
        self.dir_b = require_path(self.root / "B", "second-date image folder")
        label_dirs = [self.root / n for n in self.label_folders if (self.root / n).is_dir()]
        if not label_dirs:
            raise FileNotFoundError(f"change-mask folder not found: expected {self.root / 'label'}")
        self.dir_label = label_dirs[0]
        names = [p.name for p in list_files(self.dir_a, self.suffixes) if self._in_split(p.name)]
        if not names:
            raise FileNotFoundError(f"no images for split {split!r} in {self.dir_a}")
        for name in names:
            require_path(self.dir_b / name, "second-date image")
            require_path(self.dir_label / name, "change mask")
        self.names = names

    def _in_split(self, name: str) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, index: int) -> Sample:
        name = self.names[index]
        paths = [self.dir_a / name, self.dir_b / name, self.dir_label / name]
        first, second, mask = read_rgb(paths[0]), read_rgb(paths[1]), read_change_mask(paths[2])
        if first.shape != second.shape or tuple(mask.shape) != tuple(first.shape[-2:]):
            raise ValueError(
                f"pair {name} in {self.root}: A {tuple(first.shape)}, B {tuple(second.shape)} and mask "
                f"{tuple(mask.shape)} differ in size"
            )
        return Sample(
            hr=first, hr_t2=second, target=mask, meta={"source": [str(p) for p in paths], "id": Path(name).stem}
        )


class LEVIRCD(BitemporalChangeDataset):
    """LEVIR-CD pairs (building change). Splits: "all", or "train"/"val"/"test" from the file-name prefix
    ``<split>_...`` (LEVIR-CD's own split of its 1024² tiles, kept by the 256² crops)."""

    splits = ("all", "train", "val", "test")

    def _in_split(self, name: str) -> bool:
        return self.split == "all" or name.startswith(f"{self.split}_")


class DSIFN(BitemporalChangeDataset):
    """DSIFN-CD pairs (land-cover change). Split: "all" only (the sample names carry no split)."""
