"""A scene run reads the rows of tiles of a chunk (as many as fit REGION_MB) as one region of the Sentinel series and
cuts its tiles from it (issue 14: per-window overheads of a SAFE product's 13 JPEG 2000 bands). A tile cut from a
region must be the tile read alone, value for value: where the grid subdivides the files' pixels (a real Sentinel-2
chip written as two SAFE products, 10/20/60 m bands and a cloud mask), and where GDAL warps and downsamples (the real
aerial COG in EPSG:3857 with real Sentinel-1 values in EPSG:4326, a region past the file's edge: GDAL's kernel width
is fixed per file, see skysense.data.raster.warp._warp_scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import transform_bounds

from skysense.inference import SceneSources, SeriesSource
from skysense.inference.sources import TileReader
from tests.conftest import shared_path
from tests.data.s2_safe import side, write_safe


def _same_tiles(reader: TileReader, tiles: list[tuple[int, int]], size: int, region: tuple) -> None:
    alone = [reader.read(row, col, size) for row, col in tiles]
    cut = [reader.read(row, col, size, region) for row, col in tiles]
    for (one, valid_one), (other, valid_other) in zip(alone, cut, strict=True):
        assert one.keys() == other.keys()
        np.testing.assert_array_equal(valid_one, valid_other)
        for key in one:
            assert torch.equal(one[key], other[key]), key


def test_tiles_cut_from_a_region_of_safe_products_equal_tiles_read_alone(tmp_path: Path) -> None:
    width = side()
    products = [write_safe(tmp_path / "a", time="20220917T105619"), write_safe(tmp_path / "b", time="20221007T105619")]
    reader = TileReader(SceneSources(s2=SeriesSource.from_arg(products, "s2_l1c")), ["s2"])
    try:
        size = width // 4  # a row of tiles across the whole crop, the cloudy quarter first, the last one past the edge
        tiles = [(width // 8, col) for col in range(0, width, size // 2)]
        region = (width // 8, 0, size, tiles[-1][1] + size)
        _same_tiles(reader, tiles, size, region)
        assert reader._regions["s2"][0] == region  # the region was read once and kept
        # several rows of tiles in one region (as a chunk's tiles are when the series fit REGION_MB)
        tall = (0, 0, width // 8 + size, tiles[-1][1] + size)
        _same_tiles(reader, [(row, col) for row in (0, width // 8) for _, col in tiles], size, tall)
    finally:
        reader.close()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tiles_cut_from_a_warped_region_equal_tiles_read_alone(tmp_path: Path) -> None:
    scene = shared_path("rasterio_testdata", "tests", "data", "cogeo.tif")
    chips = sorted(shared_path("sen1floods11_samples", "sample_data", "S1").glob("Ghana_*_S1Hand.tif"))[:2]
    with rasterio.open(scene) as src:
        bounds, hr_side = transform_bounds(src.crs, "EPSG:4326", *src.bounds), min(src.width, src.height)
    folder = tmp_path / "s1"
    folder.mkdir()
    for chip, date in zip(chips, ("20190104", "20190116"), strict=True):
        with rasterio.open(chip) as src:
            values, profile = src.read()[:, :64, :64], src.profile
        transform = rasterio.transform.from_bounds(*bounds, 64, 64)
        profile.update(width=64, height=64, crs="EPSG:4326", transform=transform, dtype="float32", nodata=np.nan)
        with rasterio.open(folder / f"S1_{date}.tif", "w", **profile) as dst:
            dst.write(values.astype(np.float32))
    reader = TileReader(SceneSources(hr=scene, s1=SeriesSource.from_arg(folder, "s1_grd")), ["hr", "s1"], 3)
    try:
        size = 256  # tiles of 8 Sentinel pixels on the 32× coarser grid, overlapping by half
        tiles = [(256, col) for col in range(0, hr_side, 128)]
        region = (256, 0, size, tiles[-1][1] + size)
        _same_tiles(reader, tiles, size, region)
    finally:
        reader.close()


def test_regions_hold_a_chunk_of_tiles_within_the_memory_budget(tmp_path: Path) -> None:
    """A region spans as many rows of a chunk's tiles as the series fit in REGION_MB: 3 SAFE products (13 bands) on
    a 640-px chunk row hold a whole chunk of 96-px tile rows; 60 dates, one row of tiles; no Sentinel input, one."""
    from skysense.inference.plan import REGION_MB, tile_rows_per_region

    product = write_safe(tmp_path / "a", time="20220917T105619")
    three = SceneSources(s2=SeriesSource.from_arg([product] * 3, "s2_l1c", allow_duplicate_dates=True))
    rows = tile_rows_per_region(three, ["s2"], 640, 96)
    assert rows >= 640 // 96 and 3 * 4 * 96 * 640 * 13 * 3 * rows <= REGION_MB * 2**20
    many = SceneSources(s2=SeriesSource.from_arg([product] * 60, "s2_l1c", allow_duplicate_dates=True))
    assert tile_rows_per_region(many, ["s2"], 640, 96) == 1
    assert tile_rows_per_region(three, ["hr"], 640, 96) == 1
