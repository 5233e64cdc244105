"""A manifest of a folder of rasters — one row per file (or per Sentinel-2 product) with its metadata, acquisition
date, inferred modality and the sample (place) it belongs to — and the dataset that reads it. One room a job:

- :mod:`~skysense.data.manifest.schema` — the row (:class:`ManifestEntry`) and its CSV/JSON files
  (:func:`write_manifest`, :func:`read_manifest`).
- :mod:`~skysense.data.manifest.guess` — a row from a file: its modality (:func:`infer_modality`), date and
  name key (:func:`name_key`).
- :mod:`~skysense.data.manifest.index` — a folder → rows (:func:`index_directory`), grouped into samples
  (:func:`assign_samples`).
- :mod:`~skysense.data.manifest.dataset` — :class:`ManifestDataset`, one :class:`~skysense.containers.Sample` per
  sample id.

Per-band statistics over a manifest's files are :mod:`skysense.data.stats`.
"""

from skysense.data.manifest.dataset import ManifestDataset
from skysense.data.manifest.guess import entry_from_info, infer_modality, name_key
from skysense.data.manifest.index import assign_samples, find_rasters, index_directory
from skysense.data.manifest.schema import (
    MODALITIES,
    PRODUCT_DRIVER,
    RASTER_SUFFIXES,
    ManifestEntry,
    read_manifest,
    write_manifest,
)

__all__ = [
    "MODALITIES",
    "PRODUCT_DRIVER",
    "RASTER_SUFFIXES",
    "ManifestDataset",
    "ManifestEntry",
    "assign_samples",
    "entry_from_info",
    "find_rasters",
    "index_directory",
    "infer_modality",
    "name_key",
    "read_manifest",
    "write_manifest",
]
