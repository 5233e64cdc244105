"""The scene writer's own checks, on real rasters from ../shared/data (or their excerpts in tests/fixtures)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from skysense.errors import OutputError, UsageError
from skysense.inference.writer import check_blocks_written, row_block
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


def test_row_tiles_divide_the_chunk() -> None:
    assert row_block(512, 512) == 512 and row_block(1024, 512) == 512
    assert row_block(128, 512) == 128 and row_block(336, 512) == 336 and row_block(96, 64) == 48
    with pytest.raises(UsageError, match="--chunk 200 is not a multiple of 16"):
        row_block(200, 512)


@pytest.mark.slow
def test_chunks_smaller_than_the_output_tiles_lose_nothing(tmp_path: Path) -> None:
    """A 128-band embedding of the real S1 chip in chunks of a quarter of its side, written while the model's thread
    reads: each chunk used to fill a quarter of a row-file tile (first seen on the 512² chip: chunks of 128 in a
    512² tile), another thread's reads evicted the half-written tile from GDAL's cache, and GDAL handed the writer its
    old version back (OSGeo/gdal#2011): one band's block came out NaN in most runs. Now the same pixels as one chunk,
    to the blending's rounding, in each of two runs. The chip's top-left 256² (tiles and chunks of 64, a quarter of
    the 256² row-file tile; on the excerpt's 128² chip: 32 in 128²) keeps the test a quarter of the 512² run's time.
    """
    from skysense.inference import SceneSources, SeriesSource, load_scene_model, predict_scene
    from skysense.models.registry import create_model
    from skysense.models.weights import save_pretrained
    from tests.reliability.scene_fixtures import crop

    whole = shared_path("sen1floods11_samples", "sample_data", "S1", "Spain_6860600_S1Hand.tif")
    with rasterio.open(whole) as src:
        side = min(src.width, src.height, 256)
    chip = crop(whole, tmp_path / "chip.tif", side)
    tile = side // 4  # overlap a quarter of it, the default
    sources = SceneSources(s1=SeriesSource.from_arg(chip, "s1_grd", ["2019-09-18"]))
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    model = load_scene_model(weights, "embedding", sentinel_reference=True)

    def embed(chunk: int, name: str) -> np.ndarray:
        report = predict_scene(model, sources, tmp_path / name, tile=tile, overlap=tile // 4, chunk=chunk,
                               progress=False)  # fmt: skip
        with rasterio.open(report.output) as dataset:
            return dataset.read()

    reference = embed(side, "one_chunk.tif")
    for attempt in range(2):  # the race took a block in most runs, not in every one
        small = embed(tile, f"small_chunks_{attempt}.tif")
        assert np.array_equal(np.isnan(small), np.isnan(reference))
        assert np.allclose(small, reference, atol=1e-4, equal_nan=True)
