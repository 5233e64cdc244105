"""Sentinel-2 products as downloaded (issue 14): the real Sen1Floods11 L1C chip written as a .SAFE tree (per-band
JPEG 2000 at 10/20/60 m, metadata with and without the baseline-04.00 offset, a cloud mask), zipped and unzipped,
as an IMG_DATA folder alone, and as an L2A product; each read gives the chip's pixels, date, tile and clouds."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import Affine

from skysense.containers import Grid
from skysense.data.products import find_s2_products, read_s2_product
from skysense.data.sensors import S2_L1C, S2_L2A
from skysense.data.series import read_time_series
from skysense.errors import InputError
from skysense.inference.sources import SeriesSource
from tests.data.s2_safe import (
    BANDS,
    RESOLUTION,
    TILE,
    TIME,
    band_at_resolution,
    chip,
    clear_pixels,
    cloud_pixels,
    side,
    two_tiles,
    write_safe,
    zip_safe,
)


def _check_l1c(product, values: np.ndarray, cloud: bool = True) -> None:
    assert product.level == "L1C" and product.tile == TILE and product.date == dt.date(2022, 9, 17)
    grid = product.grid()
    assert grid.shape == values.shape[1:]
    raster = product.read(grid, S2_L1C.bands)
    assert raster.values.shape == (13, *grid.shape)
    for index, band in enumerate(BANDS):
        if RESOLUTION.get(band, 20) != 10:
            continue
        expected = values[index].astype(np.float32)
        got = raster.values[index]
        clear = raster.valid[index]
        assert np.array_equal(got[clear], expected[clear]), band  # exact: lossless DN, offset removed
    if cloud:
        (rows, cols), (clear_rows, clear_cols) = cloud_pixels(), clear_pixels()
        assert not raster.valid[:, rows, cols].any() and raster.valid[:, clear_rows, clear_cols].all()
    else:
        assert raster.valid.all()


def test_l1c_safe_folder_and_zip_give_the_chip(tmp_path: Path) -> None:
    values, _ = chip()
    safe = write_safe(tmp_path)
    (product,) = find_s2_products(safe)
    assert product.assumptions == () and product.offsets["B2"] == -1000 and product.quantification == 10000
    _check_l1c(product, values)
    folder_read = product.read(product.grid(), S2_L1C.bands).values
    zipped = zip_safe(safe)
    (from_zip,) = find_s2_products(zipped)
    assert from_zip.bands["B2"].startswith("/vsizip/") and from_zip.files == (zipped,)
    assert np.array_equal(from_zip.read(from_zip.grid(), S2_L1C.bands).values, folder_read, equal_nan=True)
    assert not list(tmp_path.glob("*.SAFE"))  # nothing extracted


def test_lower_resolution_bands_read_exactly_on_their_own_grid(tmp_path: Path) -> None:
    """A 20 m band onto the product's 20 m grid and a 60 m band onto its 60 m grid: a plain window, no resampling;
    the same as the chip's block means."""
    values, _ = chip()
    (product,) = find_s2_products(write_safe(tmp_path, cloud=False))
    ten = product.grid()
    for band, factor in (("B5", 2), ("B11", 2), ("B9", 6)):
        grid = Grid(ten.crs, ten.transform @ Affine.scale(factor), ten.height // factor, ten.width // factor)
        raster = product.read(grid, [band])
        expected = band_at_resolution(values[BANDS.index(band)].astype(np.float64), band)
        assert np.array_equal(raster.values[0], expected.astype(np.float32)), band


def test_baseline_before_04_has_no_offset_and_missing_metadata_is_stated(tmp_path: Path) -> None:
    values, _ = chip()
    (old,) = find_s2_products(write_safe(tmp_path / "old", offset=False, cloud=False))
    assert old.offsets == {} and old.assumptions[-1].startswith("no cloud mask")
    _check_l1c(old, values, cloud=False)
    safe = write_safe(tmp_path / "new", metadata=False)
    loose = tmp_path / "IMG_DATA"
    shutil.copytree(next(safe.rglob("IMG_DATA")), loose)  # the band files alone, no metadata above them
    (product,) = find_s2_products(loose)
    assert "assumed quantification 10000 and offset -1000" in product.assumptions[0]
    _check_l1c(product, values, cloud=False)


def test_l2a_product_with_resolution_folders_and_scl(tmp_path: Path) -> None:
    values, _ = chip()
    (product,) = find_s2_products(write_safe(tmp_path, level="L2A"))
    assert product.level == "L2A" and product.sensor == "s2_l2a" and "B10" not in product.bands
    assert product.bands["B2"].endswith("_B02_10m.jp2") and product.bands["B5"].endswith("_B05_20m.jp2")
    raster = product.read(product.grid(), S2_L2A.bands)
    assert raster.values.shape[0] == 10
    for index, band in enumerate(S2_L2A.bands):
        if RESOLUTION.get(band, 20) == 10:
            clear = raster.valid[index]
            assert np.array_equal(raster.values[index][clear], values[BANDS.index(band)][clear].astype(np.float32))
    (rows, cols), (clear_rows, clear_cols) = cloud_pixels(), clear_pixels()
    assert not raster.valid[:, rows, cols].any() and raster.valid[:, clear_rows, clear_cols].all()
    with pytest.raises(InputError, match=r"has no band B10 .*; use the sensor of its level \(--s2-sensor s2_l2a\)"):
        product.read(product.grid(), S2_L1C.bands)
    next(write_safe(tmp_path / "incomplete", level="L2A", at_most=60).rglob("*_B11_20m.jp2")).unlink()
    (incomplete,) = find_s2_products(tmp_path / "incomplete")
    with pytest.raises(InputError, match=r"has no band B11 .*; the product is incomplete: re-download it"):
        incomplete.read(incomplete.grid(), S2_L2A.bands)


def test_products_in_a_series(tmp_path: Path) -> None:
    """A folder of two products (a zip and a folder) is a two-date series; bands in any order are named."""
    series_folder = tmp_path / "series"
    write_safe(series_folder)
    zip_safe(write_safe(series_folder, time="20221007T105619"))
    products = find_s2_products(tmp_path / "series")
    assert [p.date for p in products] == [dt.date(2022, 9, 17), dt.date(2022, 10, 7)]
    series = read_time_series(products, sensor=S2_L1C)
    assert series.values.shape == (2, 10, side(), side()) and series.dates == [p.date for p in products]
    shuffled = products[0].read(products[0].grid(), ["B12", "b02", "B8A", "B04"])
    ordered = products[0].read(products[0].grid(), ["B12", "B2", "B8A", "B4"])
    assert np.array_equal(shuffled.values, ordered.values, equal_nan=True)


def test_a_folder_without_band_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no bands")
    with pytest.raises(InputError, match="no Sentinel-2 band file found"):
        read_s2_product(tmp_path / "empty")


def test_index_lists_products_as_one_row_per_date_and_the_dataset_reads_them(tmp_path: Path) -> None:
    """`skysense data index` of a folder with a .SAFE folder, a .SAFE.zip of another date and a loose IMG_DATA
    (before: 13 one-band rows per product, typed label or s2, and 0 samples): one s2 row per product, one sample
    (the tile), and ManifestDataset reads its three dates."""
    from skysense.cli import main
    from skysense.data.manifest import PRODUCT_DRIVER, ManifestDataset, read_manifest

    root = tmp_path / "downloads"
    write_safe(root)
    zip_safe(write_safe(root, time="20221007T105619"))
    elsewhere = write_safe(tmp_path / "other", time="20221027T105619", metadata=False)
    shutil.copytree(next(elsewhere.rglob("IMG_DATA")), root / "IMG_DATA")
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(root), "-o", str(manifest)]) == 0
    entries = read_manifest(manifest)
    assert [e.driver for e in entries] == [PRODUCT_DRIVER] * 3 and {e.modality for e in entries} == {"s2"}
    assert sorted(e.date for e in entries) == [dt.date(2022, 9, 17), dt.date(2022, 10, 7), dt.date(2022, 10, 27)]
    assert len({e.sample for e in entries}) == 1 and entries[0].band_names[:2] == ("B1", "B2")
    assert any("assumed quantification" in e.notes for e in entries)
    dataset = ManifestDataset(manifest)
    assert len(dataset) == 1
    sample = dataset[0]
    assert sample.s2.values.shape == (3, 10, side(), side())  # L1C: the model's 10 of the 13 bands


