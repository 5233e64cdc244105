"""Manifest of a folder of real rasters (crops of Sen1Floods11 S1/S2/labels with dates in their names, Landsat, an
AID photo, a corrupt file that indexing refuses by default and leaves out with strict=False): modality inference,
sample grouping, the `skysense data` CLI in-process, streamed statistics, and the dataset whose samples go through
Normalize + FillInvalid into the collate."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine
from rasterio.windows import Window

from skysense.cli import main
from skysense.data.collate import collate
from skysense.data.manifest import ManifestDataset, index_directory, name_key, read_manifest, write_manifest
from skysense.data.raster import read_raster
from skysense.data.sensors import HR_RGB, S1_GRD, S2_L2A
from skysense.data.stats import compute_stats
from skysense.data.transforms import Compose, FillInvalid, Normalize
from skysense.errors import InputError
from tests.conftest import shared_path
from tests.data.test_readers import shipped_window, spain, write_crop

RATIO = 4  # HR pixels per Sentinel pixel in this folder (the paper's is 32; small here to keep tests fast)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rasters")
    (root / "sentinel").mkdir()
    s2, s1 = root / "sentinel" / "Spain_7370579_S2Hand_{}.tif", root / "sentinel" / "Spain_7370579_S1Hand_{}.tif"
    WINDOW = shipped_window(spain("S2"))  # the shipped 64×64 sample's top-left quarter
    write_crop(spain("S2"), Path(str(s2).format("20190918")), WINDOW)
    cloudy = read_raster(spain("S2"), window=WINDOW).values.astype(np.int16)
    cloudy[:, :8] = 0  # nodata: the first 8 rows masked on the second date
    write_crop(spain("S2"), Path(str(s2).format("20191003")), WINDOW, data=cloudy)
    write_crop(spain("S1"), Path(str(s1).format("2019-09-17")), WINDOW)
    holed = read_raster(spain("S1"), window=WINDOW).values
    holed[:, 10:20, 10:20] = np.nan
    write_crop(spain("S1"), Path(str(s1).format("2019-09-29")), WINDOW, data=holed)
    write_crop(spain("Label"), root / "Spain_7370579_LabelHand.tif", WINDOW)
    # an "HR" image of the same place: S2 true colour on a 4× finer grid (real values, upsampled)
    rgb = read_raster(spain("S2"), bands=["B4", "B3", "B2"], window=WINDOW)
    hr = np.clip(rgb.values / 3000 * 255, 0, 255).astype(np.uint8).repeat(RATIO, axis=1).repeat(RATIO, axis=2)
    profile = dict(
        driver="GTiff", count=3, dtype="uint8", crs=rgb.crs, transform=rgb.transform @ Affine.scale(1 / RATIO)
    )
    with rasterio.open(root / "Spain_7370579_HR.tif", "w", width=128, height=128, **profile) as dst:
        dst.write(hr)
    paraguay = shared_path("sen1floods11_samples", "sample_data", "S1", "Paraguay_34417_S1Hand.tif")
    write_crop(paraguay, root / "sentinel" / "Paraguay_34417_S1Hand_20190917.tif", Window(0, 0, 32, 32))
    (root / "landsat").mkdir()
    shutil.copy(shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif"), root / "landsat" / "RGB.byte.tif")
    (root / "photos").mkdir()
    shutil.copy(shared_path("aid_150px_subset", "AID", "Airport", "airport_1.jpg"), root / "photos" / "airport_1.jpg")
    (root / "broken.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    return root


def _by_name(entries):
    return {e.path.name: e for e in entries}


def _index_readable(folder: Path) -> list:
    """The folder's manifest entries without the corrupt broken.tif (left out, not refused)."""
    skipped: dict[Path, str] = {}
    entries = index_directory(folder, strict=False, skipped=skipped)
    assert [p.name for p in skipped] == ["broken.tif"]
    return entries


