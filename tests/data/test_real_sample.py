"""A real multi-modal forward: Sen1Floods11 S1 + S2 and EuroSAT through the simplest readers and the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysense import create_model
from skysense.data.examples import (
    SEN1FLOODS11_S2,
    eurosat_samples,
    read_rgb_image,
    require_all_valid,
    sen1floods11_input,
)
from skysense.data.raster import raster_info, read_raster
from skysense.data.sensors import S1_GRD, S2_L2A, linear_to_db, s2_l1c_to_model_bands
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("tiny").eval()


def test_shipped_sample_multimodal_forward(model) -> None:
    batch = sen1floods11_input()
    assert batch.s2.shape == (1, 1, 10, 64, 64) and batch.s1.shape == (1, 1, 2, 64, 64)
    assert batch.s2_day_of_year.item() == 260 and batch.s1_day_of_year.item() == 259  # 2019-09-18 / 2019-09-17
    assert abs(batch.lat.item() - 38.109) < 0.01 and abs(batch.lon.item() + 0.765) < 0.01
    with torch.no_grad():
        out = model(batch)
    assert out.features.shape == (1, 128, 64, 64)
    assert torch.isfinite(out.features).all() and out.features.std() > 0
    # the two modalities really enter: dropping S1 changes the fused features
    with torch.no_grad():
        s2_only = model(s2=batch.s2, s2_day_of_year=batch.s2_day_of_year, lat=batch.lat, lon=batch.lon)
    assert not torch.allclose(s2_only.fused, out.fused)


def test_full_size_chip_from_shared_data(model) -> None:
    chip = shared_path("sen1floods11_samples", "cloudtostreet_official_sample")
    batch = sen1floods11_input(
        chip / "S1" / "Spain_7370579_S1Hand.tif",
        chip / "S2" / "Spain_7370579_S2Hand.tif",
        s1_date="2019-09-17",
        s2_date="2019-09-18",
    )
    side = batch.s2.shape[-1]  # 512 (the excerpt: 128)
    assert batch.s2.shape == (1, 1, 10, side, side) and batch.s1.shape == (1, 1, 2, side, side)
    crop = (..., slice(side // 4, side // 4 + 64), slice(side * 3 // 16, side * 3 // 16 + 64))  # [128:192, 96:160]
    with torch.no_grad():
        out = model(
            s2=batch.s2[crop],
            s2_day_of_year=batch.s2_day_of_year,
            s1=batch.s1[crop],
            s1_day_of_year=batch.s1_day_of_year,
            lat=batch.lat,
            lon=batch.lon,
        )
    assert out.features.shape == (1, 128, 64, 64) and torch.isfinite(out.features).all()


def test_all_nan_chip_is_masked_and_refused() -> None:
    path = shared_path("sen1floods11_samples", "sample_data", "S1", "Paraguay_34417_S1Hand.tif")
    raster = read_raster(path)
    info = raster_info(path)
    assert raster.values.shape == (2, info.height, info.width)  # 2 × 512 × 512 (the excerpt: 2 × 128 × 128)
    assert not raster.valid.any() and np.isnan(raster.values).all()
    with pytest.raises(ValueError, match="Paraguay_34417_S1Hand.tif"):
        require_all_valid(raster.values, raster.valid, raster.path)


def test_wrong_units_and_band_counts_are_refused() -> None:
    s2 = read_raster(SEN1FLOODS11_S2)
    with pytest.raises(ValueError, match="13 L1C bands"):
        s2_l1c_to_model_bands(s2.values[:10])
    with pytest.raises(ValueError, match="dB"):
        S1_GRD.normalize(s2.values[:2], "s2-as-s1")  # reflectance DN is not backscatter in dB
    with pytest.raises(ValueError, match="expected 10 bands"):
        S2_L2A.normalize(s2.values)
    with pytest.raises(ValueError, match="already dB"):
        linear_to_db(np.array([-12.0, 0.1]))


def test_eurosat_images_through_the_hr_encoder(model) -> None:
    folder = shared_path("eurosat_rgb_dev", "River")
    image = read_rgb_image(folder / "River_1.jpg")
    assert image.shape == (3, 64, 64)
    images, labels = eurosat_samples()
    with torch.no_grad():
        maps = model.hr(torch.cat([image[None], images]))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
    assert torch.isfinite(maps[-1]).all()
    # the shipped River image is the same file as the shared one
    assert torch.equal(images[labels.tolist().index(8)], image)


def test_crs_or_grid_mismatch_names_both_files(tmp_path) -> None:
    """An S1 chip of another place (or another CRS) next to the shipped S2 chip is refused, not silently paired."""
    import rasterio

    from skysense.data.examples import SEN1FLOODS11_S1

    with rasterio.open(SEN1FLOODS11_S1) as src:
        profile, data = src.profile, src.read()
    moved = tmp_path / "s1_utm.tif"
    profile.update(crs="EPSG:32630")  # same pixels, declared in UTM 30N: a CRS mismatch
    with rasterio.open(moved, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(ACQUISITION_DATE="2019-09-17")
    with pytest.raises(ValueError, match=r"s1_utm\.tif.*S2Hand_64\.tif.*not co-registered"):
        sen1floods11_input(s1_path=moved)