def test_data_info_describes_a_product(capsys, tmp_path: Path) -> None:
    from skysense.cli import main

    zipped = zip_safe(write_safe(tmp_path))
    assert main(["data", "info", str(zipped)]) == 0
    out = capsys.readouterr().out
    assert "Sentinel-2 L1C product" in out and "tile T30SYH, date 2022-09-17" in out
    assert "(DN + offset -1000) x 10000 / 10000" in out and "MSK_CLASSI_B00.jp2" in out


def test_tiles_of_one_date_are_read_as_one_mosaic(tmp_path: Path) -> None:
    """Two MGRS tiles of each of two dates, overlapping by 120 columns (the chip's left 300 and right 300 columns of
    480; :func:`~tests.data.s2_safe.two_tiles`):
    one frame a date, on the union of the tiles, equal to the whole chip's product; one tile twice on a date is
    still refused."""
    from skysense.data.products import S2Mosaic
    from skysense.inference.sources import SeriesSource

    whole = find_s2_products(write_safe(tmp_path / "whole", level="L2A", cloud=False))
    root = tmp_path / "two_tiles"
    left, right = two_tiles()
    for time in (TIME, "20221007T105619"):
        write_safe(root, level="L2A", cloud=False, time=time, tile="T30SYH", columns=left)
        write_safe(root, level="L2A", cloud=False, time=time, tile="T30SYJ", columns=right)
    source = SeriesSource.from_arg(root, "auto")
    assert len(source.files) == 2 and all(isinstance(f, S2Mosaic) for f in source.files)
    assert [f.tile for f in source.files] == ["T30SYH+T30SYJ"] * 2
    grid = source.files[0].grid()
    assert grid.shape == whole[0].grid().shape and grid.transform.almost_equals(whole[0].grid().transform)
    series = read_time_series(source.files, sensor=S2_L2A, dates=source.dates)
    reference = read_time_series(whole, sensor=S2_L2A)
    assert series.values.shape == (2, 10, side(), side()) and bool(series.valid.all())
    for frame in range(2):
        assert np.allclose(series.values[frame].numpy(), reference.values[0].numpy(), atol=1e-4)

    write_safe(tmp_path / "twice", level="L2A", cloud=False, tile="T30SYH", columns=left)
    shutil.copytree(next((tmp_path / "twice").iterdir()), tmp_path / "twice" / "copy_of.SAFE")
    with pytest.raises(InputError, match="share"):
        SeriesSource.from_arg(tmp_path / "twice", "auto")


