"""Nearest-neighbour and bilinear onto a grid that subdivides the source's pixels (a Sentinel-2 product's 20/60 m
bands and masks onto 10 m tiles) are computed without GDAL's warper: they must give what GDAL gives (nearest exactly,
bilinear to float32 rounding), on the real Sen1Floods11 S2 chip's bands block-averaged to 20 and 60 m with some
pixels invalid, for tiles inside, across and outside the edge."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine

import skysense.data.raster.warp as warp
from skysense.containers import Grid
from skysense.data.raster import Raster
from tests.data.s2_safe import block_mean, chip, side


@pytest.mark.parametrize("factor", [2, 3, 6])
@pytest.mark.parametrize("method", [Resampling.nearest, Resampling.bilinear])
def test_subdividing_grids_match_gdal(monkeypatch: pytest.MonkeyPatch, factor: int, method: Resampling) -> None:
    values, profile = chip()
    planes = np.stack([block_mean(v.astype(np.float64), factor) for v in values[:3]]).astype(np.float32)
    valid = planes > np.percentile(planes, 5)  # some invalid pixels, as clouds or nodata leave them
    planes[~valid] = np.nan
    source = Raster(
        planes, valid, ("B1", "B2", "B3"), profile["crs"], profile["transform"] @ Affine.scale(factor), None
    )
    # tiles inside, across the edge and outside, on the 480² crop (scaled to a smaller crop)
    scale = side() / 480
    tiles = [[round(scale * n) for n in tile]
             for tile in [(0, 0, 128), (96, 224, 128), (400, 420, 128), (-32, -64, 96), (470, 470, 32)]]  # fmt: skip
    results = {}
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(warp, "_upsampling", lambda source, target: None)
        results[fast] = []
        for row, col, size in tiles:
            target = Grid(profile["crs"], profile["transform"] @ Affine.translation(col, row), size, size)
            results[fast].append(warp._resample(source, target, method))
    assert warp._upsampling is not None
    for fast, slow in zip(results[True], results[False], strict=True):
        assert np.array_equal(fast.valid, slow.valid)
        if method == Resampling.nearest:
            assert np.array_equal(fast.values, slow.values, equal_nan=True)
        else:  # GDAL's float64 weights, rounded to float32 on both sides
            np.testing.assert_allclose(fast.values, slow.values, rtol=1e-6, atol=0, equal_nan=True)


def test_only_subdividing_grids_take_the_index_lookup() -> None:
    crs = rasterio.crs.CRS.from_epsg(32630)
    source = Grid(crs, Affine(20.0, 0, 500000, 0, -20.0, 4000000), 10, 10)
    assert warp._upsampling(source, Grid(crs, Affine(10.0, 0, 500010, 0, -10.0, 4000000), 8, 8)) == (2, 0, 1)
    assert warp._upsampling(source, Grid(crs, Affine(10.0, 0, 500005, 0, -10.0, 4000000), 8, 8)) is None  # half px
    assert warp._upsampling(source, Grid(crs, Affine(15.0, 0, 500000, 0, -15.0, 4000000), 8, 8)) is None  # 4/3
    other = rasterio.crs.CRS.from_epsg(32631)
    assert warp._upsampling(source, Grid(other, Affine(10.0, 0, 500000, 0, -10.0, 4000000), 8, 8)) is None
