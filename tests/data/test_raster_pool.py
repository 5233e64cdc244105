"""Open rasters kept across the tiles of a scene (:class:`skysense.data.raster.pool.RasterPool`): a real Sentinel-2
chip written as a SAFE product (per-band JPEG 2000 at 10/20/60 m) read tile by tile gives the same pixels with the
pool as without it, while each band file is opened once instead of once per tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from skysense.containers import Grid
from skysense.data.products import find_s2_products
from skysense.data.raster import RasterFile, raster_info
from skysense.data.raster.pool import RasterPool, active_pool
from skysense.data.sensors import S2_L1C
from skysense.data.series import read_time_series
from tests.data.s2_safe import side, write_safe


def _tiles(grid: Grid, side: int) -> list[Grid]:
    return [
        Grid(grid.crs, grid.transform * rasterio.Affine.translation(col, row), side, side)
        for row in range(0, grid.height, side)
        for col in range(0, grid.width, side)
    ]


def test_a_pool_reads_the_same_pixels_opening_each_file_once(tmp_path: Path) -> None:
    (product,) = find_s2_products(write_safe(tmp_path))
    grid = product.grid()
    tiles = _tiles(grid, side() // 3)  # 9 tiles of the chip (of 160² on the 480² crop)
    plain = [read_time_series([product], grid=tile, sensor=S2_L1C) for tile in tiles]
    pool = RasterPool()
    with pool.active():
        pooled = [read_time_series([product], grid=tile, sensor=S2_L1C) for tile in tiles]
        kept = dict(pool._datasets)
    assert active_pool() is None
    band_files = {str(path) for path in product.bands.values()}
    assert band_files <= set(kept) and len(kept) <= len(band_files) + 1  # + the cloud mask: each file once
    for a, b in zip(plain, pooled, strict=True):
        assert a.dates == b.dates
        assert np.array_equal(a.valid.numpy(), b.valid.numpy())
        assert np.array_equal(a.values.numpy(), b.values.numpy(), equal_nan=True)
    pool.close()
    assert all(dataset.closed for dataset in kept.values()) and not pool._datasets


def test_closing_a_pooled_file_keeps_it_open_until_the_pool_closes(tmp_path: Path) -> None:
    (product,) = find_s2_products(write_safe(tmp_path, cloud=False))
    path = product.bands["B4"]
    pool = RasterPool(max_open=2)
    with pool.active():
        with RasterFile(path) as first:
            first.read([1])
        info = raster_info(path)
        with RasterFile(path) as second:  # the same open dataset, its metadata read once
            assert second._src._dataset is first._src._dataset and not first._src._dataset.closed
            assert second.info is info
        for other in ("B2", "B3"):  # beyond max_open, the least recently used is closed
            raster_info(product.bands[other])
    assert first._src._dataset.closed
    pool.close()