# ------------------------------------------------------------------------------------------------------------------
# Scene folders of bare band names, as Earth Search's COGs and AWS's tiles/ layout are downloaded
# ------------------------------------------------------------------------------------------------------------------
def _copy_bands(product, folder: Path, suffix: str, add: int = 0, resolution_folders: bool = False) -> None:
    """``product``'s band files and mask rewritten under ``folder`` with bare names (``B02.tif``, ``SCL.tif``), DN +
    ``add``; ``resolution_folders``: in ``R10m``/``R20m``/``R60m`` as AWS's L2A tiles."""
    import rasterio

    for code, path in [*product.bands.items(), ("SCL" if product.level == "L2A" else "", product.mask)]:
        if not code:
            continue
        with rasterio.open(path) as src:
            values, profile = src.read().astype(np.int64), src.profile
        name = code if code in ("B8A", "SCL") else f"B{int(code[1:]):02d}"
        target = folder / Path(path).parent.name if resolution_folders else folder  # R10m / R20m / R60m
        target.mkdir(parents=True, exist_ok=True)
        driver = "GTiff" if suffix == ".tif" else "JP2OpenJPEG"
        extra = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {"tiled": True}
        profile.update(driver=driver, **extra)
        with rasterio.open(target / f"{name}{suffix}", "w", **profile) as dst:
            dst.write(np.clip(values + (add if code != "SCL" else 0), 0, None).astype(profile["dtype"]))


