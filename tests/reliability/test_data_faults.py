"""Faults and bad input in the data layer, on real files: nothing lost, nothing silent (issue 13).

Every input is a real raster from ../shared/data, copied, truncated or renamed in ``tmp_path``:

- truncated GeoTIFFs whose header still opens: the rasterio COG ``cogeo.tif`` (directory at the start, internal
  mask at the end) cut to 60 %, and a Sen1Floods11 S1 chip re-written tiled and band-interleaved by rasterio and cut
  to 95 %, so that only the last tile of band 2 is lost; and a Landsat ``RGB.byte.tif`` truncated to 60 %, which
  loses its directory (at the end) and does not open at all;
- Sen1Floods11 S1 crops named with dates (two files of one date, one dated in 2099);
- eo-learn's real NDVI series, whose timestamps hold two acquisitions on 2015-12-08 (10:04 and 10:11 UTC).

Each test states the input, the expected behaviour, and asserts the one-line message (the file named) and the exit
code or exception type. ``skysense data ...`` runs in-process through ``skysense.cli.main``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from skysense.cli import main
from skysense.data.dates import check_series_dates
from skysense.data.manifest import ManifestDataset, index_directory, write_manifest
from skysense.data.raster import UnreadableRaster, check_readable, raster_info, read_raster, reproject_to_grid
from skysense.data.sensors import S1_GRD
from skysense.data.series import read_time_series
from skysense.errors import InputError
from tests.conftest import shared_path
from tests.data.test_readers import shipped_window


# ------------------------------------------------------------------------------------------------------------------
# Real inputs, damaged in tmp_path
# ------------------------------------------------------------------------------------------------------------------
def rasterio_data(name: str) -> Path:
    return shared_path("rasterio_testdata", "tests", "data", name)


def spain_s1() -> Path:
    return shared_path("sen1floods11_samples", "cloudtostreet_official_sample", "S1", "Spain_7370579_S1Hand.tif")


def truncate(source: Path, target: Path, fraction: float = 0.6) -> Path:
    """Copy the first ``fraction`` of ``source``'s bytes to ``target`` (a download cut short)."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def truncated_cog(target: Path) -> Path:
    """The real tiled COG ``cogeo.tif`` (1024×1024, 3 bands, 512×512 JPEG tiles, directory at the start, internal
    mask after the pixels) cut to 60 %: it opens and its first tile's pixels read; its mask and last tiles are lost."""
    truncate(rasterio_data("cogeo.tif"), target)
    info = raster_info(target)  # the header survived: what made `data index` list it as a good file
    assert (info.width, info.height, info.count, info.block_shape) == (1024, 1024, 3, (512, 512))
    with rasterio.open(target) as src:
        src.read(1, window=Window(0, 0, 512, 512))  # the first tile's pixels are there
    return target


def truncated_s1_chip(target: Path) -> Path:
    """The real Sen1Floods11 S1 chip (2 float32 bands, 512×512, nodata NaN; the excerpt's 128×128) re-written by
    rasterio tiled in 2 × 2 tiles (256×256; 64×64) and band-interleaved (directory first, band 2's tiles last), then
    cut to 95 %: band 1 and band 2's first tile read whole, band 2's last tile is lost."""
    with rasterio.open(spain_s1()) as src:
        data, profile = src.read(), src.profile
    half = data.shape[-1] // 2  # 256 (the excerpt: 64)
    whole = target.with_name("whole_" + target.name)
    profile |= {"tiled": True, "blockxsize": half, "blockysize": half, "interleave": "band"}
    with rasterio.open(whole, "w", **profile) as dst:
        dst.write(data)
    truncate(whole, target, 0.95)
    whole.unlink()
    with rasterio.open(target) as src:
        np.testing.assert_array_equal(src.read(1), data[0])  # band 1 intact: a check of band 1 alone would pass
        first = src.read(2, window=Window(0, 0, half, half))
        np.testing.assert_array_equal(first, data[1, :half, :half])  # and band 2's first tile
    return target


def write_s1_crop(target: Path) -> Path:
    """A 32×32 crop of the real Sen1Floods11 S1 chip (VV, VH in dB), keeping its band names: small files, fast
    tests."""
    window = shipped_window(spain_s1())
    with rasterio.open(spain_s1()) as src:
        data = src.read(window=window)
        profile = src.profile | {"width": 32, "height": 32, "transform": src.window_transform(window)}
        descriptions = src.descriptions
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return target


