"""Datasets of real Earth-observation imagery as :class:`~skysense.containers.Sample` objects.

Every dataset returns samples in sensor units (normalise with :class:`~skysense.data.transforms.Normalize` and the
dataset's ``sensors``), with pixel-validity masks, real dates and latitude/longitude where the data has them, and the
target in its task's form. All take ``root`` (no default), a deterministic ``split`` and optional ``transforms``; none
downloads anything.

| dataset | task | modalities | target |
|---|---|---|---|
| :class:`EuroSAT` | scene classification | hr (S2 RGB, 64²) | class index |
| :class:`AID` | scene classification | hr (RGB, resized to 128²) | class index |
| :class:`Sen1Floods11` | water segmentation | s1 and/or s2, one frame | (H, W) mask, -1 ignore |
| :class:`PrestoAlgaeBlooms` | time-series classification | s2 + s1, 12 months, one pixel | class index |
| :class:`PrestoFuelMoisture` | time-series regression | s2 + s1, 3 months, one pixel | float |
| :class:`NWPUVHR10` | horizontal detection | hr | {"boxes", "labels"} |
| :class:`LEVIRCD`, :class:`DSIFN` | change detection | hr + hr_t2 | (H, W) mask 0/1 |
| :class:`DOTA` | oriented detection | hr | {"polygons", "boxes", "labels", "difficult"} |
"""

from skysense.data.datasets.aid import AID
from skysense.data.datasets.base import (
    ImageFolderClassification,
    SceneFolder,
    SkySenseDataset,
    grouped_split,
    hash_order,
    stratified_split,
)
from skysense.data.datasets.change_detection import DSIFN, LEVIRCD, BitemporalChangeDataset, read_change_mask
from skysense.data.datasets.dota import DOTA, DOTA_V1_CLASSES, parse_dota_labels
from skysense.data.datasets.eurosat import EuroSAT
from skysense.data.datasets.nwpu_vhr10 import NWPUVHR10, parse_nwpu_vhr10_boxes
from skysense.data.datasets.presto import PRESTO_BANDS, PrestoAlgaeBlooms, PrestoFuelMoisture, PrestoTimeSeries
from skysense.data.datasets.sen1floods11 import Sen1Floods11, read_event_dates

__all__ = [
    "AID",
    "DOTA",
    "DOTA_V1_CLASSES",
    "DSIFN",
    "LEVIRCD",
    "NWPUVHR10",
    "PRESTO_BANDS",
    "BitemporalChangeDataset",
    "EuroSAT",
    "ImageFolderClassification",
    "SceneFolder",
    "PrestoAlgaeBlooms",
    "PrestoFuelMoisture",
    "PrestoTimeSeries",
    "Sen1Floods11",
    "SkySenseDataset",
    "grouped_split",
    "hash_order",
    "parse_dota_labels",
    "parse_nwpu_vhr10_boxes",
    "read_change_mask",
    "read_event_dates",
    "stratified_split",
]