@pytest.mark.parametrize("with_item", [True, False])
def test_an_earth_search_scene_folder_reads_like_the_product(tmp_path: Path, with_item: bool) -> None:
    """`aws s3 cp --recursive s3://sentinel-cogs/sentinel-s2-l2a-cogs/30/S/YH/2022/9/S2B_30SYH_20220917_0_L2A/`:
    B01.tif … B12.tif, SCL.tif, AOT/WVP/TCI and metadata beside them, and the scene's STAC Item. Before: each band
    was read as a date (refused as 13 files sharing one). The tile, date and level come from the folder's name; the
    offset from the Item (whose COGs already carry it), else from the date, stated."""
    import json

    (product,) = find_s2_products(write_safe(tmp_path, level="L2A"))
    scene = tmp_path / "downloads" / "S2B_30SYH_20220917_0_L2A"
    _copy_bands(product, scene, ".tif", add=-1000 if with_item else 0)
    for decoy in ("AOT.tif", "WVP.tif", "TCI.tif", "L2A_PVI.tif"):
        shutil.copy(scene / "B02.tif", scene / decoy)
    (scene / "granule_metadata.xml").write_text("<Level-2A_Tile_ID/>")
    (scene / "tileinfo_metadata.json").write_text(json.dumps({"path": "tiles/30/S/YH/2022/9/17/0"}))
    if with_item:
        item = {"type": "Feature", "stac_version": "1.0.0", "id": scene.name, "geometry": None, "links": [],
                "assets": {}, "properties": {"datetime": "2022-09-17T10:56:19Z", "s2:processing_baseline": "04.00",
                                             "earthsearch:boa_offset_applied": True}}  # fmt: skip
        (scene / f"{scene.name}.json").write_text(json.dumps(item))
    source = SeriesSource.from_arg(scene, "auto")
    (got,) = source.files
    assert got.name == scene.name and got.tile == TILE and got.level == "L2A" and source.dates == [got.date]
    assert got.date == dt.date(2022, 9, 17) and got.mask == str(scene / "SCL.tif")
    assert bool(got.assumptions) == (not with_item) and got.offsets == ({} if with_item else product.offsets)
    grid = product.grid()
    from_folder, from_product = got.read(grid, S2_L2A.bands), product.read(grid, S2_L2A.bands)
    assert np.array_equal(from_folder.valid, from_product.valid) and (~from_folder.valid).any()
    assert np.array_equal(from_folder.values, from_product.values, equal_nan=True)
    if with_item:  # a folder of scene folders: `skysense data index` gives one row per scene, the Item JSON covered
        from skysense.cli import main
        from skysense.data.manifest import PRODUCT_DRIVER, read_manifest

        second = write_safe(tmp_path / "second", level="L2A", time="20221007T105619")
        _copy_bands(find_s2_products(second)[0], scene.parent / "S2B_30SYH_20221007_0_L2A", ".tif")
        assert main(["data", "index", str(scene.parent), "-o", str(tmp_path / "m.csv")]) == 0
        entries = read_manifest(tmp_path / "m.csv")
        assert [(e.driver, e.date) for e in entries] == [
            (PRODUCT_DRIVER, dt.date(2022, 9, 17)),
            (PRODUCT_DRIVER, dt.date(2022, 10, 7)),
        ]


@pytest.mark.parametrize("inside", [True, False])
def test_a_zipped_earth_search_scene_folder_reads_like_the_folder(tmp_path: Path, inside: bool) -> None:
    """An Earth Search scene folder zipped to be moved (`zip -r S2B_30SYH_20220917_0_L2A.zip S2B_30SYH_…/`, or its
    files at the zip's root), its STAC Item JSON inside. Before: its bands were read as one-band dates (refused).
    Expected: read in place through /vsizip/ (nothing extracted) as one product, the offset from the Item inside the
    zip (no assumption), the same values and validity as the folder, to the bit; `data index` gives one row."""
    import json
    import zipfile

    from skysense.cli import main
    from skysense.data.manifest import PRODUCT_DRIVER, read_manifest

    (product,) = find_s2_products(write_safe(tmp_path, level="L2A"))
    scene = tmp_path / "folder" / "S2B_30SYH_20220917_0_L2A"
    _copy_bands(product, scene, ".tif", add=-1000)
    item = {"type": "Feature", "stac_version": "1.0.0", "id": scene.name, "geometry": None, "links": [], "assets": {},
            "properties": {"datetime": "2022-09-17T10:56:19Z", "s2:processing_baseline": "04.00",
                           "earthsearch:boa_offset_applied": True}}  # fmt: skip
    (scene / f"{scene.name}.json").write_text(json.dumps(item))
    archive = tmp_path / "downloads" / f"{scene.name}.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as opened:
        for file in sorted(scene.iterdir()):
            opened.write(file, f"{scene.name}/{file.name}" if inside else file.name)
    (from_folder,) = SeriesSource.from_arg(scene, "auto").files
    source = SeriesSource.from_arg(archive, "auto")
    (zipped,) = source.files
    assert (zipped.name, zipped.tile, zipped.level, zipped.date) == (scene.name, TILE, "L2A", dt.date(2022, 9, 17))
    assert zipped.offsets == {} and not zipped.assumptions and zipped.mask.startswith("/vsizip/")
    assert source.paths == [archive]
    grid = product.grid()
    a, b = zipped.read(grid, S2_L2A.bands), from_folder.read(grid, S2_L2A.bands)
    assert np.array_equal(a.valid, b.valid) and np.array_equal(a.values, b.values, equal_nan=True)
    assert main(["data", "index", str(archive.parent), "-o", str(tmp_path / "m.csv")]) == 0
    assert [(e.driver, e.date) for e in read_manifest(tmp_path / "m.csv")] == [(PRODUCT_DRIVER, dt.date(2022, 9, 17))]
    # a folder of zipped scenes is a series, as `data index` reads it: one date each
    (second,) = find_s2_products(write_safe(tmp_path / "second", level="L2A", time="20221007T105619"))
    later = tmp_path / "folder" / "S2B_30SYH_20221007_0_L2A"
    _copy_bands(second, later, ".tif")
    shutil.make_archive(str(archive.parent / later.name), "zip", root_dir=later.parent, base_dir=later.name)
    series = SeriesSource.from_arg(archive.parent, "auto")
    assert series.dates == [dt.date(2022, 9, 17), dt.date(2022, 10, 7)] and series.paths == sorted(
        archive.parent.iterdir()
    )