def one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The single stderr line of a failed ``skysense`` command, checked to start with ``skysense <command>: ``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"skysense {command}: "), lines[0]
    return lines[0]


@pytest.fixture
def folder_with_truncated_cog(tmp_path: Path) -> Path:
    """A folder of one good real raster (a Sen1Floods11 S1 crop) and one truncated COG."""
    root = tmp_path / "scenes"
    root.mkdir()
    write_s1_crop(root / "Spain_7370579_S1Hand_20190917.tif")
    truncated_cog(root / "cogeo_truncated.tif")
    return root


# ------------------------------------------------------------------------------------------------------------------
# 1. `skysense data index`: every file's pixels are read (first and last block of every band)
# ------------------------------------------------------------------------------------------------------------------
def test_index_refuses_a_truncated_geotiff_by_default(
    folder_with_truncated_cog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input: a folder with a good S1 crop and cogeo.tif cut to 60 % (header readable, last tile not).
    Expected: `skysense data index` (strict by default) exits 1 with one line naming the truncated file, the block
    that failed (the first tile's mask, written at the end of the file) and what to do (re-download, or
    --no-strict); no manifest is written."""
    manifest = folder_with_truncated_cog / "manifest.csv"
    assert main(["data", "index", str(folder_with_truncated_cog), "-o", str(manifest)]) == 1
    line = one_line_error(capsys, "data index")
    assert "1 of 2 rasters cannot be read: cogeo_truncated.tif (cannot read rows 0:512, columns 0:512 of the " in line
    assert "validity mask of band 1 (IReadBlock failed at X offset 0, Y offset 0: TIFFReadEncodedTile() failed" in line
    assert "re-download or replace them, or pass --no-strict" in line
    assert not manifest.exists()


def test_index_no_strict_leaves_the_truncated_file_out_and_lists_it(
    folder_with_truncated_cog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input: the same folder, with --no-strict.
    Expected: exit 0; the manifest has one row (the good crop), no row for the truncated file; stdout names it."""
    manifest = folder_with_truncated_cog / "manifest.csv"
    assert main(["data", "index", str(folder_with_truncated_cog), "-o", str(manifest), "--no-strict"]) == 0
    out = capsys.readouterr().out
    assert "indexed 1 files" in out
    assert "left out of the manifest: 1 files that cannot be read" in out
    assert f"{folder_with_truncated_cog / 'cogeo_truncated.tif'}: cannot read rows 0:512, columns 0:512 of the" in out
    rows = manifest.read_text().splitlines()
    assert len(rows) == 2 and "Spain_7370579_S1Hand_20190917.tif" in rows[1]
    assert "cogeo_truncated" not in manifest.read_text()


def test_index_checks_every_band(tmp_path: Path) -> None:
    """Input: the S1 chip re-written tiled and band-interleaved, cut to 95 %: band 1 and band 2's first tile read,
    band 2's last tile does not (a check of one band, or of first blocks only, would pass it).
    Expected: index_directory (strict by default in Python too) raises InputError naming the file, band 2 and its
    last tile."""
    path = truncated_s1_chip(tmp_path / "Spain_7370579_S1Hand.tif")
    half = raster_info(path).width // 2  # 256 (the excerpt: 64)
    last_tile = rf"rows {half}:{2 * half}, columns {half}:{2 * half}"
    with pytest.raises(InputError, match=rf"Spain_7370579_S1Hand.tif \(cannot read {last_tile} of band 2 \("):
        index_directory(tmp_path)


def test_index_names_the_first_five_unreadable_files_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input: 7 unreadable files — 6 truncated COGs and RGB.byte.tif truncated before its directory (it does not
    open at all) — beside one good crop.
    Expected: exit 1, one line naming the first five by path (sorted) with their problem, "and 2 more", 7 of 8."""
    truncate(rasterio_data("RGB.byte.tif"), tmp_path / "a_landsat.tif")
    with pytest.raises(UnreadableRaster, match=r"a_landsat.tif: cannot open the raster"):
        raster_info(tmp_path / "a_landsat.tif")
    cog = truncated_cog(tmp_path / "b_0.tif")
    for i in range(1, 6):
        shutil.copy(cog, tmp_path / f"b_{i}.tif")
    write_s1_crop(tmp_path / "good_20190917.tif")
    assert main(["data", "index", str(tmp_path), "-o", str(tmp_path / "m.csv")]) == 1
    line = one_line_error(capsys, "data index")
    assert "7 of 8 rasters cannot be read: a_landsat.tif (cannot open the raster (" in line
    for name in ("b_0.tif", "b_1.tif", "b_2.tif", "b_3.tif"):
        assert f"{name} (cannot read rows 0:512, columns 0:512 of the validity mask of band 1" in line
    assert "b_4.tif" not in line and "and 2 more; re-download" in line


def test_index_directory_not_strict_warns_when_nobody_collects_the_skipped_files(
    folder_with_truncated_cog: Path,
) -> None:
    """Input: the folder with the truncated COG, index_directory(strict=False) without ``skipped``.
    Expected: the entries hold only the good file, and a warning names the truncated one (never silent)."""
    with pytest.warns(UserWarning, match=r"left out 1 of 2 rasters that cannot be read: cogeo_truncated.tif"):
        entries = index_directory(folder_with_truncated_cog, strict=False)
    assert [e.path.name for e in entries] == ["Spain_7370579_S1Hand_20190917.tif"]
    skipped: dict[Path, str] = {}
    index_directory(folder_with_truncated_cog, strict=False, skipped=skipped)  # collected: no warning needed
    assert list(skipped) == [folder_with_truncated_cog / "cogeo_truncated.tif"]


# ------------------------------------------------------------------------------------------------------------------
# 2. Readers: a truncated or corrupt raster is an InputError naming the file
# ------------------------------------------------------------------------------------------------------------------
def test_read_raster_of_a_truncated_file_names_it(tmp_path: Path) -> None:
    """Input: cogeo.tif cut to 60 %, read whole (read_raster → RasterFile.read).
    Expected: UnreadableRaster (an InputError, a ValueError) naming the file, the bands and pixels read, GDAL's
    reason and what to do — not rasterio's "Read failed. See previous exception for details."."""
    path = truncated_cog(tmp_path / "cogeo_truncated.tif")
    with pytest.raises(UnreadableRaster) as caught:
        read_raster(path)
    message = str(caught.value)
    assert isinstance(caught.value, InputError) and isinstance(caught.value, ValueError)
    assert message.startswith(f"{path}: cannot read rows 0:1024, columns 0:1024 of bands [1, 2, 3] (")
    assert "TIFFReadEncodedTile() failed" in message and message.endswith("re-download or re-export it")


@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_check_readable_refuses_a_truncated_jpeg2000_band(tmp_path: Path, fraction: float) -> None:
    """Input: the real Sen1Floods11 S2 chip written as a SAFE product (per-band JPEG 2000), its B02 cut to 50 % and
    to 99 %. Expected: check_readable (which reads JPEG 2000 blocks at their coarsest level) refuses it, naming the
    file; the intact bands pass."""
    from tests.data.s2_safe import write_safe

    safe = write_safe(tmp_path)
    bands = sorted(safe.glob("GRANULE/*/IMG_DATA/*.jp2"))
    band = next(path for path in bands if path.stem.endswith("_B02"))
    data = band.read_bytes()
    band.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(UnreadableRaster) as caught:
        check_readable(band)
    assert str(caught.value).startswith(f"{band}: cannot read ")
    for path in bands:
        if path != band:
            check_readable(path)


def test_reproject_to_grid_of_a_truncated_file_names_it(tmp_path: Path) -> None:
    """Input: the S1 chip cut to 95 % (band 2's last tile lost), reprojected onto a 100 m UTM grid over the chip.
    Expected: UnreadableRaster naming the file, the window read and band 2 (GDAL's reason)."""
    path = truncated_s1_chip(tmp_path / "Spain_S1_truncated.tif")
    left, bottom, right, top = transform_bounds("EPSG:4326", "EPSG:32630", *raster_info(path).bounds)
    grid = from_origin(left, top, 100, 100)  # UTM 30N, 100 m pixels over the chip (near Murcia)
    shape = (int((top - bottom) // 100), int((right - left) // 100))
    with pytest.raises(UnreadableRaster, match=rf"^{path}: cannot read rows .* of bands \[1, 2\] \(.*band 2"):
        reproject_to_grid(path, "EPSG:32630", grid, shape)


def test_raster_info_of_a_corrupt_header_and_check_readable_of_lost_pixels(tmp_path: Path) -> None:
    """Input: RGB.byte.tif cut to 60 % (its directory is at the end: the header is lost) and cogeo.tif cut to 60 %
    (header kept, pixels lost).
    Expected: raster_info refuses the first with UnreadableRaster naming it; it reads the second's metadata (it reads
    no pixels, as documented) and check_readable refuses it naming the file and the last tile."""
    landsat = truncate(rasterio_data("RGB.byte.tif"), tmp_path / "RGB.byte.tif")
    with pytest.raises(UnreadableRaster, match=rf"^{landsat}: cannot open the raster \(.*; check that it is a"):
        raster_info(landsat)
    cog = truncated_cog(tmp_path / "cogeo.tif")
    with pytest.raises(UnreadableRaster, match=rf"^{cog}: cannot read rows 0:512, columns 0:512 of the validity mask "):
        check_readable(cog)
    assert check_readable(rasterio_data("cogeo.tif")).count == 3  # the whole file passes


def test_data_info_describes_then_refuses_a_truncated_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Input: `skysense data info` on cogeo.tif cut to 60 %.
    Expected: its metadata on stdout, then exit 1 and one stderr line naming the file and the block that failed."""
    path = truncated_cog(tmp_path / "cogeo_truncated.tif")
    assert main(["data", "info", str(path)]) == 1
    captured = capsys.readouterr()
    assert "GTiff, 1024×1024, 3 bands" in captured.out and "pixels:" not in captured.out
    line = captured.err.strip()
    assert "\n" not in line
    assert line.startswith(f"skysense data info: {path}: cannot read rows 0:512, columns 0:512 of the validity mask")
    assert line.endswith("the file is truncated or corrupt: re-download or re-export it")


def test_data_stats_of_a_file_truncated_after_indexing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Input: a manifest of the whole cogeo.tif; the file is then replaced by a copy cut to 60 % (a sync gone wrong).
    Expected: `skysense data stats` exits 1 with one line naming the file and the pixels that failed."""
    path = tmp_path / "cogeo.tif"
    shutil.copy(rasterio_data("cogeo.tif"), path)
    manifest = write_manifest(index_directory(tmp_path), tmp_path / "manifest.csv")
    truncated_cog(tmp_path / "cut.tif").replace(path)
    assert main(["data", "stats", str(manifest)]) == 1
    line = one_line_error(capsys, "data stats")
    assert f"{path}: cannot read rows 0:1024, columns 0:1024 of bands [1, 2, 3] (" in line


def test_data_commands_report_bad_folders_and_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input: `data index` of a folder without rasters; `data stats --tile 0`; `data stats` of a missing manifest.
    Expected: exit 1 (data), 2 (option), 1 (missing file), each with one line naming the folder, option or file
    (index used to raise SystemExit, which skipped the one-line reporting)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "index", str(empty), "-o", str(tmp_path / "m.csv")]) == 1
    assert f"{empty}: no raster found (any raster suffix); check the folder and --pattern" in one_line_error(
        capsys, "data index"
    )
    assert main(["data", "stats", str(tmp_path / "m.csv"), "--tile", "0"]) == 2
    assert "--tile: 0 is out of range; give an integer >= 1" in one_line_error(capsys, "data stats")
    assert main(["data", "stats", str(tmp_path / "m.csv")]) == 1
    assert f"no manifest at {tmp_path / 'm.csv'}" in one_line_error(capsys, "data stats")


# ------------------------------------------------------------------------------------------------------------------
# 3. Dates of a time series: duplicates and dates in the future
# ------------------------------------------------------------------------------------------------------------------
def test_time_series_refuses_two_files_of_one_date(tmp_path: Path) -> None:
    """Input: two S1 crops of one place named with the same date (20190917 and 2019-09-17).
    Expected: read_time_series raises InputError naming both files and the date, and how to keep them
    (allow_duplicate_dates=True / --allow-duplicate-dates); with allow_duplicate_dates=True it reads 2 frames."""
    first = write_s1_crop(tmp_path / "Spain_S1_20190917.tif")
    second = write_s1_crop(tmp_path / "Spain_S1_2019-09-17.tif")
    with pytest.raises(InputError) as caught:
        read_time_series([first, second], sensor=S1_GRD)
    message = str(caught.value)
    assert f"time series: files share a date (2019-09-17: {first} and {second})" in message
    assert "allow_duplicate_dates=True (CLI: --allow-duplicate-dates)" in message
    series = read_time_series([first, second], sensor=S1_GRD, allow_duplicate_dates=True)
    assert series.dates == [dt.date(2019, 9, 17)] * 2 and tuple(series.values.shape) == (2, 2, 32, 32)


def test_time_series_refuses_a_date_in_the_future(tmp_path: Path) -> None:
    """Input: two S1 crops, one named 20190917 and one 20990917 (a typo'd year), dates read from the names.
    Expected: InputError naming the 2099 file and its date, "after today", and what to fix."""
    good = write_s1_crop(tmp_path / "Spain_S1_20190917.tif")
    future = write_s1_crop(tmp_path / "Spain_S1_20990917.tif")
    with pytest.raises(InputError, match=rf"^time series: {future} \(2099-09-17\) is dated after today \(") as caught:
        read_time_series([good, future])
    assert "fix the date in the file name, date tag or sidecar entry, or pass the correct dates" in str(caught.value)


def test_real_eolearn_series_with_two_acquisitions_on_one_day(tmp_path: Path) -> None:
    """Input: eo-learn's real NDVI series (Slovenia, EPSG:32633) as GeoTIFFs named by their real timestamps; two of
    them were acquired on 2015-12-08 (10:04:09 and 10:11:25 UTC). Only the frames around that day are written.
    Expected: refused by default, naming both files and the date; kept as two frames with allow_duplicate_dates.
    check_series_dates on all 68 real dates, with today set inside the series, names the later ones and counts them."""
    folder = shared_path("eolearn_testeopatch", "example_data", "TestEOPatch")
    timestamps = json.loads((folder / "timestamps.json").read_text())
    ndvi = np.load(folder / "data" / "NDVI.npy")  # (68, 101, 100, 1) (the excerpt: (68, 16, 16, 1))
    height, width = ndvi.shape[1:3]
    bbox = json.loads((folder / "bbox.geojson").read_text())["coordinates"][0]
    west, north = min(x for x, _ in bbox), max(y for _, y in bbox)
    chosen = [i for i, t in enumerate(timestamps) if "2015-11-01" <= t[:10] <= "2015-12-31"]
    files = []
    for i in chosen:
        path = tmp_path / f"ndvi_{timestamps[i].replace('-', '').replace(':', '')}.tif"
        profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="float32", crs="EPSG:32633")
        with rasterio.open(path, "w", transform=from_origin(west, north, 10, 10), **profile) as dst:
            dst.write(ndvi[i, :, :, 0][None])
        files.append(path)
    same_day = [p for p in files if p.name.startswith("ndvi_20151208")]
    assert len(same_day) == 2
    with pytest.raises(InputError, match=rf"2015-12-08: {same_day[0]} and {same_day[1]}"):
        read_time_series(files, filename_regex=r"ndvi_(?P<date>\d{8})T")
    kept = read_time_series(files, filename_regex=r"ndvi_(?P<date>\d{8})T", allow_duplicate_dates=True)
    assert kept.dates.count(dt.date(2015, 12, 8)) == 2 and len(kept.dates) == len(files)

    dates = [dt.date.fromisoformat(t[:10]) for t in timestamps]
    names = [f"ndvi_{t[:10]}.tif" for t in timestamps]
    with pytest.raises(
        InputError,
        match=r"^NDVI series: ndvi_2017-07-05.tif \(2017-07-05\), .* and 18 more are dated after today \(2017-06-30",
    ):
        check_series_dates(dates, names, allow_duplicates=True, what="NDVI series", today=dt.date(2017, 6, 30))


