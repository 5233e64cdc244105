"""AID (Aerial Image Dataset) scene classification, 30 classes of Google Earth RGB scenes.

Xia, Hu, Hu, Shi, Bai, Zhong, Zhang, Lu: "AID: A Benchmark Data Set for Performance Evaluation of Aerial Scene
Classification", IEEE TGRS 2017. Released by Wuhan University for research purposes only; no georeferencing. The copy
in ``../shared/data/aid_150px_subset`` is a downsampled (600 → 150 pixels, by that repository's author, not official)
subset of 50 images per class from github.com/zlima/testtensor @ f6a0f746, path ``AID/<Class>/<class>_<n>.jpg``:
results on it are not comparable to published AID numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from skysense.data.datasets.base import ImageFolderClassification, Transform


class AID(ImageFolderClassification):
    """AID scenes as the HR image, target the class index (0..29, :attr:`classes` in sorted order).

    Layout: ``root/AID/<ClassName>/<classname>_<n>.jpg`` (or the class folders directly under ``root``). Each sample:
    ``hr`` (3, S, S) float32 in DN 0–255, ``target`` an int, no date or coordinates.

    Size: the 150-pixel copy is not a multiple of 32, which the Swin encoder needs. ``image_size`` (default 128) and
    ``resize`` choose how to get there: "resize" (bilinear, antialiased; the whole scene is kept, at 0.85× the
    resolution) or "center_crop" (native resolution, the border is lost: 128 of 150 pixels keeps 73 % of the area).
    128 is the default because at patch 4 and window 8 its stage maps (32, 16, 8, 4) need no window padding, whereas
    160 (40, 20, 10, 5) pads three stages and only up-samples. ``image_size=None`` keeps the files' size.

    Splits: "all", or "train"/"val"/"test" with ``split_fractions`` (default 0.4/0.1/0.5: AID's usual 50 % training
    ratio, with a fifth of the training half held out for validation), stratified per class in a seeded SHA-256 order
    of the relative file paths (deterministic, disjoint, covering).

    Args:
        root: the dataset folder (e.g. ``../shared/data/aid_150px_subset``).
        split: "all", "train", "val" or "test".
        split_fractions: (train, val, test) fractions summing to 1.
        seed: split seed.
        image_size: output side in pixels, or None to keep the files' size.
        resize: "resize" or "center_crop".
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.
        classes: a subset of the classes, in the order of their indices (default: all 30).
    """

    classes = (
        "Airport",
        "BareLand",
        "BaseballField",
        "Beach",
        "Bridge",
        "Center",
        "Church",
        "Commercial",
        "DenseResidential",
        "Desert",
        "Farmland",
        "Forest",
        "Industrial",
        "Meadow",
        "MediumResidential",
        "Mountain",
        "Park",
        "Parking",
        "Playground",
        "Pond",
        "Port",
        "RailwayStation",
        "Resort",
        "River",
        "School",
        "SparseResidential",
        "Square",
        "Stadium",
        "StorageTanks",
        "Viaduct",
    )
    default_fractions = (0.4, 0.1, 0.5)

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "all",
        split_fractions: tuple[float, float, float] | None = None,
        seed: int = 0,
        image_size: int | None = 128,
        resize: str = "resize",
        transforms: Transform | None = None,
        download: bool = False,
        classes: Sequence[str] | None = None,
    ) -> None:
        if root is not None and (Path(root) / "AID").is_dir():
            self.image_folder = "AID"
        super().__init__(root, split, split_fractions, seed, image_size, resize, transforms, download, classes)