def test_index_infers_modalities_dates_and_samples(folder: Path) -> None:
    with pytest.raises(InputError, match=r"1 of 10 rasters cannot be read: broken.tif \(cannot open"):
        index_directory(folder)  # strict by default
    entries = _by_name(_index_readable(folder))
    modality = {name: e.modality for name, e in entries.items()}
    assert modality == {
        "Spain_7370579_S2Hand_20190918.tif": "s2",
        "Spain_7370579_S2Hand_20191003.tif": "s2",
        "Spain_7370579_S1Hand_2019-09-17.tif": "s1",
        "Spain_7370579_S1Hand_2019-09-29.tif": "s1",
        "Paraguay_34417_S1Hand_20190917.tif": "s1",
        "Spain_7370579_LabelHand.tif": "label",
        "Spain_7370579_HR.tif": "hr",
        "RGB.byte.tif": "hr",
        "airport_1.jpg": "hr",
    }
    assert {n for n, e in entries.items() if e.sample == "spain_7370579"} == {
        n for n in modality if n.startswith("Spain")
    }
    assert entries["Paraguay_34417_S1Hand_20190917.tif"].sample == "paraguay_34417"
    assert entries["RGB.byte.tif"].sample == "byte" and entries["airport_1.jpg"].sample == "airport_1"
    assert entries["Spain_7370579_S1Hand_2019-09-29.tif"].date == dt.date(2019, 9, 29)
    assert entries["Spain_7370579_LabelHand.tif"].date is None
    s2 = entries["Spain_7370579_S2Hand_20190918.tif"]
    assert (s2.count, s2.dtype, s2.crs, s2.nodata, s2.band_names[8]) == (13, "int16", "EPSG:4326", 0.0, "B8A")
    landsat = entries["RGB.byte.tif"]
    with rasterio.open(folder / "landsat" / "RGB.byte.tif") as src:  # 791 × 718 (the excerpt: 407 × 398)
        size = src.width, src.height
    assert (landsat.width, landsat.height, landsat.crs, landsat.res_x) == (
        *size,
        "EPSG:32618",
        pytest.approx(300.04, abs=0.01),
    )
    assert entries["airport_1.jpg"].driver == "JPEG" and entries["airport_1.jpg"].crs == ""
    assert not any(e.notes for e in entries.values())


def test_name_keys() -> None:
    assert name_key("Spain_7370579_S1Hand.tif") == name_key("Spain_7370579_LabelHand.tif") == "spain_7370579"
    assert name_key("sen1floods11_Spain_7370579_S2Hand_64.tif") == "sen1floods11_spain_7370579_64"
    assert name_key("field_12_s2_2019-09-17.tif") == name_key("field_12_hr.tif") == "field_12"
    assert name_key("S2A_MSIL2A_20190917T105031_N0213_R051_T30SYH_20190918T140000.tif") == "t30syh"
    assert name_key("S1A_IW_GRDH_1SDV_20190917T175953_20190917T180018_029069_034C8C_D4C7.tif") == ""


