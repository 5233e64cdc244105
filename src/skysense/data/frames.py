"""Which frames of a Sentinel time series count: one rule for training (:func:`skysense.data.collate.collate`) and
scene inference (:class:`skysense.inference.sources.TileReader`), described in :mod:`skysense.data.series`.

Its own module, importing torch only, so that collating batches (pretraining on a machine without GDAL) does not
import rasterio.
"""

from __future__ import annotations

import torch


def frames_that_count(valid: torch.Tensor, min_valid_fraction: float, inside: int | None = None) -> torch.Tensor:
    """(T,) bool: which frames of one series count.

    Args:
        valid: (T, H, W) bool, True where a frame's pixel is valid.
        min_valid_fraction: share of the pixels that could be valid that must be, in [0, 1] (0: any valid pixel).
        inside: how many of the H × W pixels could be valid (default: all of them).

    Raises:
        ValueError: a fraction outside [0, 1].
    """
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction: {min_valid_fraction!r} is out of range; give a number in [0, 1]")
    counts = valid.flatten(1).sum(dim=1)
    possible = valid[0].numel() if inside is None else inside
    return (counts > 0) & (counts >= min_valid_fraction * max(possible, 1))


SERIES_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")  # per-date rasters in a series folder (any case)


_SIDECARS = (".aux.xml", ".ovr", ".msk")  # GDAL's own sidecar files: never reported as skipped
