"""STAC Items as Sentinel inputs (issue 14): Items built with pystac over real pixels — the SAFE fixture's per-band
JPEG 2000 files (L2A, with SCL) and the Sen1Floods11 VV/VH chip as per-polarisation files — with relative and
file:// hrefs, read like the product itself; an ItemCollection is a series."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest

from skysense.data.products import find_s2_products
from skysense.data.sensors import S1_GRD, S2_COMMON_NAMES, S2_L2A
from skysense.data.series import read_time_series
from skysense.errors import InputError
from skysense.inference.sources import SeriesSource
from tests.data.s2_safe import side, write_safe
from tests.data.test_readers import spain
from tests.data.test_s1_polarisations import _write_polarisations

COMMON = {code: name for name, code in S2_COMMON_NAMES.items() if name not in ("swir1", "swir2")}


def _s2_item(safe: Path, when: str, href_style: str) -> pystac.Item:
    (product,) = find_s2_products(safe)
    item = pystac.Item(f"S2_{when}", None, None, dt.datetime.fromisoformat(f"{when}T10:56:19+00:00"),
                       {"s2:product_type": "S2MSI2A", "s2:processing_baseline": "04.00"})  # fmt: skip
    for code, path in product.bands.items():
        href = Path(path).as_uri() if href_style == "file://" else path
        item.add_asset(code if code == "B8A" else f"B{int(code[1:]):02d}", pystac.Asset(
            href, media_type="image/jp2", roles=["data"],
            extra_fields={"eo:bands": [{"name": code, "common_name": COMMON.get(code)}]},
        ))  # fmt: skip
    item.add_asset("SCL", pystac.Asset(product.mask, media_type="image/jp2", roles=["data"]))
    item.add_asset("thumbnail", pystac.Asset("preview.png", media_type="image/png", roles=["thumbnail"]))
    return item


@pytest.mark.parametrize("href_style", ["relative", "file://"])
def test_s2_item_reads_like_the_product(tmp_path: Path, href_style: str) -> None:
    safe = write_safe(tmp_path, level="L2A")
    item = _s2_item(safe, "2022-09-17", href_style)
    item_path = safe / "item.json"
    item.set_self_href(str(item_path))
    if href_style == "relative":
        item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False)
    assert href_style != "relative" or not json.loads(item_path.read_text())["assets"]["B02"]["href"].startswith("/")
    source = SeriesSource.from_arg(item_path, "auto")
    assert source.sensor == "s2_l2a" and source.dates == [dt.date(2022, 9, 17)]
    (product,) = find_s2_products(safe)
    grid = product.grid()
    from_item = source.files[0].read(grid, S2_L2A.bands)
    from_product = product.read(grid, S2_L2A.bands)
    assert np.array_equal(from_item.values, from_product.values, equal_nan=True)
    assert np.array_equal(from_item.valid, from_product.valid)


def test_item_collection_is_a_series_and_s1_items_stack_vv_vh(tmp_path: Path) -> None:
    safe = write_safe(tmp_path, level="L2A", cloud=False)
    collection = pystac.ItemCollection([_s2_item(safe, day, "file://") for day in ("2022-09-17", "2022-10-07")])
    path = tmp_path / "items.json"
    path.write_text(json.dumps(collection.to_dict()))
    source = SeriesSource.from_arg(path, "auto")
    series = read_time_series(source.files, sensor=S2_L2A, dates=source.dates)
    assert series.values.shape == (2, 10, side(), side()) and series.dates == [
        dt.date(2022, 9, 17),
        dt.date(2022, 10, 7),
    ]

    vv, vh = _write_polarisations(tmp_path / "rtc", ("vv.tif", "vh.tif"))
    item = pystac.Item("S1_RTC", None, None, dt.datetime(2019, 9, 18, 6, 0, tzinfo=dt.timezone.utc),
                       {"sar:polarizations": ["VV", "VH"]})  # fmt: skip
    for key, file in (("vh", vh), ("vv", vv)):
        item.add_asset(key, pystac.Asset(file.as_uri(), media_type="image/tiff; application=geotiff", roles=["data"]))
    (tmp_path / "s1_item.json").write_text(json.dumps(item.to_dict()))
    s1 = SeriesSource.from_arg(tmp_path / "s1_item.json", "s1_grd")
    got = read_time_series(s1.files, sensor=S1_GRD, dates=s1.dates)
    stacked = read_time_series([spain("S1")], sensor=S1_GRD, dates=["2019-09-18"])
    assert np.array_equal(got.values.numpy(), stacked.values.numpy(), equal_nan=True)


def test_json_that_is_not_stac_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"type": "Config", "lr": 1e-3}))
    with pytest.raises(InputError, match=r"config\.json: not a STAC Item or ItemCollection"):
        SeriesSource.from_arg(tmp_path / "config.json", "auto")


def test_remote_hrefs_keep_their_url_through_the_path_layer() -> None:
    """An http(s) asset becomes GDAL's `/vsicurl?url=` form, which survives pathlib (which folded `/vsicurl/https://…`
    into `https:/…`, a path GDAL refused with 'Missing url parameter' before any request)."""
    from urllib.parse import parse_qs

    from skysense.data.products.stac import _gdal_path

    href = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/30/S/YH/2022/9/B04.tif?x=1&y=2"
    path = _gdal_path(href)
    assert str(Path(path)) == path and path.startswith("/vsicurl?url=")
    assert parse_qs(path.split("?", 1)[1])["url"] == [href]
    assert _gdal_path("s3://bucket/key/B04.tif") == "/vsis3/bucket/key/B04.tif"