def test_an_aws_l1c_tile_folder_reads_like_the_product(tmp_path: Path) -> None:
    """AWS's sentinel-s2-l1c layout (also what sentinelhub's AWS download writes): tiles/30/S/YH/2022/9/17/0/ with
    B01.jp2 … B12.jp2, B8A.jp2, qi/MSK_CLASSI_B00.jp2 and the tile's metadata.xml; tile and date from the path."""
    values, _ = chip()
    (product,) = find_s2_products(write_safe(tmp_path))
    tile = tmp_path / "aws" / "tiles" / "30" / "S" / "YH" / "2022" / "9" / "17" / "0"
    _copy_bands(product, tile, ".jp2")
    (tile / "qi").mkdir()
    shutil.copy(product.mask, tile / "qi" / "MSK_CLASSI_B00.jp2")
    (tile / "metadata.xml").write_text("<Level-1C_Tile_ID/>")
    (got,) = find_s2_products(tmp_path / "aws")
    assert got.mask == str(tile / "qi" / "MSK_CLASSI_B00.jp2") and got.name == "T30SYH_20220917_0"
    _check_l1c(got, values)


def test_bare_band_files_in_a_folder_that_names_no_scene_are_refused_in_one_line(tmp_path: Path) -> None:
    (product,) = find_s2_products(write_safe(tmp_path, level="L2A"))
    _copy_bands(product, tmp_path / "my_bands", ".tif")
    with pytest.raises(InputError, match=r"my_bands: per-band files \(B01\.tif, B02\.tif, .*name the folder for"):
        SeriesSource.from_arg(tmp_path / "my_bands", "auto")


def test_an_hls_s30_granule_folder_reads_like_the_product(tmp_path: Path) -> None:
    """NASA HLS v2 as downloaded from LP DAAC: HLS.S30.T30SYH.2022260T105619.v2.0.B01.tif … .B8A.tif and .Fmask.tif
    (int16 harmonised reflectance x 1e4, nodata -9999; the date as year and day of year). One date, no offset, the
    Fmask's cloud bits invalid; HLS L30 (Landsat) files are refused in one line."""
    import rasterio

    (product,) = find_s2_products(write_safe(tmp_path, level="L2A"))
    granule = "HLS.S30.T30SYH.2022260T105619.v2.0"
    folder = tmp_path / granule
    folder.mkdir()
    for code, path in product.bands.items():
        with rasterio.open(path) as src:
            values, profile = src.read().astype(np.int64) - 1000, src.profile
        profile.update(driver="GTiff", dtype="int16", nodata=-9999, tiled=True)
        name = code if code == "B8A" else f"B{int(code[1:]):02d}"
        with rasterio.open(folder / f"{granule}.{name}.tif", "w", **profile) as dst:
            dst.write(values.astype("int16"))
    with rasterio.open(product.mask) as src:
        scl, profile = src.read(), src.profile
    profile.update(driver="GTiff")
    with rasterio.open(folder / f"{granule}.Fmask.tif", "w", **profile) as dst:
        dst.write(np.where(scl == 9, 0b10, 0b100000).astype("uint8"))  # cloud bit under the cloud, water elsewhere
    source = SeriesSource.from_arg(folder, "auto")
    (got,) = source.files
    assert source.dates == [dt.date(2022, 9, 17)] and got.offsets == {} and not got.assumptions
    assert got.name == granule and got.tile == TILE and got.sensor == "s2_l2a" and got.mask.endswith(".Fmask.tif")
    grid = product.grid()
    from_hls, from_product = got.read(grid, S2_L2A.bands), product.read(grid, S2_L2A.bands)
    assert np.array_equal(from_hls.valid, from_product.valid) and (~from_hls.valid).any()
    assert np.array_equal(from_hls.values, from_product.values, equal_nan=True)
    landsat = tmp_path / "HLS.L30.T30SYH.2022258T105619.v2.0"
    landsat.mkdir()
    for band in ("B04", "B05"):
        shutil.copy(folder / f"{granule}.{band}.tif", landsat / f"{landsat.name}.{band}.tif")
    with pytest.raises(InputError, match=r"HLS L30 files .* are Landsat OLI bands"):
        SeriesSource.from_arg(landsat, "auto")


