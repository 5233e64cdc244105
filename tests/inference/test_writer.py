"""The scene writer's own checks, on real rasters from ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import rasterio

from skysense.errors import OutputError
from skysense.inference.writer import check_blocks_written
from tests.conftest import shared_path


def _tiled_copy(target: Path, interleave: str) -> Path:
    """The real Landsat RGB.byte.tif as an uncompressed tiled GeoTIFF (128-px blocks), interleaved as given."""
    with rasterio.open(shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif")) as src:
        profile = src.profile
        profile.update(tiled=True, blockxsize=128, blockysize=128, compress=None, interleave=interleave)
        profile.pop("compress")
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read())
    return target


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_a_truncated_geotiff_is_refused_naming_the_block(tmp_path: Path, interleave: str) -> None:
    """A whole file passes; the same file cut short (as a full disk leaves it when GDAL does not raise the failed
    write) is refused with the block that lies past its end."""
    whole = _tiled_copy(tmp_path / "whole.tif", interleave)
    check_blocks_written(whole, "a test raster")
    cut = tmp_path / "cut.tif"
    shutil.copy(whole, cut)
    with cut.open("r+b") as file:
        file.truncate(whole.stat().st_size * 2 // 3)
    with pytest.raises(
        OutputError, match=r"cut\.tif: cannot write a test raster \(block \(\d+, \d+\) of band \d+ lies"
    ):
        check_blocks_written(cut, "a test raster")