def test_manifest_dataset_refuses_shared_dates_in_one_series_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input: an indexed folder: Spain S1 crops named 20190917 and 2019-09-17 (one place, one modality, one date),
    a Spain S2-named copy of the same date (another modality), and a Paraguay S1 crop of 20190917 (another place).
    Expected: `data index` notes the shared date on both Spain S1 files (and only them); ManifestDataset refuses the
    Spain sample when made, naming both files; other modalities and places of that date are not refused;
    allow_duplicate_dates=True loads the two frames."""
    root = tmp_path / "scenes"
    root.mkdir()
    write_s1_crop(root / "Spain_7370579_S1Hand_20190917.tif")
    write_s1_crop(root / "Spain_7370579_S1Hand_2019-09-17.tif")
    s2_source = shared_path("sen1floods11_samples", "cloudtostreet_official_sample", "S2", "Spain_7370579_S2Hand.tif")
    window = shipped_window(s2_source)
    with rasterio.open(s2_source) as src:
        profile = src.profile | {"width": 32, "height": 32, "transform": src.window_transform(window)}
        with rasterio.open(root / "Spain_7370579_S2Hand_20190917.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    paraguay = shared_path("sen1floods11_samples", "sample_data", "S1", "Paraguay_34417_S1Hand.tif")
    window = Window(0, 0, 32, 32)  # the chip is all NaN, any window
    with rasterio.open(paraguay) as src:
        profile = src.profile | {"width": 32, "height": 32, "transform": src.window_transform(window)}
        with rasterio.open(root / "Paraguay_34417_S1Hand_20190917.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    manifest = root / "manifest.csv"
    assert main(["data", "index", str(root), "-o", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "2 files with problems" in out
    assert "Spain_7370579_S1Hand_20190917.tif: date: 2019-09-17 shared with Spain_7370579_S1Hand_2019-09-17.tif" in out

    with pytest.raises(InputError) as caught:
        ManifestDataset(manifest)
    message = str(caught.value)
    assert message.startswith(f"the s1 series of sample 'spain_7370579' of {manifest}: files share a date (2019-09-17:")
    assert "Spain_7370579_S1Hand_20190917.tif" in message and "Spain_7370579_S1Hand_2019-09-17.tif" in message
    assert len(ManifestDataset(manifest, samples=["paraguay_34417"])) == 1  # same date, other place: fine
    sample = ManifestDataset(manifest, allow_duplicate_dates=True).load("spain_7370579")
    assert sample.s1.dates == [dt.date(2019, 9, 17)] * 2 and sample.s2.dates == [dt.date(2019, 9, 17)]


def test_index_notes_and_dataset_refuses_a_date_in_the_future(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input: a folder of two S1 crops of one place named 20190917 and 20990917 (a typo'd year).
    Expected: `data index` keeps both rows and notes the 2099 date on stdout (the manifest says what it read);
    ManifestDataset refuses the sample when made, naming the file and the date."""
    write_s1_crop(tmp_path / "Spain_7370579_S1Hand_20190917.tif")
    future = write_s1_crop(tmp_path / "Spain_7370579_S1Hand_20990917.tif")
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(tmp_path), "-o", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "1 files with problems" in out
    assert f"{future}: date: 2099-09-17 is after today (" in out
    with pytest.raises(InputError, match=rf"^the s1 series of sample 'spain_7370579' of {manifest}: {future} "):
        ManifestDataset(manifest)


