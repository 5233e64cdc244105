"""The scene-wide units check of an HR image (:func:`~skysense.inference.sources.check_hr_scene`) on a real image
written as a multi-block GeoTIFF: a sample of its blocks (no overviews) or its overviews decide, and a 0–1 image
is refused either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from skysense.data.sensors import SENSORS
from skysense.inference.sources import check_hr_scene
from tests.conftest import shared_path


def _scene(path: Path, scale: float, overviews: bool, corner: bool = False) -> Path:
    """The real 512² cogeo.tif tiled 4 × 4 into a 2048² GeoTIFF of 128² blocks (256 blocks), times ``scale``;
    ``corner``: with values out of the 0–255 range in the first block."""
    with rasterio.open(shared_path("rasterio_testdata", "tests", "data", "cogeo.tif")) as src:
        tile = src.read(out_shape=(3, 512, 512)).astype(np.float32) * scale
        crs, transform = src.crs, src.transform
    mosaic = np.tile(tile, (1, 4, 4))
    if corner:
        mosaic[:, :100, :100] = 510.0
    with rasterio.open(path, "w", driver="GTiff", width=2048, height=2048, count=3, dtype="float32", crs=crs,
                       transform=transform, tiled=True, blockxsize=128, blockysize=128) as dst:  # fmt: skip
        dst.write(mosaic)
        if overviews:
            dst.build_overviews([2, 4, 8], rasterio.enums.Resampling.nearest)
    return path


@pytest.mark.parametrize("overviews", [False, True])
def test_a_zero_to_one_scene_is_refused_and_a_real_one_passes(tmp_path: Path, overviews: bool) -> None:
    sensor = SENSORS["hr_rgb"]
    scaled = _scene(tmp_path / "unit.tif", 1 / 255, overviews)
    with pytest.raises(ValueError, match=r"unit\.tif.*already scaled to 0-1"):
        check_hr_scene(scaled, [1, 2, 3], sensor)
    corner = _scene(tmp_path / "corner.tif", 1.0, overviews, corner=True)
    with pytest.raises(ValueError, match=r"corner\.tif.*outside the range"):  # the first block is always sampled
        check_hr_scene(corner, [1, 2, 3], sensor)
    check_hr_scene(_scene(tmp_path / "dn.tif", 1.0, overviews), [1, 2, 3], sensor)