def test_data_index_and_stats_cli(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = folder / "manifest.csv"
    assert main(["data", "index", str(folder), "-o", str(manifest), "--no-strict"]) == 0
    printed = capsys.readouterr().out
    assert "indexed 9 files" in printed and "left out of the manifest: 1 files" in printed and "broken.tif" in printed
    assert "broken.tif" not in manifest.read_text()
    rows = read_manifest(manifest)
    direct = _index_readable(folder)
    assert [(e.path.resolve(), e.modality, e.sample, e.date) for e in rows] == [
        (e.path.resolve(), e.modality, e.sample, e.date) for e in direct
    ]
    assert "sentinel/Spain_7370579_S2Hand_20190918.tif" in manifest.read_text()  # relative paths inside the folder
    as_json = write_manifest(direct, tmp_path / "manifest.json")
    assert [(e.path, e.nodata, e.band_names) for e in read_manifest(as_json)][:3] == [
        (e.path, e.nodata, e.band_names) for e in direct
    ][:3]

    stats_path = tmp_path / "s2_stats.json"
    assert main(["data", "stats", str(manifest), "--modality", "s2", "-o", str(stats_path)]) == 0
    table = capsys.readouterr().out
    assert "modality s2: 2 files" in table and "B8A" in table
    stats = json.loads(stats_path.read_text())
    frames = [read_raster(folder / "sentinel" / f"Spain_7370579_S2Hand_{d}.tif") for d in ("20190918", "20191003")]
    for band, result in enumerate(stats["bands"]):
        values = np.concatenate([f.values[band][f.valid[band]] for f in frames]).astype(np.float64)
        assert result["count"] == values.size == 32 * 32 + 24 * 32
        assert result["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert result["std"] == pytest.approx(values.std(), rel=1e-9)
        assert (result["min"], result["max"]) == (values.min(), values.max())
        assert result["valid_fraction"] == pytest.approx(values.size / (2 * 32 * 32))


def test_stats_stream_and_refuse_mixed_band_counts(folder: Path) -> None:
    entries = _index_readable(folder)
    small = compute_stats(entries, "hr", tile=16)  # Landsat + HR crop + AID photo, window by window
    large = compute_stats(entries, "hr", tile=4096)
    for a, b in zip(small["bands"], large["bands"], strict=True):
        assert a["count"] == b["count"] and a["mean"] == pytest.approx(b["mean"], rel=1e-12)
        assert a["std"] == pytest.approx(b["std"], rel=1e-9)
    s1 = compute_stats(entries, "s1")
    assert s1["bands"][0]["valid_fraction"] == pytest.approx((2 * 1024 - 100) / (3 * 1024))  # Paraguay is all NaN
    with pytest.raises(ValueError, match=r"band counts differ .*Paraguay.*has 2 bands, .*S2Hand_20190918.tif has 13"):
        compute_stats([e for e in entries if e.modality in ("s2", "s1")])
    with pytest.raises(ValueError, match=r"no file of modality 'label'"):
        compute_stats([e for e in entries if e.modality != "label"], "label")


def test_manifest_dataset_builds_collatable_samples(folder: Path) -> None:
    manifest = write_manifest(_index_readable(folder), folder / "dataset.csv")
    raw = ManifestDataset(manifest, ratio=RATIO, label_nodata=-1)
    assert set(raw.sample_ids) == {"spain_7370579", "paraguay_34417", "byte", "airport_1"}
    sample = raw.load("spain_7370579")
    assert tuple(sample.hr.shape) == (3, 128, 128) and sample.hr_valid.all()
    assert tuple(sample.s2.values.shape) == (2, 10, 32, 32) and tuple(sample.s1.values.shape) == (2, 2, 32, 32)
    assert sample.s2.dates == [dt.date(2019, 9, 18), dt.date(2019, 10, 3)]
    assert sample.s1.dates == [dt.date(2019, 9, 17), dt.date(2019, 9, 29)]
    assert not sample.s2.valid[1, :8].any() and sample.s2.valid[1, 8:].all() and sample.s2.valid[0].all()
    assert not sample.s1.valid[1, 10:20, 10:20].any() and int(sample.s1.valid[1].sum()) == 1024 - 100
    l1c = read_raster(spain("S2"), window=shipped_window(spain("S2"))).values
    np.testing.assert_array_equal(sample.s2.values[0].numpy(), l1c[[1, 2, 3, 4, 5, 6, 7, 8, 11, 12]])
    label = read_raster(spain("Label"), window=shipped_window(spain("Label"))).values[0]
    expected = np.where(label == -1, -1, label).repeat(RATIO, 0).repeat(RATIO, 1)
    np.testing.assert_array_equal(sample.target.numpy(), expected)  # labels on the HR grid, nearest
    assert sample.lat == pytest.approx(38.108, abs=0.01) and sample.lon == pytest.approx(-0.767, abs=0.01)
    assert sample.meta["id"] == "spain_7370579" and len(sample.meta["files"]["s2"]) == 2

    prepare = Compose([Normalize(hr=HR_RGB, s2=S2_L2A, s1=S1_GRD), FillInvalid()])
    dataset = ManifestDataset(manifest, ratio=RATIO, label_nodata=-1, transforms=prepare, samples=["spain_7370579"])
    batch = collate([dataset[0]])
    assert tuple(batch.inputs.s2.shape) == (1, 2, 10, 32, 32) and tuple(batch.inputs.hr.shape) == (1, 3, 128, 128)
    assert torch.isfinite(batch.inputs.s2).all() and torch.isfinite(batch.inputs.s1).all()
    assert batch.inputs.s2_valid.tolist() == [[True, True]] and tuple(batch.target.shape) == (1, 128, 128)
    assert batch.inputs.lat is not None

    # the all-NaN Paraguay crop: nothing to learn or predict from, refused by name (it was a sample whose only frame
    # is masked, which trained a model on a target it had no input for)
    with pytest.raises(InputError, match=r"'paraguay_34417'.*no valid pixel in any input .*Paraguay_34417_S1Hand"):
        ManifestDataset(manifest, transforms=prepare, samples=["paraguay_34417"])[0]


def test_manifest_dataset_hr_sizes(folder: Path) -> None:
    manifest = write_manifest(_index_readable(folder), folder / "dataset.csv")
    landsat = read_raster(folder / "landsat" / "RGB.byte.tif")
    height, width = landsat.values.shape[1:]  # 718 × 791 (the excerpt: 398 × 407)
    with pytest.raises(ValueError, match=rf"RGB.byte.tif: HR size {height}×{width} is not a multiple"):
        ManifestDataset(manifest, samples=["byte"])[0]
    cropped = ManifestDataset(manifest, crop=True, samples=["byte", "airport_1"])
    assert tuple(cropped[0].hr.shape) == (3, height // 32 * 32, width // 32 * 32)
    assert cropped[0].lat == pytest.approx(landsat.center_lat_lon()[0], abs=0.5)  # ≈ 24.6 N (the excerpt: 25.0)
    photo = cropped[1]  # a JPEG without georeferencing: no coordinates, size cropped to the ratio
    assert tuple(photo.hr.shape) == (3, 128, 128) and photo.lat is None


def test_manifest_dataset_reads_hr_bands_by_their_colour_tags(tmp_path: Path) -> None:
    """The real Landsat RGB crop written blue, green, red and tagged so by colour interpretation only (no band
    descriptions): the dataset's sample equals the RGB file's, as scene inference reads it. Before, ManifestDataset
    read it by position (red and blue swapped) and warned that the bands had no names; an RGB JPEG (AID) warned
    the same although its colour interpretation says RGB."""
    import warnings

    from rasterio.enums import ColorInterp

    with rasterio.open(shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif")) as src:
        window = Window(100, 100, 128, 128)
        values, profile = src.read(window=window), src.profile
        profile.update(width=128, height=128, transform=src.window_transform(window))
    hr = {}
    for order, colours in (("rgb", "red green blue"), ("bgr", "blue green red")):
        folder = tmp_path / order
        folder.mkdir()
        with rasterio.open(folder / "scene.tif", "w", **profile) as dst:
            dst.write(values if order == "rgb" else values[::-1])
            dst.colorinterp = [ColorInterp[colour] for colour in colours.split()]
        if order == "bgr":
            shutil.copy(shared_path("aid_150px_subset", "AID", "Airport", "airport_1.jpg"), folder / "airport_1.jpg")
        manifest = write_manifest(index_directory(folder), tmp_path / f"{order}.csv")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "read by position" warning: every file is tagged
            dataset = ManifestDataset(manifest, crop=True)
            hr.update({f"{order}/{s}": dataset[i].hr for i, s in enumerate(dataset.sample_ids)})
    assert torch.equal(hr["bgr/scene"].nan_to_num(-1), hr["rgb/scene"].nan_to_num(-1))
    assert hr["bgr/airport_1"].shape == (3, 128, 128)


def test_a_stack_of_several_dates_and_sensors_is_indexed_as_unknown_with_a_note(tmp_path: Path) -> None:
    """Presto's real CropHarvest export: one GeoTIFF of 12 months of VV/VH, Sentinel-2 bands, ERA5 and SRTM (206
    bands named VV, VH, B2, …, VV_1, …). Before, it was indexed as s1 (rule: VV/VH names), and reading it failed with
    a line of kilobytes listing every band. Now it is unknown, its notes say why and what to do."""
    source = shared_path("presto_s1s2_timeseries", "cropharvest_test_tif")
    stack = next(iter(sorted(source.glob("*.tif"))))
    (entry,) = index_directory(source, pattern=stack.name)
    assert entry.modality == "unknown"
    assert "several dates in one file: not read as a series; export one file per date and sensor" in entry.notes


def test_manifest_dataset_refuses_undated_sentinel_files_when_built(tmp_path: Path) -> None:
    """Real Sen1Floods11 S1 chips whose names hold no date, indexed without --filename-regex or --sidecar: the
    dataset is refused when built, naming the files and what to do. Before, it was built and the first sample
    failed."""
    folder = tmp_path / "undated"
    folder.mkdir()
    for name in ("Spain_6860600_S1Hand.tif", "Ghana_53713_S1Hand.tif"):
        shutil.copy(shared_path("sen1floods11_samples", "sample_data", "S1", name), folder / name)
    manifest = write_manifest(index_directory(folder), tmp_path / "m.csv")
    with pytest.raises(InputError, match=r"2 Sentinel files have no date .*--filename-regex or --sidecar"):
        ManifestDataset(manifest)