def test_index_and_stats_never_write_over_what_they_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`data index -o` naming one of the folder's rasters (or a .txt), and `data stats -o` naming the manifest or a
    listed raster: refused before anything is written (exit 2, one line), every file as it was. Before, the raster
    became a CSV, the manifest a JSON. A manifest written where one was is replaced whole (written aside, renamed)."""
    import hashlib

    folder = tmp_path / "chips"
    folder.mkdir()
    raster = Path(
        shutil.copy(shared_path("sen1floods11_samples", "sample_data", "S1", "Spain_6860600_S1Hand.tif"), folder)
    )
    digest = hashlib.sha256(raster.read_bytes()).hexdigest()
    for output in (raster, tmp_path / "manifest.txt"):
        assert main(["data", "index", str(folder), "-o", str(output)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"-o {output}" in err[0]
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(folder), "-o", str(manifest)]) == 0
    text = manifest.read_text()
    assert main(["data", "index", str(folder), "-o", str(manifest)]) == 0 and manifest.read_text() == text
    capsys.readouterr()
    for output in (manifest, raster, tmp_path / "stats.csv"):
        assert main(["data", "stats", str(manifest), "--modality", "s1", "-o", str(output)]) == 2
        assert f"-o {output}" in capsys.readouterr().err
    assert manifest.read_text() == text and hashlib.sha256(raster.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chips", "manifest.csv"]
