"""Raster reading on real data: windows, masks, reprojection with masks carried, co-registration, time series, and
loud refusals (corrupt files, band-count mismatches, missing CRS, all-invalid input)."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window

from skysense.data.raster import (
    Raster,
    coregistered_grids,
    iter_windows,
    raster_info,
    read_coregistered,
    read_raster,
    reproject_to_grid,
)
from skysense.data.sensors import S1_GRD, S1_GRD_LINEAR, S2_L1C, S2_L2A, check_units
from skysense.data.series import read_time_series
from tests.conftest import shared_path


def rasterio_data(name: str) -> Path:
    return shared_path("rasterio_testdata", "tests", "data", name)


def spain(kind: str) -> Path:
    folder = {"S1": "S1", "S2": "S2", "Label": "Labels"}[kind]
    return shared_path("sen1floods11_samples", "cloudtostreet_official_sample", folder, f"Spain_7370579_{kind}Hand.tif")


def shipped_window(path: Path, size: int = 32) -> Window:
    """The ``size``² window of a Spain_7370579 file that starts where the package's shipped 64² sample does: column
    160, row 192 of the real 512² chip, the top-left corner of the excerpt in tests/fixtures (which holds it)."""
    from skysense.data.examples import SEN1FLOODS11_S1

    with rasterio.open(SEN1FLOODS11_S1) as sample, rasterio.open(path) as src:
        col, row = ~src.transform @ (sample.transform.c, sample.transform.f)
    return Window(round(col), round(row), size, size)


def write_crop(source: Path, target: Path, window: Window, **changes) -> Path:
    """Copy a window of a real raster to ``target`` (keeping band descriptions and tags); ``changes`` update the
    profile, ``data=`` replaces the pixels."""
    with rasterio.open(source) as src:
        data = changes.pop("data", None)
        if data is None:
            data = src.read(window=window)
        profile = src.profile | {
            "width": data.shape[-1],
            "height": data.shape[-2],
            "count": data.shape[0],
            "transform": src.window_transform(window),
        }
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        profile |= changes
        descriptions, tags = src.descriptions, src.tags()
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data.astype(profile["dtype"]))
        if len(descriptions) == data.shape[0]:
            for i, name in enumerate(descriptions, start=1):
                if name:
                    dst.set_band_description(i, name)
        dst.update_tags(**tags)
    return target


def utm_epsg(lon: float, lat: float) -> int:
    return (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1


# ------------------------------------------------------------------------------------------------------------------
# Reading and windows
# ------------------------------------------------------------------------------------------------------------------
def test_rgb_byte_nodata_becomes_mask() -> None:
    path = rasterio_data("RGB.byte.tif")  # 3 × 718 × 791 (the excerpt: its top-left 398 × 407)
    raster = read_raster(path)
    with rasterio.open(path) as src:
        raw = src.read()
    assert raw.shape[0] == 3 and raster.values.shape == raw.shape and raster.values.dtype == np.float32
    assert raster.crs.to_epsg() == 32618
    np.testing.assert_array_equal(raster.valid, raw != 0)  # nodata 0, per band
    assert np.isnan(raster.values[~raster.valid]).all()
    assert raster.values[raster.valid].min() >= 1 and raster.values[raster.valid].max() <= 255
    assert 0.6 < raster.valid.mean() < 0.75  # the rotated Landsat scene in its black frame
    assert raster.pixel_valid.shape == raw.shape[1:]


def test_window_and_bounds_reads_agree() -> None:
    path = rasterio_data("RGB.byte.tif")
    full = read_raster(path)
    height, width = full.values.shape[1:]
    window = Window(300, 200, 64, 32)  # col, row, width, height
    part = read_raster(path, window=window)
    np.testing.assert_array_equal(part.values, full.values[:, 200:232, 300:364])
    assert part.transform == full.transform @ Affine.translation(300, 200)
    left, top = full.transform @ (300, 200)
    right, bottom = full.transform @ (364, 232)
    by_bounds = read_raster(path, bounds=(left, bottom, right, top))
    np.testing.assert_array_equal(by_bounds.values, part.values)
    assert by_bounds.transform == part.transform
    # rasterio would silently clip a window reaching outside: it is refused, or read as invalid when asked
    corner = Window(width - 11, height - 18, 32, 32)  # 18 rows and 11 columns inside, the rest outside
    with pytest.raises(ValueError, match=rf"RGB.byte.tif: window .* reaches outside the raster \({height}×{width}\)"):
        read_raster(path, window=corner)
    outside = read_raster(path, window=corner, boundless=True)
    assert outside.values.shape == (3, 32, 32)
    assert not outside.valid[:, 18:, :].any() and not outside.valid[:, :, 11:].any()
    assert np.isnan(outside.values[:, 18:, :]).all()


def test_cog_windowed_read() -> None:
    path = rasterio_data("cogeo.tif")
    info = raster_info(path)
    assert info.crs.to_epsg() == 3857 and info.block_shape == (512, 512) and info.overviews > 0
    window = Window(500, 480, 96, 64)  # crosses internal tile borders
    part = read_raster(path, window=window)
    with rasterio.open(path) as src:
        expected = src.read(window=window).astype(np.float32)
    np.testing.assert_array_equal(part.values, expected)
    assert part.valid.all()  # no nodata declared
    assert part.crs.to_epsg() == 3857
    x, y = part.transform @ (0, 0)
    assert (x, y) == pytest.approx(info.transform @ (500, 480))


def test_band_selection_by_name_and_index() -> None:
    path = spain("S2")
    by_name = read_raster(path, bands=["B4", "b03", "B02"])  # case and zero padding do not matter
    by_index = read_raster(path, bands=[4, 3, 2])
    np.testing.assert_array_equal(by_name.values, by_index.values)
    assert by_name.band_names == ("B4", "B3", "B2")
    with pytest.raises(ValueError, match=r"Spain_7370579_S2Hand.tif: no band named 'B13'.*'B8A'"):
        read_raster(path, bands=["B13"])
    with pytest.raises(ValueError, match=r"Spain_7370579_S2Hand.tif: band 14 requested but the file has 13"):
        read_raster(path, bands=[14])


def test_extra_nodata_and_valid_mask(tmp_path: Path) -> None:
    data = np.array([[[1, 2, -9999], [4, np.nan, 6]]], dtype=np.float32)
    path = tmp_path / "tiny.tif"
    profile = dict(driver="GTiff", width=3, height=2, count=1, dtype="float32", crs="EPSG:32630", nodata=-9999)
    with rasterio.open(path, "w", transform=from_origin(500000, 4000000, 10, 10), **profile) as dst:
        dst.write(data)
    raster = read_raster(path)
    np.testing.assert_array_equal(raster.valid[0], [[True, True, False], [True, False, True]])
    raster = read_raster(path, nodata=4, valid_mask=np.array([[False, True, True], [True, True, True]]))
    np.testing.assert_array_equal(raster.valid[0], [[False, True, False], [False, False, True]])
    assert np.isnan(raster.values[~raster.valid]).all()


@pytest.mark.parametrize("name", ["RGB.byte.tif", "cogeo.tif"])
def test_iter_windows_cover_the_raster_once(name: str) -> None:
    info = raster_info(rasterio_data(name))
    seen = np.zeros((info.height, info.width), dtype=np.int32)
    for window in iter_windows(info, tile=200):
        seen[window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width] += 1
        assert window.width * window.height <= 4 * 200 * 200 + info.width * info.block_shape[0]
    assert (seen == 1).all()


# ------------------------------------------------------------------------------------------------------------------
# Refusals
# ------------------------------------------------------------------------------------------------------------------
def test_missing_corrupt_and_truncated_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no raster at .*nowhere.tif"):
        read_raster(tmp_path / "nowhere.tif")
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"garbage.tif"):
        read_raster(garbage)
    truncated = tmp_path / "truncated.tif"
    data = rasterio_data("RGB.byte.tif").read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.35)])  # its directory is at the end
    with pytest.raises(ValueError, match=r"truncated.tif"):
        read_raster(truncated)


def test_all_nan_chip_gives_an_all_false_mask_and_is_refused_where_required() -> None:
    path = shared_path("sen1floods11_samples", "sample_data", "S1", "Paraguay_34417_S1Hand.tif")
    raster = read_raster(path)
    side = raster_info(path).width  # 512 (the excerpt: 128)
    assert raster.values.shape == (2, side, side)
    assert not raster.valid.any() and np.isnan(raster.values).all()
    with pytest.raises(ValueError, match=rf"Paraguay_34417_S1Hand.tif: all {2 * side * side} values .* are invalid"):
        read_raster(path, require_valid=True)
    series = read_time_series([path], dates=["2019-09-17"])
    assert not series.valid.any()  # kept, and masked by the collate
    with pytest.raises(ValueError, match=r"Paraguay_34417_S1Hand.tif: no valid pixel"):
        read_time_series([path], dates=["2019-09-17"], allow_empty_frames=False)


def test_raster_without_crs_cannot_be_reprojected(tmp_path: Path) -> None:
    path = rasterio_data("float32.tif")  # a real 3×2 file without CRS
    assert raster_info(path).crs is None
    with pytest.raises(ValueError, match=r"float32.tif: the raster has no CRS"):
        reproject_to_grid(path, "EPSG:4326", from_origin(0, 1, 0.1, 0.1), (10, 10))
    # its own pixels are still readable
    assert read_raster(path).values.shape == (1, 2, 3)


def test_check_units_refuses_implausible_values() -> None:
    reflectance = np.random.default_rng(0).uniform(0, 0.6, (10, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="0-1 scale: multiply by 10000"):
        check_units(reflectance, S2_L2A, "scene.tif")
    linear = np.random.default_rng(0).uniform(0.001, 0.5, (2, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="scene.tif.*linear power"):
        check_units(linear, S1_GRD, "scene.tif")
    check_units(10 * np.log10(linear), S1_GRD, "scene.tif")
    with pytest.raises(ValueError, match="convert them with skysense.data.sensors.to_model"):
        S1_GRD_LINEAR.normalize(linear)


# ------------------------------------------------------------------------------------------------------------------
# Reprojection with masks carried
# ------------------------------------------------------------------------------------------------------------------
def test_reproject_landsat_to_wgs84_carries_the_mask() -> None:
    path = rasterio_data("RGB.byte.tif")
    info = raster_info(path)
    source = read_raster(path)
    transform, width, height = calculate_default_transform(info.crs, "EPSG:4326", info.width, info.height, *info.bounds)
    out = reproject_to_grid(path, "EPSG:4326", transform, (height, width))
    assert out.values.shape == (3, height, width) and out.crs.to_epsg() == 4326
    assert np.isnan(out.values[~out.valid]).all() and np.isfinite(out.values[out.valid]).all()
    # calculate_default_transform keeps about the pixel count, so the valid count barely changes
    assert 0.95 < out.valid.sum() / source.valid.sum() < 1.05
    assert out.values[out.valid].min() >= 1 and out.values[out.valid].max() <= 255
    nearest = reproject_to_grid(path, "EPSG:4326", transform, (height, width), "nearest")
    assert set(np.unique(nearest.values[0][nearest.valid[0]])) <= set(np.unique(source.values[0][source.valid[0]]))
    # the mask goes with nearest; bilinear may drop a few rim pixels whose kernel is mostly invalid, never add any
    assert (out.valid <= nearest.valid).all() and out.valid.sum() > 0.99 * nearest.valid.sum()


def test_reproject_sen1floods11_chip_to_utm() -> None:
    path = spain("S1")
    info = raster_info(path)
    source = read_raster(path)
    lat, lon = source.center_lat_lon()
    epsg = utm_epsg(lon, lat)
    transform, width, height = calculate_default_transform(
        info.crs, f"EPSG:{epsg}", info.width, info.height, *info.bounds, resolution=10
    )
    out = reproject_to_grid(path, epsg, transform, (height, width))
    assert out.crs.to_epsg() == epsg
    # area conservation: valid 10 m pixels ≈ the chip's area in m² / 100
    pixel_area = (info.res[0] * 111_320 * math.cos(math.radians(lat))) * (info.res[1] * 110_574)
    assert out.valid[0].sum() * 100 == pytest.approx(source.valid[0].sum() * pixel_area, rel=0.03)
    assert np.isnan(out.values[~out.valid]).all()
    assert np.nanmean(out.values[0]) == pytest.approx(np.nanmean(source.values[0]), abs=0.3)  # dB
    # the all-NaN chip stays all invalid wherever it lands
    empty = shared_path("sen1floods11_samples", "sample_data", "S1", "Paraguay_34417_S1Hand.tif")
    assert not reproject_to_grid(empty, epsg, transform, (height, width)).valid.any()


def test_reproject_never_invents_values_in_holes() -> None:
    path = spain("S1")
    source = read_raster(path, window=Window(40, 40, 40, 40))
    hole = np.ones((40, 40), dtype=bool)
    hole[10:20, 5:30] = False
    holed = Raster(
        np.where(hole, source.values, np.nan),
        source.valid & hole,
        source.band_names,
        source.crs,
        source.transform,
        path,
    )
    finer = source.transform @ Affine.scale(0.5)  # same CRS, half the pixel: not a window, so resampled
    out = reproject_to_grid(holed, source.crs, finer, (80, 80), "bilinear")
    expected = np.repeat(np.repeat(hole, 2, axis=0), 2, axis=1)  # each target pixel's nearest source pixel
    np.testing.assert_array_equal(out.valid[0], expected)
    assert np.isnan(out.values[:, ~expected]).all() and np.isfinite(out.values[:, expected]).all()


def test_aligned_grids_are_read_without_resampling() -> None:
    label, s1 = spain("Label"), spain("S1")
    grid = raster_info(s1).grid  # the label's pixel size differs from S1's by 3e-19 degrees: same grid
    out = reproject_to_grid(label, grid.crs, grid.transform, grid.shape, "bilinear")
    np.testing.assert_array_equal(out.values, read_raster(label).values)
    shifted = grid.transform @ Affine.translation(-3, 5)  # a window reaching 3 columns past the west edge
    moved = reproject_to_grid(label, grid.crs, shifted, (16, 16), "bilinear")
    assert not moved.valid[0, :, :3].any()
    np.testing.assert_array_equal(moved.values[0, :, 3:], read_raster(label).values[0, 5:21, :13])


# ------------------------------------------------------------------------------------------------------------------
# Co-registration
# ------------------------------------------------------------------------------------------------------------------
def test_coregistered_grids_refuse_or_crop_odd_sizes() -> None:
    path = rasterio_data("RGB.byte.tif")
    height, width = raster_info(path).height, raster_info(path).width  # 718 × 791 (the excerpt: 398 × 407)
    rows, cols = height // 32, width // 32
    assert height % 32 and width % 32
    size = rf"{height}×{width} is not a multiple of .* ratio 32.*{32 * rows}×{32 * cols}"
    with pytest.raises(ValueError, match=rf"RGB.byte.tif: HR size {size}"):
        coregistered_grids(path, 32)
    hr, sentinel = coregistered_grids(path, 32, crop=True)
    assert hr.shape == (32 * rows, 32 * cols) and sentinel.shape == (rows, cols)
    assert sentinel.crs == hr.crs and sentinel.transform @ (0, 0) == hr.transform @ (0, 0)
    assert sentinel.res == pytest.approx((32 * hr.res[0], 32 * hr.res[1]))
    assert sentinel.transform @ (rows, rows) == pytest.approx(hr.transform @ (32 * rows, 32 * rows))


def test_read_coregistered_matches_block_averages() -> None:
    path = rasterio_data("RGB.byte.tif")
    full = read_raster(path)
    rows, cols = full.values.shape[1] // 2, full.values.shape[2] // 2  # 359, 395 (the excerpt: 199, 203)
    coarse = read_coregistered(path, path, ratio=2, crop=True, resampling="average")
    assert coarse.values.shape == (3, rows, cols)
    blocks = full.values[:, : 2 * rows, : 2 * cols].reshape(3, rows, 2, cols, 2)
    whole = full.valid[:, : 2 * rows, : 2 * cols].reshape(3, rows, 2, cols, 2).all(axis=(2, 4))
    expected = blocks.mean(axis=(2, 4))
    np.testing.assert_allclose(coarse.values[whole], expected[whole], atol=0.51)
    # Sentinel-2 chip as the "HR" grid: 512 / 32 = 16 Sentinel pixels of 32 chip pixels (the excerpt: 128 / 32 = 4)
    n = raster_info(spain("S2")).width // 32
    s1 = read_coregistered(spain("S1"), spain("S2"), ratio=32, resampling="average")
    assert s1.values.shape == (2, n, n) and s1.valid.all()
    chip = read_raster(spain("S1")).values.reshape(2, n, 32, n, 32).mean(axis=(2, 4))
    np.testing.assert_allclose(s1.values, chip, atol=1e-3)


# ------------------------------------------------------------------------------------------------------------------
# Time series
# ------------------------------------------------------------------------------------------------------------------
def test_time_series_from_a_directory_sorted_by_date(tmp_path: Path) -> None:
    window = Window(64, 96, 32, 32)
    for name in ("Spain_7370579_S1_20191011.tif", "Spain_7370579_S1_20190917.tif", "Spain_7370579_S1_20190929.tif"):
        write_crop(spain("S1"), tmp_path / name, window)
    series = read_time_series(tmp_path, pattern="*_S1_*.tif", sensor=S1_GRD)
    assert [d.isoformat() for d in series.dates] == ["2019-09-17", "2019-09-29", "2019-10-11"]
    assert tuple(series.values.shape) == (3, 2, 32, 32) and series.valid.all()
    expected = read_raster(spain("S1"), window=window).values
    np.testing.assert_array_equal(series.values[0].numpy(), expected)


def test_time_series_band_count_mismatch_names_both_files(tmp_path: Path) -> None:
    window = Window(0, 0, 16, 16)
    s1 = write_crop(spain("S1"), tmp_path / "x_20190917.tif", window)
    s2 = write_crop(spain("S2"), tmp_path / "x_20190918.tif", window)
    with pytest.raises(ValueError, match=r"x_20190917.tif has 2 bands, .*x_20190918.tif has 13"):
        read_time_series([s1, s2])


def test_time_series_reprojects_other_crs_and_converts_units(tmp_path: Path) -> None:
    window = Window(72, 72, 48, 48)
    first = write_crop(spain("S2"), tmp_path / "Spain_S2_20190918.tif", window)
    crop = read_raster(first)
    # the same place delivered in UTM on the next date
    lat, lon = crop.center_lat_lon()
    epsg = utm_epsg(lon, lat)
    info = raster_info(first)
    transform, width, height = calculate_default_transform(
        info.crs, f"EPSG:{epsg}", 48, 48, *info.bounds, resolution=10
    )
    utm = reproject_to_grid(first, epsg, transform, (height, width), "nearest")
    second = tmp_path / "Spain_S2_20191003.tif"
    profile = dict(driver="GTiff", count=13, dtype="int16", nodata=0, crs=f"EPSG:{epsg}", transform=transform)
    with rasterio.open(second, "w", width=width, height=height, **profile) as dst:
        dst.write(np.nan_to_num(utm.values, nan=0).astype(np.int16))
        for i, name in enumerate(utm.band_names, start=1):
            dst.set_band_description(i, name)
    series = read_time_series([second, first], sensor=S2_L1C)  # 13 L1C bands → the model's 10
    assert series.dates == [dt.date(2019, 9, 18), dt.date(2019, 10, 3)]
    assert tuple(series.values.shape) == (2, 10, 48, 48)
    np.testing.assert_array_equal(series.values[0].numpy(), crop.values[[1, 2, 3, 4, 5, 6, 7, 8, 11, 12]])
    back = series.valid[1].float().mean().item()
    assert back > 0.85  # the UTM frame covers the chip except a rim
    assert np.isnan(series.values[1].numpy()[:, ~series.valid[1].numpy()]).all()
    # linear backscatter → dB when configured
    linear = tmp_path / "linear_20190917.tif"
    decibels = read_raster(spain("S1"), window=window)
    write_crop(spain("S1"), linear, window, data=10 ** (decibels.values / 10))
    converted = read_time_series([linear], sensor=S1_GRD_LINEAR)
    np.testing.assert_allclose(converted.values[0].numpy(), decibels.values, atol=1e-4)
    with pytest.raises(ValueError, match=r"do not include VV, VH of the 2 s1 bands \['VV', 'VH'\]"):
        read_time_series([first], sensor=S1_GRD)


def test_time_series_of_non_georeferenced_frames_needs_one_size(tmp_path: Path) -> None:
    source = rasterio_data("float32.tif")
    copies = [shutil.copy(source, tmp_path / f"f_2020010{i}.tif") for i in (1, 2)]
    series = read_time_series(copies)
    assert tuple(series.values.shape) == (2, 1, 2, 3)
    other = tmp_path / "g_20200103.tif"
    with rasterio.open(other, "w", driver="GTiff", width=4, height=2, count=1, dtype="float32") as dst:
        dst.write(np.ones((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"g_20200103.tif: cannot place this file on the series grid"):
        read_time_series([*copies, other])
