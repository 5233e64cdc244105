"""Sentinel-1 as one file per polarisation (issue 14): the real Sen1Floods11 VV/VH chip written as `vv.tif`/`vh.tif`
in a dated folder (Planetary-Computer RTC layout) and as `s1a-iw-grd-vv-…tiff` pairs, read as the stacked chip;
a lone polarisation and a file in radar geometry (ground control points only) are refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint

from skysense.data.sensors import S1_GRD
from skysense.data.series import read_time_series
from skysense.errors import InputError
from skysense.inference.sources import SeriesSource
from tests.data.test_readers import spain


def _write_polarisations(folder: Path, names: tuple[str, str], describe: bool = False) -> list[Path]:
    with rasterio.open(spain("S1")) as src:
        values, profile = src.read(), src.profile
    profile.update(count=1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(names):
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(values[index : index + 1])
            if describe:
                dst.set_band_description(1, ("VV", "VH")[index])
        paths.append(folder / name)
    return paths


@pytest.mark.parametrize(
    "layout",
    ["rtc folder", "safe measurement names", "suffix names"],
)
def test_polarisation_files_read_as_the_stacked_chip(tmp_path: Path, layout: str) -> None:
    stacked = read_time_series([spain("S1")], sensor=S1_GRD, dates=["2019-09-18"])
    if layout == "rtc folder":
        _write_polarisations(tmp_path / "2019-09-18", ("vv.tif", "vh.tif"))
        given = tmp_path / "2019-09-18"
    elif layout == "safe measurement names":
        stem = "s1a-iw-grd-{}-20190918t060043-20190918t060108-029060-034c6b-001.tiff"
        _write_polarisations(tmp_path / "measurement", (stem.format("vv"), stem.format("vh")))
        given = tmp_path / "measurement"
    else:
        _write_polarisations(tmp_path / "s1", ("Spain_20190918_VH.tif", "Spain_20190918_VV.tif"), describe=False)
        given = tmp_path / "s1"
    source = SeriesSource.from_arg(given, "s1_grd")
    assert len(source.files) == 1 and list(source.files[0].polarisations) == ["VV", "VH"]
    series = read_time_series(source.files, sensor=S1_GRD, dates=source.dates)
    if layout == "suffix names":  # written VH first under the VH name: the names, not the order, decide
        assert np.array_equal(series.values.numpy()[:, ::-1], stacked.values.numpy(), equal_nan=True)
    else:
        assert np.array_equal(series.values.numpy(), stacked.values.numpy(), equal_nan=True)
    assert series.dates == stacked.dates


def test_a_folder_of_per_date_folders_is_a_series(tmp_path: Path) -> None:
    """``--s1 s1`` where ``s1/20190918/`` and ``s1/20190930/`` each hold ``vv.tif`` and ``vh.tif`` (as RTC downloads are
    often kept): two dates, each the stacked chip. Before: "no file with a raster suffix in s1"."""
    stacked = read_time_series([spain("S1")], sensor=S1_GRD, dates=["2019-09-18"])
    for day in ("20190918", "20190930"):
        _write_polarisations(tmp_path / "s1" / day, ("vv.tif", "vh.tif"))
    source = SeriesSource.from_arg(tmp_path / "s1", "s1_grd")
    assert source.dates == [dt.date(2019, 9, 18), dt.date(2019, 9, 30)]
    series = read_time_series(source.files, sensor=S1_GRD, dates=source.dates)
    for frame in range(2):
        assert np.array_equal(series.values.numpy()[frame], stacked.values.numpy()[0], equal_nan=True)


def test_a_lone_polarisation_and_radar_geometry_are_refused(tmp_path: Path) -> None:
    (vv,) = _write_polarisations(tmp_path / "lone", ("S1_20190918_vv.tif",))[:1]
    with pytest.raises(InputError, match=r"S1_20190918_vv\.tif: the only polarisation file \(VV\)"):
        SeriesSource.from_arg(tmp_path / "lone", "s1_grd")
    with rasterio.open(spain("S1")) as src:
        values, profile = src.read(), src.profile
    last = src.width - 1  # the corners: 511 (the excerpt: 127)
    gcps = [
        GroundControlPoint(row, col, -0.7 + col * 1e-4, 38.1 - row * 1e-4) for row in (0, last) for col in (0, last)
    ]
    profile.update(crs=None, transform=rasterio.Affine.identity())
    raw = tmp_path / "raw" / "s1a-iw-grd-vv-20190918t060043-001.tiff"
    raw.parent.mkdir()
    with rasterio.open(raw, "w", **profile) as dst:
        dst.write(values)
        dst.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    with pytest.raises(InputError, match=r"ground control points .* terrain-correct it first \(ESA SNAP"):
        SeriesSource.from_arg(raw, "s1_grd")


def test_an_asf_hyp3_rtc_product_folder_reads_its_polarisations_and_skips_its_ancillary_layers(
    tmp_path: Path,
) -> None:
    """An unzipped ASF HyP3 RTC product: ``…_5F0F_VV.tif`` and ``_VH.tif`` beside single-band ``_dem``, ``_area``,
    ``_inc_map``, ``_ls_map`` layers, a 3-band ``_rgb`` and non-raster files. Before: each layer was another date of
    the series (refused as files sharing a date). Now: one acquisition, the layers skipped in one warning line."""
    stem = "S1A_IW_20190918T060043_DVP_RTC30_G_gduned_5F0F"
    folder = tmp_path / stem
    vv, vh = _write_polarisations(folder, (f"{stem}_VV.tif", f"{stem}_VH.tif"))
    with rasterio.open(vv) as src:
        profile, plane = src.profile, src.read(1)
    for layer in ("dem", "area", "inc_map", "ls_map"):
        with rasterio.open(folder / f"{stem}_{layer}.tif", "w", **profile) as dst:
            dst.write(np.abs(plane)[None])
    with rasterio.open(folder / f"{stem}_rgb.tif", "w", **{**profile, "count": 3}) as dst:
        dst.write(np.stack([np.abs(plane)] * 3))
    (folder / f"{stem}.README.md.txt").write_text("HyP3 RTC product")
    (folder / f"{stem}_VV.png").write_bytes(b"\x89PNG")
    with pytest.warns(UserWarning, match=r"skipped 5 ancillary layers of RTC products .*_area\.tif"):
        source = SeriesSource.from_arg(folder, "s1_grd")
    assert source.dates == [dt.date(2019, 9, 18)] and list(source.files[0].polarisations) == ["VV", "VH"]
    got = read_time_series(source.files, sensor=S1_GRD, dates=source.dates)
    stacked = read_time_series([spain("S1")], sensor=S1_GRD, dates=["2019-09-18"])
    assert np.array_equal(got.values.numpy(), stacked.values.numpy(), equal_nan=True)


def test_a_zipped_hyp3_product_is_read_in_place_and_embeds_like_the_folder(tmp_path: Path) -> None:
    """The HyP3 zip as ASF delivers it: read through /vsizip/ (nothing extracted), one acquisition; `skysense embed
    --s1 product.zip` writes the same embedding as the unzipped folder, and its resume fingerprint is the zip."""
    import shutil

    from skysense.cli import main
    from skysense.models.registry import create_model
    from skysense.models.weights import save_pretrained

    stem = "S1A_IW_20190918T060043_DVP_RTC30_G_gduned_5F0F"
    folder = tmp_path / "unzipped" / stem
    _write_polarisations(folder, (f"{stem}_VV.tif", f"{stem}_VH.tif"))
    with rasterio.open(folder / f"{stem}_VV.tif") as src:
        profile, plane = src.profile, src.read(1)
    with rasterio.open(folder / f"{stem}_ls_map.tif", "w", **profile) as dst:
        dst.write(np.abs(plane)[None])
    archive = Path(shutil.make_archive(str(tmp_path / stem), "zip", folder.parent, stem))
    with pytest.warns(UserWarning, match="skipped 1 ancillary layer"):
        source = SeriesSource.from_arg(archive, "s1_grd")
    assert [str(p) for p in source.files[0].polarisations.values()][0].startswith("/vsizip/")
    assert source.paths == [archive] and source.dates == [dt.date(2019, 9, 18)]
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    outputs = []
    for given in (archive, folder):
        outputs.append(tmp_path / f"{given.suffix or 'folder'}.tif")
        args = ["embed", "--checkpoint", weights, "--s1", given, "--source", "s1", "--output", outputs[-1],
                "--no-progress"]  # fmt: skip
        assert main([str(a) for a in args]) == 0
    with rasterio.open(outputs[0]) as zipped, rasterio.open(outputs[1]) as unzipped:
        assert zipped.count == unzipped.count and np.array_equal(zipped.read(), unzipped.read(), equal_nan=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [archive.name, "unzipped", "tiny.safetensors", ".zip.tif", "folder.tif"]
    )


@pytest.mark.parametrize(
    ("scale", "sensor", "message"),
    [
        ("a", "s1_grd_linear", r"in amplitude scale, which skysense does not read"),
        (
            "p",
            "s1_grd",
            r"in power \(linear\) scale \(its name says so\) given as s1_grd; use --s1-sensor s1_grd_linear",
        ),
        ("d", "s1_grd_linear", r"in decibel scale \(its name says so\) given as s1_grd_linear; use --s1-sensor s1_grd"),
    ],
)
def test_a_hyp3_scale_the_sensor_does_not_read_is_refused_naming_the_option(
    tmp_path: Path, scale: str, sensor: str, message: str
) -> None:
    """HyP3 names say the scale (`gpuned`: gamma0, power). Amplitude read as power would be silently wrong (the
    square root of the values); power or dB given as the other sensor is refused with the option to use."""
    stem = f"S1A_IW_20190918T060043_DVP_RTC30_G_g{scale}uned_5F0F"
    _write_polarisations(tmp_path / stem, (f"{stem}_VV.tif", f"{stem}_VH.tif"))
    with pytest.raises(InputError, match=message):
        SeriesSource.from_arg(tmp_path / stem, sensor)


@pytest.mark.parametrize("scale", ["dB", "linear", "hyp3 power name"])
def test_s1_auto_tells_decibels_from_linear_power(tmp_path: Path, scale: str) -> None:
    """`--s1-sensor auto` (the default of predict/embed): the real VV/VH chip as `vv.tif`/`vh.tif` in dB (as
    Sen1Floods11 holds it), the same in linear power (10^(dB/10), as Planetary Computer's RTC Items hold it), and
    power under an ASF HyP3 name that says so. Expected: dB → s1_grd, power → s1_grd_linear, each said in one
    warning line with its reason, and the values the model gets equal to the dB chip's (to float precision)."""
    from skysense.data.sensors import get_sensor

    folder = tmp_path / "2019-09-18"
    stem = "S1A_IW_20190918T060043_DVP_RTC30_G_gpuned_5F0F" if scale == "hyp3 power name" else ""
    names = (f"{stem}_VV.tif", f"{stem}_VH.tif") if stem else ("vv.tif", "vh.tif")
    paths = _write_polarisations(folder, names)
    if scale != "dB":
        for path in paths:
            with rasterio.open(path, "r+") as dst:
                dst.write((10.0 ** (dst.read(1) / 10.0)).astype(np.float32), 1)
    reason = {"dB": r"\d+% of a sample of its values are ≥ 0: dB", "linear": r"100% of a sample .*: linear power",
              "hyp3 power name": r"its ASF HyP3 name says power \(linear\)"}[scale]  # fmt: skip
    with pytest.warns(UserWarning, match=rf"Sentinel-1 read as .*\({reason}\); give --s1-sensor"):
        source = SeriesSource.from_arg(folder, "s1_auto")
    assert source.sensor == ("s1_grd" if scale == "dB" else "s1_grd_linear")
    got = read_time_series(source.files, sensor=get_sensor(source.sensor), dates=source.dates)  # dB for the model
    stacked = read_time_series([spain("S1")], sensor=S1_GRD, dates=["2019-09-18"])
    np.testing.assert_allclose(got.values.numpy(), stacked.values.numpy(), rtol=0, atol=1e-4)