def test_a_product_from_before_the_compact_naming_reads_with_its_sensing_date(tmp_path: Path) -> None:
    """Products named before December 2016 (S2A_OPER_PRD_MSIL1C_PDMC_…_V20160208T104652_….SAFE, band files named for
    their granule with its processing time, S2A_OPER_MTD_SAFL1C_….xml) as the long-term archives still hold them.
    Before: no band file was recognised ("no Sentinel-2 band file found"). The date is the sensing date of the
    product's name (a day before the processing time in the band names), the metadata its quantification; a loose
    granule, whose names hold only the processing time, is refused in one line."""
    values, _ = chip()
    safe = write_safe(tmp_path, time="20160208T104652", offset=False, cloud=False, old_format=True)
    (product,) = find_s2_products(safe)
    assert product.date == dt.date(2016, 2, 8) and product.tile == TILE and product.level == "L1C"
    assert product.assumptions == ("no cloud mask (MSK_CLASSI): only DN 0 is invalid",) and product.offsets == {}
    raster = product.read(product.grid(), S2_L1C.bands)
    for index, band in enumerate(BANDS):
        if RESOLUTION.get(band, 20) == 10:
            assert np.array_equal(raster.values[S2_L1C.bands.index(band)], values[index].astype(np.float32))
    (zipped,) = find_s2_products(zip_safe(safe))
    assert zipped.date == product.date and zipped.offsets == {} and not zipped.assumptions[:-1]
    again = write_safe(tmp_path / "again", time="20160208T104652", offset=False, cloud=False, old_format=True)
    shutil.copytree(next(again.rglob("IMG_DATA")), tmp_path / "IMG_DATA")  # the granule's bands, out of the product
    with pytest.raises(InputError, match=r"before December 2016 .* give the \.SAFE folder or zip"):
        SeriesSource.from_arg(tmp_path / "IMG_DATA", "auto")


def test_a_sen2cor_l2a_of_a_product_from_before_the_compact_naming_reads_like_a_current_one(tmp_path: Path) -> None:
    """Sen2Cor's L2A of a pre-December-2016 product, as users made them locally (S2A_USER_PRD_MSIL2A_PDMC_….SAFE,
    bands IMG_DATA/R10m/S2A_USER_MSI_L2A_TL_…_B02_10m.jp2, the scene classification in IMG_DATA itself as
    S2A_USER_SCL_L2A_TL_…_20m.jp2, S2A_USER_MTD_SAFL2A_….xml with Sen2Cor's L2A_BOA_QUANTIFICATION_VALUE).
    Before: no band file was recognised. Expected: the sensing date of the product's name, the quantification from
    its metadata, the SCL as its cloud mask, and the same values and validity as the same pixels in a current L2A
    product (baseline 02.xx, no offset), to the bit; zipped too."""
    old = write_safe(tmp_path / "old", level="L2A", time="20160208T104652", offset=False, old_format=True)
    assert old.name.startswith("S2A_USER_PRD_MSIL2A_PDMC_")
    current = write_safe(tmp_path / "current", level="L2A", time="20160208T104652", offset=False)
    (product,), (reference,) = find_s2_products(old), find_s2_products(current)
    assert (product.level, product.date, product.tile) == ("L2A", dt.date(2016, 2, 8), TILE)
    assert product.quantification == 10000.0 and product.offsets == {} and not product.assumptions
    assert (
        product.mask is not None
        and "_USER_SCL_L2A_TL_" in product.mask
        and product.bands.keys() == reference.bands.keys()
    )
    grid = reference.grid()
    got, expected = product.read(grid, S2_L2A.bands), reference.read(grid, S2_L2A.bands)
    assert np.array_equal(got.valid, expected.valid) and np.array_equal(got.values, expected.values, equal_nan=True)
    rows, cols = cloud_pixels()
    assert not got.valid[:, rows, cols].any() and got.valid.any()
    (zipped,) = find_s2_products(zip_safe(old))
    assert zipped.date == product.date and zipped.mask is not None and not zipped.assumptions


