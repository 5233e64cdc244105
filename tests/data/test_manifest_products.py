"""Products as downloaded, indexed (issue 14): Sentinel-1 acquisitions as one file per polarisation and STAC Items
become one manifest row each, `ManifestDataset` reads them as the stacked files they stand for, and `skysense data
stats` computes over them. Real pixels: the Sen1Floods11 Spain S1 chip and S2 chip (written as a SAFE, and as STAC
Items whose assets are plainly named copies of its band files)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest

from skysense.cli import main
from skysense.data.manifest import ManifestDataset, index_directory, read_manifest
from skysense.data.manifest.schema import PRODUCT_DRIVER, S1_PAIR_DRIVER, STAC_DRIVER
from skysense.data.products.sentinel2 import find_s2_products
from skysense.data.sensors import S1_GRD, S2_L2A
from skysense.data.series import read_time_series
from skysense.data.stats import compute_stats
from tests.data.s2_safe import side, write_safe
from tests.data.test_readers import spain
from tests.data.test_s1_polarisations import _write_polarisations


def _s1_downloads(root: Path) -> None:
    """Two acquisitions: a Planetary-Computer-style RTC folder (vv.tif, vh.tif) and terrain-corrected SAFE
    measurement names."""
    _write_polarisations(root / "S1A_rtc" / "2019-09-18", ("vv.tif", "vh.tif"))
    stem = "s1a-iw-grd-{}-20190930t060043-20190930t060108-029235-035201-001.tiff"
    _write_polarisations(root / "measurement", (stem.format("vh"), stem.format("vv")), describe=True)


def test_s1_polarisation_files_index_as_one_row_per_acquisition(tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    _s1_downloads(root)
    entries = index_directory(root)
    assert [e.driver for e in entries] == [S1_PAIR_DRIVER] * 2, [(e.path, e.driver, e.modality) for e in entries]
    assert [e.modality for e in entries] == ["s1", "s1"] and len({e.sample for e in entries}) == 1
    assert {e.date for e in entries} == {dt.date(2019, 9, 18), dt.date(2019, 9, 30)}
    assert all(e.band_names == ("VV", "VH") and e.count == 2 for e in entries)

    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(root), "-o", str(manifest)]) == 0
    sample = ManifestDataset(manifest, s1_sensor=S1_GRD)[0]
    stacked = read_time_series([spain("S1")], sensor=S1_GRD, dates=["2019-09-18"])
    assert sample.s1.values.shape == (2, 2, *stacked.values.shape[-2:])
    for frame in range(2):  # each acquisition reads as the stacked VV, VH chip (names decide, not file order)
        assert np.array_equal(sample.s1.values[frame].numpy(), stacked.values[0].numpy(), equal_nan=True)

    stats = compute_stats(read_manifest(manifest), "s1")
    direct = compute_stats(index_directory(spain("S1").parent, "*S1Hand.tif"), None)
    assert [b["band"] for b in stats["bands"]] == ["VV", "VH"]
    for got, want in zip(stats["bands"], direct["bands"], strict=True):
        assert got["count"] == 2 * want["count"]  # the same chip twice
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-9) and got["std"] == pytest.approx(
            want["std"], rel=1e-6
        )


def test_a_lone_polarisation_keeps_its_row_with_a_note(tmp_path: Path) -> None:
    vv, _ = _write_polarisations(tmp_path / "S1A" / "2019-09-18", ("vv.tif", "vh.tif"))
    (tmp_path / "S1A" / "2019-09-18" / "vh.tif").unlink()
    (entry,) = index_directory(tmp_path)
    assert entry.path == vv and entry.modality == "s1" and "only polarisation file" in entry.notes


def _stac_downloads(tmp_path: Path, root: Path) -> Path:
    """An ItemCollection of two dates whose assets are the SAFE's band files copied under plain names (as a STAC
    download tool saves them: `<item>/B04.jp2`)."""
    safe = write_safe(tmp_path / "safe", level="L2A", cloud=True)
    (product,) = find_s2_products(safe)
    items = []
    for day in ("2022-10-07", "2022-10-27"):
        folder = root / f"S2B_{day}"
        folder.mkdir(parents=True)
        item = pystac.Item(f"S2B_30SYH_{day}", None, None, dt.datetime.fromisoformat(f"{day}T10:56:19+00:00"),
                           {"s2:processing_baseline": "04.00", "s2:product_type": "S2MSI2A"})  # fmt: skip
        for code, path in product.bands.items():
            name = code if code == "B8A" else f"B{int(code[1:]):02d}"
            shutil.copy(path, folder / f"{name}.jp2")
            item.add_asset(name, pystac.Asset(f"{folder.name}/{name}.jp2", media_type="image/jp2", roles=["data"],
                                              extra_fields={"eo:bands": [{"name": code}]}))  # fmt: skip
        shutil.copy(product.mask, folder / "SCL.jp2")
        item.add_asset("SCL", pystac.Asset(f"{folder.name}/SCL.jp2", media_type="image/jp2", roles=["data"]))
        items.append(item)
    (root / "items.json").write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    return safe


def test_stac_items_index_as_one_row_each_and_read_as_the_product(tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    safe = _stac_downloads(tmp_path, root)
    (root / "notes.json").write_text('{"comment": "not STAC, not a raster"}')
    entries = index_directory(root)
    assert [e.driver for e in entries] == [STAC_DRIVER] * 2, [(e.path, e.driver) for e in entries]
    assert [e.item for e in entries] == ["S2B_30SYH_2022-10-07", "S2B_30SYH_2022-10-27"]
    assert {e.modality for e in entries} == {"s2"} and len({e.sample for e in entries}) == 1
    assert entries[0].width == side() and entries[0].res_x == pytest.approx(find_s2_products(safe)[0].grid().res[0])

    manifest = tmp_path / "manifest.json"
    assert main(["data", "index", str(root), "-o", str(manifest)]) == 0
    sample = ManifestDataset(manifest)[0]
    product = read_time_series(find_s2_products(safe), sensor=S2_L2A)
    assert sample.s2.values.shape == (2, 10, side(), side())
    assert sample.s2.dates == [dt.date(2022, 10, 7), dt.date(2022, 10, 27)]
    for frame in range(2):
        assert np.allclose(sample.s2.values[frame].numpy(), product.values[0].numpy(), equal_nan=True)
        assert np.array_equal(sample.s2.valid[frame].numpy(), product.valid[0].numpy())  # the SCL cloud masked

    stats = compute_stats(read_manifest(manifest), "s2")
    on_product = compute_stats(index_directory(safe.parent), "s2")  # the SAFE itself: one product row
    assert index_directory(safe.parent)[0].driver == PRODUCT_DRIVER
    for got, want in zip(stats["bands"], on_product["bands"], strict=True):
        assert got["band"] == want["band"] and got["count"] == 2 * want["count"] > 0
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-6)
    b4 = [b for b in on_product["bands"] if b["band"] == "B4"][0]
    assert b4["valid_fraction"] < 1.0  # the cloud is invalid, not counted


def test_data_info_describes_stac_items_and_s1_acquisitions(capsys, tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    _stac_downloads(tmp_path, root)
    assert main(["data", "info", str(root / "items.json")]) == 0
    out = capsys.readouterr().out
    assert "STAC Item S2B_30SYH_2022-10-07, Sentinel-2 L2A, date 2022-10-07" in out and "SCL.jp2" in out
    _s1_downloads(tmp_path / "s1")
    assert main(["data", "info", str(tmp_path / "s1" / "measurement")]) == 0
    out = capsys.readouterr().out
    assert "Sentinel-1 acquisition of 2019-09-30" in out and "VV: " in out and "VH: " in out
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a product")
    assert main(["data", "info", str(tmp_path / "notes")]) == 1
    err = capsys.readouterr().err
    assert "notes: a folder that is no product" in err and len(err.strip().splitlines()) == 1
