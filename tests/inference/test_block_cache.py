"""GDAL's block cache during a scene run holds two rows of blocks of every input (issue 14): a real Sentinel-2 chip
written as a SAFE product of per-band JPEG 2000 files (10/20/60 m)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from skysense.inference import SceneSources, SeriesSource
from skysense.inference.plan import MIN_CACHE_MB, block_cache_mb, input_rasters
from tests.data.s2_safe import write_safe


def test_the_cache_holds_two_block_rows_of_every_band_file(tmp_path: Path) -> None:
    safe = write_safe(tmp_path)
    sources = SceneSources(s2=SeriesSource.from_arg([safe], "s2_l1c"))
    rasters = input_rasters(sources)
    assert len(rasters) == 14  # 13 bands and the cloud mask
    expected = 0
    for path in rasters:
        with rasterio.open(path) as src:
            rows = min(src.block_shapes[0][0], src.height)
            expected += 2 * rows * src.width * src.count * np.dtype(src.dtypes[0]).itemsize
    assert expected > 0
    assert block_cache_mb(rasters) == int(MIN_CACHE_MB + 1.25 * expected / 2**20)
    assert block_cache_mb(rasters, max_fraction=1e-6) < MIN_CACHE_MB  # a quarter of the memory caps it