def test_a_downloads_folder_reads_every_product_however_it_is_named(tmp_path: Path) -> None:
    """A downloads folder as users keep one: a .SAFE folder, one renamed .safe, one without its suffix, a .SAFE.ZIP,
    a product .zip, an Earth Search scene folder and a granule's IMG_DATA copied out. Before, only the .SAFE folder
    and the .SAFE.zip were read when any was there, and the rest dropped without a word. Loose band files beside
    the products are refused in one line, naming them."""
    downloads = tmp_path / "downloads"
    times = [f"2022{month}T105619" for month in ("0917", "1007", "1017", "1027", "1106", "1116", "1126")]
    write_safe(downloads, at_most=60, time=times[0])
    renamed = write_safe(downloads, at_most=60, time=times[1])
    renamed.rename(renamed.with_name(renamed.name[: -len(".SAFE")] + ".safe"))
    bare = write_safe(downloads, at_most=60, time=times[2])
    bare.rename(bare.with_name(bare.name[: -len(".SAFE")]))
    upper = zip_safe(write_safe(downloads, at_most=60, time=times[3]))
    upper.rename(upper.with_name(upper.name.replace(".SAFE.zip", ".SAFE.ZIP")))
    plain = zip_safe(write_safe(downloads, at_most=60, time=times[4]))
    plain.rename(plain.with_name(plain.name.replace(".SAFE.zip", ".zip")))
    (scene,) = find_s2_products(write_safe(tmp_path / "scene", time=times[5]))
    _copy_bands(scene, downloads / "S2B_30SYH_20221116_0_L1C", ".tif")
    copied = write_safe(tmp_path / "granule", at_most=60, time=times[6])
    shutil.copytree(next(copied.rglob("IMG_DATA")), downloads / "IMG_DATA")
    expected = [dt.date(int(t[:4]), int(t[4:6]), int(t[6:8])) for t in times]
    products = find_s2_products(downloads)
    assert [p.date for p in products] == expected
    assert all(p.name.startswith("S2B_MSIL1C_2022") and p.name.endswith("T131452") for p in products[:5])  # named
    assert SeriesSource.from_arg(downloads, "auto").dates == expected
    shutil.copy(next(copied.rglob("*_B02.jp2")), downloads)
    with pytest.raises(InputError, match=r"loose band files beside them \(T30SYH_20221126T105619_B02.jp2\)"):
        find_s2_products(downloads)


def test_a_reprocessed_product_without_metadata_takes_the_offset_of_the_baseline_in_its_name(tmp_path: Path) -> None:
    """A 2021 scene of the Collection-1 reprocessing (``…_N0500_…``) carries the -1000 offset although it was sensed
    before 2022-01-25. Without its MTD file the offset was assumed from the date: every value 1000 DN too high,
    silently. The name's baseline decides now, and the assumption says so; zipped alike."""
    safe = write_safe(tmp_path, time="20210917T105619", metadata=False, cloud=False)  # DN = chip + 1000
    reprocessed = safe.rename(safe.with_name(safe.name.replace("_N0400_", "_N0500_")))
    values, _ = chip()
    for zipped in (False, True):
        (product,) = find_s2_products(zip_safe(reprocessed) if zipped else reprocessed)
        assert product.date == dt.date(2021, 9, 17) and product.offsets["B2"] == -1000
        assert "offset -1000 (processing baseline 05.00 in the product's name)" in product.assumptions[0]
        raster = product.read(product.grid(), ["B2", "B8"])
        for index, band in enumerate(["B2", "B8"]):
            assert np.array_equal(raster.values[index], values[BANDS.index(band)].astype(np.float32)), band


