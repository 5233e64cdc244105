"""EuroSAT RGB scene classification.

Helber, Bischke, Dengel, Borth: "EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover
Classification", IEEE JSTARS 2019. Released under the MIT licence. Sentinel-2 L1C patches, bands B04, B03, B02 as
8-bit RGB JPEG, 64×64 pixels at 10 m, 10 classes. The development copy in ``../shared/data/eurosat_rgb_dev`` holds the
500 lowest-numbered images of each class (source: github.com/arson48/CNN-on-Eurosat-data @ b2a852b1, path
``EuroSAT/<Class>/<Class>_<n>.jpg``).
"""

from __future__ import annotations

from skysense.data.datasets.base import ImageFolderClassification


class EuroSAT(ImageFolderClassification):
    """EuroSAT RGB: 64×64 Sentinel-2 RGB patches as the optical (HR-role) image, target the class index.

    Layout: ``root/<ClassName>/<ClassName>_<n>.jpg``. Each sample: ``hr`` (3, 64, 64) float32 in DN 0–255 (not
    normalised; :class:`~skysense.data.transforms.Normalize` with ``HR_RGB`` does that), ``target`` an int in 0..9
    (index in :attr:`classes`, sorted order as torchvision/TorchGeo use), no date and no coordinates (the JPEG release
    carries none). The images are 10 m Sentinel-2, used here in the HR encoder's role; 64 is a multiple of 32, so
    the Swin encoder takes them as they are.

    Splits: "all", or "train"/"val"/"test" with ``split_fractions`` (default 0.6/0.2/0.2, TorchGeo's EuroSAT
    proportions), stratified per class in a seeded SHA-256 order of the relative file paths: deterministic across
    machines and library versions, disjoint and covering. The official EuroSAT split files are not used (they index
    the full 27,000-image release).

    Args:
        root: folder holding the class folders (e.g. ``../shared/data/eurosat_rgb_dev``).
        split: "all", "train", "val" or "test".
        split_fractions: (train, val, test) fractions summing to 1.
        seed: split seed.
        image_size: resize (or center-crop) to this side in pixels; None keeps 64.
        resize: "resize" (bilinear) or "center_crop", used with ``image_size``.
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.
    """

    classes = (
        "AnnualCrop",
        "Forest",
        "HerbaceousVegetation",
        "Highway",
        "Industrial",
        "Pasture",
        "PermanentCrop",
        "Residential",
        "River",
        "SeaLake",
    )
    rgb_bands = ("B04", "B03", "B02")
    ground_sample_distance_m = 10.0
    default_fractions = (0.6, 0.2, 0.2)