def test_a_product_copied_from_a_mac_reads_like_the_product(tmp_path: Path) -> None:
    """A .SAFE copied from a Mac onto an exFAT drive: an AppleDouble ``._<name>`` (4 KB of resource fork) beside
    every file and folder, a .DS_Store, and the same zipped by Finder (``__MACOSX/``). Before, ``._MTD_MSIL1C.xml``
    was read as the product's metadata and ``._T30SYH_…_B01.jp2`` as its band, and the product was refused. Now
    they are ignored everywhere a listing is made: the product, a folder of products, and `data index`."""
    import zipfile

    from skysense.cli import main
    from skysense.data.manifest import read_manifest

    downloads = tmp_path / "downloads"
    safe = write_safe(downloads, at_most=60)
    (clean,) = find_s2_products(safe)
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4050)
    for path in [safe, *safe.rglob("*")]:
        (path.parent / f"._{path.name}").write_bytes(apple_double)
    (safe / ".DS_Store").write_bytes(bytes(6148))
    for found in (find_s2_products(safe), find_s2_products(downloads)):
        (product,) = found
        assert product.bands == clean.bands and product.mask == clean.mask and product.offsets == clean.offsets
    assert main(["data", "index", str(downloads), "-o", str(tmp_path / "m.csv")]) == 0
    assert len(read_manifest(tmp_path / "m.csv")) == 1
    archive = tmp_path / f"{safe.name}.zip"  # Finder's zip: every file's AppleDouble under __MACOSX/
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(safe.rglob("*")):
            member = path.relative_to(downloads).as_posix()
            if path.name.startswith("._"):
                zipped.writestr(f"__MACOSX/{member}", apple_double)
            elif path.is_file():
                zipped.write(path, member)
    (from_zip,) = find_s2_products(archive)
    assert sorted(from_zip.bands) == sorted(clean.bands) and from_zip.offsets == clean.offsets
    b2 = from_zip.read(from_zip.grid(), ["B2"]).values
    assert np.array_equal(b2, clean.read(clean.grid(), ["B2"]).values, equal_nan=True) and not np.isnan(b2).all()


def test_a_product_whose_granule_folder_is_a_link_reads_like_the_product(tmp_path: Path) -> None:
    """A .SAFE whose GRANULE/<granule> folder is a symbolic link to where the bands are stored (a data store shared
    between products): read like the product. Before: "no Sentinel-2 band file found" (the folder listing did not
    follow links to folders)."""
    safe = write_safe(tmp_path / "products", at_most=60)
    (clean,) = find_s2_products(safe)
    granule = next((safe / "GRANULE").iterdir())
    store = tmp_path / "store" / granule.name
    shutil.move(granule, store)
    granule.symlink_to(store, target_is_directory=True)
    (linked,) = find_s2_products(safe)
    assert sorted(linked.bands) == sorted(clean.bands) and linked.mask is not None
    assert linked.offsets == clean.offsets and linked.date == clean.date
    assert np.array_equal(linked.read(linked.grid(), ["B2"]).values, clean.read(clean.grid(), ["B2"]).values,
                          equal_nan=True)  # fmt: skip


def _write_manifest(safe: Path) -> None:
    """The product's manifest.safe as ESA writes it: an XFDU data object per file, its size and MD5."""
    import hashlib

    objects = []
    for index, path in enumerate(sorted(p for p in safe.rglob("*") if p.is_file())):
        data = path.read_bytes()
        objects.append(
            f'<dataObject ID="obj_{index}"><byteStream mimeType="application/octet-stream" size="{len(data)}">'
            f'<fileLocation locatorType="URL" href="./{path.relative_to(safe).as_posix()}"/>'
            f'<checksum checksumName="MD5">{hashlib.md5(data).hexdigest()}</checksum></byteStream></dataObject>'
        )
    (safe / "manifest.safe").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" '
        'version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l1c_user_product"><informationPackageMap/>'
        f"<dataObjectSection>{''.join(objects)}</dataObjectSection></xfdu:XFDU>"
    )


def test_data_info_checks_a_product_against_its_manifest_checksums(capsys, tmp_path: Path) -> None:
    """A band whose bytes were damaged in place (500 bytes overwritten mid-file, size unchanged) keeps its JPEG 2000
    markers and decodes without an error into wrong pixels. `skysense data info` checks every file of the product
    against the MD5s of its manifest.safe: the intact product (folder and zip) passes, saying how many files; the
    damaged one is refused in one line naming the band (exit 1)."""
    from skysense.cli import main

    safe = write_safe(tmp_path / "ok", at_most=60)
    _write_manifest(safe)
    files = sum(1 for p in safe.rglob("*") if p.is_file()) - 1
    assert main(["data", "info", str(safe)]) == 0
    assert f"checksums: the {files} files its manifest.safe lists match (MD5)" in capsys.readouterr().out
    assert main(["data", "info", str(zip_safe(safe))]) == 0
    assert f"checksums: the {files} files its manifest.safe lists match (MD5)" in capsys.readouterr().out
    damaged = write_safe(tmp_path / "damaged", at_most=60)
    _write_manifest(damaged)
    band = next(damaged.rglob("*_B03.jp2"))
    data = bytearray(band.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 500] = bytes(500)
    band.write_bytes(bytes(data))
    (product,) = find_s2_products(damaged)
    product.read(product.grid(), ["B3"])  # GDAL decodes it without a word
    assert main(["data", "info", str(damaged)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of its" in err[0] and "_B03.jp2: its MD5 differs" in err[0]
    assert "re-download it" in err[0]
