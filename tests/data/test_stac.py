"""STAC Items as Sentinel inputs (issue 14): Items built with pystac over real pixels — the SAFE fixture's per-band
JPEG 2000 files (L2A, with SCL) and the Sen1Floods11 VV/VH chip as per-polarisation files — with relative and
file:// hrefs, read like the product itself; an ItemCollection is a series."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest

from skysense.data.products import find_s2_products
from skysense.data.products.stac import read_stac
from skysense.data.sensors import S1_GRD, S2_COMMON_NAMES, S2_L2A
from skysense.data.series import read_time_series
from skysense.errors import InputError
from skysense.inference.sources import SeriesSource
from tests.data.s2_safe import RESOLUTION, side, write_safe
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
    """Also under a folder whose name has a space and a non-ASCII letter, which file:// hrefs percent-encode (read
    as the encoded path before: "no raster at …/with%20space%20%C3%A9/…")."""
    safe = write_safe(tmp_path / "with space é", level="L2A")
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


# ------------------------------------------------------------------------------------------------------------------
# Items shaped as the three public catalogues publish them, over real pixels
# ------------------------------------------------------------------------------------------------------------------
def _write_like(source: str, path: Path, add: int = 0, factor: float = 1, nearest: bool = False) -> Path:
    """``source``'s pixels as a tiled GeoTIFF at ``path``: DN + ``add`` (a catalogue's COG), or resampled ``factor``
    times coarser (block mean, or nearest for a class mask; ``factor`` < 1: finer, by repetition) as a catalogue's
    resampled copy."""
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(source) as src:
        values, profile = src.read().astype(np.int64), src.profile
    if factor < 1:
        up = round(1 / factor)
        values = values.repeat(up, axis=1).repeat(up, axis=2)
        profile.update(width=values.shape[2], height=values.shape[1],
                       transform=profile["transform"] @ Affine.scale(factor))  # fmt: skip
    elif factor > 1:
        factor = int(factor)
        c, h, w = values.shape
        blocks = values.reshape(c, h // factor, factor, w // factor, factor)
        values = blocks[:, :, 0, :, 0] if nearest else np.rint(blocks.mean(axis=(2, 4))).astype(np.int64)
        profile.update(width=w // factor, height=h // factor, transform=profile["transform"] @ Affine.scale(factor))
    profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.clip(values + add, 0, None).astype(profile["dtype"]))
    return path


def _saved(item: pystac.Item, path: Path) -> Path:
    path.write_text(json.dumps(item.to_dict(include_self_link=False)))
    return path


@pytest.mark.parametrize("offset_applied", [True, False])
def test_an_earth_search_item_reads_its_cogs_with_the_offset_it_carries(tmp_path: Path, offset_applied: bool) -> None:
    """Earth Search v1 (sentinel-2-l2a): assets keyed by common name (``blue``, ``nir08``), each band twice (the COG
    and the original as ``blue-jp2``), ``raster:bands`` offset −0.1 on every Item, and ``earthsearch:boa_offset_
    applied`` saying whether the COGs' DN already carry the −1000. Read from the COGs (not the JPEG 2000 copies), the
    Item gives the product's reflectance either way; following raster:bands alone would subtract the offset twice."""
    safe = write_safe(tmp_path, level="L2A")
    (product,) = find_s2_products(safe)
    cogs = tmp_path / "cogs"
    cogs.mkdir()
    item = pystac.Item("S2B_30SYH_20220917_0_L2A", None, None, dt.datetime(2022, 9, 17, 10, 56, 19, tzinfo=dt.UTC),
                       {"s2:processing_baseline": "04.00", "s2:product_type": "S2MSI2A",
                        "earthsearch:boa_offset_applied": offset_applied}, collection="sentinel-2-l2a")  # fmt: skip
    cog_type, raster = "image/tiff; application=geotiff; profile=cloud-optimized", {"scale": 0.0001, "offset": -0.1}
    item.add_asset("aot", pystac.Asset(str(_write_like(product.bands["B1"], cogs / "AOT.tif")), media_type=cog_type,
                                       roles=["data"], extra_fields={"raster:bands": [{"scale": 0.001}]}))  # fmt: skip
    for suffix, media in (("", cog_type), ("-jp2", "image/jp2")):
        for code, path in product.bands.items():
            name = COMMON[code]
            href = str(_write_like(path, cogs / f"{code}.tif", add=-1000 * offset_applied)) if not suffix else path
            item.add_asset(f"{name}{suffix}", pystac.Asset(href, media_type=media, roles=["data", "reflectance"],
                extra_fields={"eo:bands": [{"name": name, "common_name": name}], "raster:bands": [raster]}))  # fmt: skip
        scl = str(_write_like(product.mask, cogs / "SCL.tif")) if not suffix else product.mask
        item.add_asset(f"scl{suffix}", pystac.Asset(scl, media_type=media, roles=["data"]))
    visual = [{"name": n, "common_name": n} for n in ("red", "green", "blue")]
    item.add_asset("visual", pystac.Asset(product.bands["B4"], media_type="image/jp2", roles=["visual"],
                                          extra_fields={"eo:bands": visual}))  # fmt: skip
    item.add_asset("granule_metadata", pystac.Asset("metadata.xml", media_type="application/xml", roles=["metadata"]))
    (stac_item,) = read_stac(_saved(item, tmp_path / "item.json"))
    assert all(asset.path.endswith(".tif") for asset in stac_item.bands.values()) and stac_item.mask.endswith(".tif")
    assert stac_item.sensor == "s2_l2a" and not stac_item.assumptions
    assert stac_item.radiometry == f"reflectance x 1e4 = DN {'+ 0' if offset_applied else '- 1000'}"
    grid = product.grid()
    from_item, from_product = stac_item.read(grid, S2_L2A.bands), product.read(grid, S2_L2A.bands)
    assert np.array_equal(from_item.valid, from_product.valid) and (~from_item.valid).any()
    assert np.allclose(from_item.values, from_product.values, atol=1e-3, equal_nan=True)


def test_a_cdse_item_takes_each_bands_native_asset_and_the_stac_1_1_fields(tmp_path: Path) -> None:
    """The Copernicus Data Space catalogue (STAC 1.1): every band at 10, 20 and 60 m (``B02_10m``, ``B02_60m``, the
    resampled copies marked ``sampling:downsampled``), names in ``bands`` with ``eo:common_name``, scaling in the
    asset's ``raster:scale``/``raster:offset``, ``SCL_20m`` and ``SCL_60m``, a true-colour ``TCI_10m`` and a
    ``visual`` asset whose roles say data. The Item is read from the native assets, listed after the copies here,
    and gives the product's reflectance and cloud mask."""
    safe = write_safe(tmp_path, level="L2A")
    (product,) = find_s2_products(safe)
    copies = tmp_path / "copies"
    copies.mkdir()
    item = pystac.Item("S2B_MSIL2A_20220917T105619_N0400_R094_T30SYH_20220917T131452", None, None,
                       dt.datetime(2022, 9, 17, 10, 56, 19, tzinfo=dt.UTC), {"product:type": "S2MSI2A"},
                       collection="sentinel-2-l2a")  # fmt: skip
    rgb = [{"name": b, "eo:common_name": n} for b, n in (("B04", "red"), ("B03", "green"), ("B02", "blue"))]
    item.add_asset("visual", pystac.Asset(product.bands["B2"], media_type="image/jp2", roles=["data"],
                                          extra_fields={"bands": rgb}))  # fmt: skip
    for code, path in product.bands.items():
        name = code if code == "B8A" else f"B{int(code[1:]):02d}"
        fields = {"bands": [{"name": name, "eo:common_name": COMMON[code]}], "raster:scale": 0.0001,
                  "raster:offset": -0.1, "nodata": 0}  # fmt: skip
        native = RESOLUTION.get(code, 20)
        other, sampling = (60, "downsampled") if native < 60 else (20, "upsampled")  # listed first
        copy = _write_like(path, copies / f"{name}_{other}m.tif", factor=other / native)
        item.add_asset(
            f"{name}_{other}m",
            pystac.Asset(
                str(copy),
                media_type="image/tiff",
                extra_fields=fields,
                roles=["data", f"sampling:{sampling}", f"gsd:{other}m"],
            ),
        )
        item.add_asset(
            f"{name}_{native}m",
            pystac.Asset(
                path, media_type="image/jp2", extra_fields=fields, roles=["data", "reflectance", f"gsd:{native}m"]
            ),
        )
    scl_60m = _write_like(product.mask, copies / "SCL_60m.tif", factor=3, nearest=True)
    item.add_asset("SCL_60m", pystac.Asset(str(scl_60m), media_type="image/tiff",
                                           roles=["data", "sampling:downsampled", "gsd:60m"]))  # fmt: skip
    item.add_asset("SCL_20m", pystac.Asset(product.mask, media_type="image/jp2", roles=["data", "gsd:20m"]))
    item.add_asset("TCI_10m", pystac.Asset(product.bands["B2"], media_type="image/jp2", roles=["visual"]))
    item.add_asset("WVP_10m", pystac.Asset(product.bands["B2"], media_type="image/jp2", roles=["data", "gsd:10m"]))
    (stac_item,) = read_stac(_saved(item, tmp_path / "item.json"))
    assert {b: a.path for b, a in stac_item.bands.items()} == dict(product.bands)
    assert stac_item.mask == product.mask and stac_item.level == "L2A"
    assert stac_item.radiometry.startswith("reflectance x 1e4 = (DN x 0.0001 - 0.1) x 10000")
    grid = product.grid()
    from_item, from_product = stac_item.read(grid, S2_L2A.bands), product.read(grid, S2_L2A.bands)
    assert np.array_equal(from_item.valid, from_product.valid) and (~from_item.valid).any()
    assert np.allclose(from_item.values, from_product.values, atol=1e-3, equal_nan=True)


def test_an_item_without_scaling_takes_the_baseline_from_its_product_id(tmp_path: Path) -> None:
    """No raster scaling and no baseline property: ``…_N0400_…`` in the Item id says −1000; an Item that says nothing
    at all gets the date's assumption, stated."""
    safe = write_safe(tmp_path, level="L2A")
    (product,) = find_s2_products(safe)
    for name in ("S2B_MSIL2A_20220917T105619_N0400_R094_T30SYH_20220917T131452", "S2B_30SYH_20220917"):
        item = pystac.Item(name, None, None, dt.datetime(2022, 9, 17, tzinfo=dt.UTC), {})
        for code, path in product.bands.items():
            item.add_asset(code, pystac.Asset(path, media_type="image/jp2", roles=["data"]))
        (stac_item,) = read_stac(_saved(item, tmp_path / f"{name}.json"))
        assert stac_item.s2_offset == -1000.0
        assert bool(stac_item.assumptions) == (name == "S2B_30SYH_20220917")


def test_an_s1_item_in_radar_geometry_is_refused_naming_terrain_correction(tmp_path: Path) -> None:
    """A Sentinel-1 GRD Item (Planetary Computer's sentinel-1-grd) points at files georeferenced by GCPs only."""
    import rasterio
    from rasterio.control import GroundControlPoint

    with rasterio.open(spain("S1")) as src:
        values, profile = src.read(), src.profile
    last = src.width - 1
    gcps = [GroundControlPoint(r, c, -0.7 + c * 1e-4, 38.1 - r * 1e-4) for r in (0, last) for c in (0, last)]
    profile.update(crs=None, transform=rasterio.Affine.identity(), count=1)
    item = pystac.Item("S1A_IW_GRDH_1SDV_20190918T060043", None, None, dt.datetime(2019, 9, 18, tzinfo=dt.UTC),
                       {"sar:polarizations": ["VV", "VH"]}, collection="sentinel-1-grd")  # fmt: skip
    for index, key in enumerate(("vv", "vh")):
        with rasterio.open(tmp_path / f"{key}.tiff", "w", **profile) as dst:
            dst.write(values[index : index + 1])
            dst.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
        item.add_asset(key, pystac.Asset(str(tmp_path / f"{key}.tiff"), media_type="image/tiff", roles=["data"]))
    with pytest.raises(InputError, match=r"vv\.tiff: georeferenced only by 4 ground control points .* sarsen"):
        read_stac(_saved(item, tmp_path / "grd.json"))


def test_an_hls_s30_item_has_no_offset_and_its_fmask_clouds_are_invalid(tmp_path: Path) -> None:
    """NASA's HLS S30 (CMR-STAC ``HLSS30_2.0``): harmonised surface reflectance x 1e4 as int16 COGs with nodata
    −9999, ``B01`` … ``B8A`` and ``Fmask`` assets, no scaling or baseline in the Item. Before: the date's −1000 offset
    was assumed (every post-2022 HLS value 0.1 too dark) and the Fmask ignored. An L30 (Landsat) Item is refused."""
    import rasterio

    safe = write_safe(tmp_path, level="L2A")
    (product,) = find_s2_products(safe)
    hls = tmp_path / "HLS.S30.T30SYH.2022260T105619.v2.0"
    hls.mkdir()
    item = pystac.Item(hls.name, None, None, dt.datetime(2022, 9, 17, 10, 56, 19, tzinfo=dt.UTC), {},
                       collection="HLSS30_2.0")  # fmt: skip
    for code, path in product.bands.items():
        with rasterio.open(path) as src:
            values, profile = src.read().astype(np.int64) - 1000, src.profile  # harmonised: the offset applied
        profile.update(driver="GTiff", dtype="int16", nodata=-9999, tiled=True)
        name = code if code == "B8A" else f"B{int(code[1:]):02d}"
        with rasterio.open(hls / f"{hls.name}.{name}.tif", "w", **profile) as dst:
            dst.write(values.astype("int16"))
        item.add_asset(name, pystac.Asset(str(hls / f"{hls.name}.{name}.tif"), media_type="image/tiff", roles=["data"]))
    with rasterio.open(product.mask) as src:
        scl, profile = src.read(), src.profile
    profile.update(driver="GTiff")
    with rasterio.open(hls / f"{hls.name}.Fmask.tif", "w", **profile) as dst:
        dst.write(np.where(scl == 9, 0b10, 0b100000).astype("uint8"))  # cloud bit under the cloud, water bit elsewhere
    item.add_asset("Fmask", pystac.Asset(str(hls / f"{hls.name}.Fmask.tif"), media_type="image/tiff", roles=["data"]))
    item.add_asset("SZA", pystac.Asset(str(hls / f"{hls.name}.B02.tif"), media_type="image/tiff", roles=["data"]))
    (stac_item,) = read_stac(_saved(item, tmp_path / "hls.json"))
    assert stac_item.sensor == "s2_l2a" and stac_item.s2_offset == 0 and not stac_item.assumptions
    assert stac_item.mask_kind == "fmask" and "B2" in stac_item.bands
    grid = product.grid()
    from_item, from_product = stac_item.read(grid, S2_L2A.bands), product.read(grid, S2_L2A.bands)
    assert np.array_equal(from_item.valid, from_product.valid) and (~from_item.valid).any()
    assert np.array_equal(from_item.values, from_product.values, equal_nan=True)
    landsat = pystac.Item("HLS.L30.T30SYH.2022258T105619.v2.0", None, None, dt.datetime(2022, 9, 15, tzinfo=dt.UTC),
                          {}, collection="HLSL30_2.0")  # fmt: skip
    landsat.add_asset("B05", pystac.Asset(str(hls / f"{hls.name}.B05.tif"), media_type="image/tiff", roles=["data"]))
    with pytest.raises(InputError, match=r"HLS L30 \(Landsat OLI: its B05 is near infrared"):
        read_stac(_saved(landsat, tmp_path / "l30.json"))


def test_data_index_of_an_item_beside_its_bands_gives_one_row_from_any_root(monkeypatch, tmp_path: Path) -> None:
    """An Item JSON saved beside its band files (relative hrefs ``./B02.tif``), indexed by a relative root, ``.``
    and an absolute one: one row, the Item. Before, under a relative root every band was listed again as a one-band
    ``label`` row (pystac makes the hrefs absolute, the listing was relative, and they never matched)."""
    from skysense.cli import main
    from skysense.data.manifest import read_manifest
    from tests.data.test_s2_products import _copy_bands

    (product,) = find_s2_products(write_safe(tmp_path / "safe", level="L2A"))
    scene = tmp_path / "work" / "scene"
    _copy_bands(product, scene, ".tif")
    item = pystac.Item("S2B_30SYH_20220917_0_L2A", None, None, dt.datetime(2022, 9, 17, 10, 56, 19, tzinfo=dt.UTC),
                       {"s2:processing_baseline": "04.00"})  # fmt: skip
    for path in sorted(scene.glob("*.tif")):
        band = path.stem
        extra = {} if band == "SCL" else {"eo:bands": [{"name": band}]}
        item.add_asset(band, pystac.Asset(str(path), media_type="image/tiff", roles=["data"], extra_fields=extra))
    item.set_self_href(str(scene / "item.json"))
    item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False)
    monkeypatch.chdir(tmp_path / "work")
    for root in ("scene", ".", str(scene)):
        assert main(["data", "index", root, "-o", str(tmp_path / "m.csv")]) == 0
        (entry,) = read_manifest(tmp_path / "m.csv")
        assert entry.date == dt.date(2022, 9, 17) and entry.modality == "s2", root
    # `--s2 scene` reads the folder through its Item (before: the JSON skipped, the bare band names refused), and a
    # second Item with its own files in the same folder is a second date; other JSON files are skipped, said once
    (scene / "tileinfo_metadata.json").write_text(json.dumps({"path": "tiles/30/S/YH/2022/9/17/0"}))
    later = item.clone()
    later.id, later.datetime = "S2B_30SYH_20221007_0_L2A", dt.datetime(2022, 10, 7, 10, 56, 19, tzinfo=dt.UTC)
    for key, asset in later.assets.items():
        copy = scene / f"later_{key}.tif"
        shutil.copy(scene / f"{key}.tif", copy)
        asset.href = str(copy)
    later.set_self_href(str(scene / "later.json"))
    later.make_asset_hrefs_relative()
    later.save_object(include_self_link=False)
    with pytest.warns(UserWarning, match="skipped 1 JSON files that are no STAC Item: tileinfo_metadata.json"):
        source = SeriesSource.from_arg(Path("scene"), "auto")
    assert source.dates == [dt.date(2022, 9, 17), dt.date(2022, 10, 7)] and source.sensor == "s2_l2a"
    grid = product.grid()
    from_item, from_product = source.files[0].read(grid, S2_L2A.bands), product.read(grid, S2_L2A.bands)
    assert np.array_equal(from_item.values, from_product.values, equal_nan=True)


def test_an_item_collection_of_two_tiles_on_one_date_is_one_mosaic(tmp_path: Path) -> None:
    """An ItemCollection of the two MGRS tiles that cover a place on one date (two Items of one date, as a STAC search
    returns them; the tile from the id, ``s2:mgrs_tile`` or ``grid:code``): one frame on the union of the tiles,
    equal to the whole chip. Before, the two Items were refused as sharing a date, where the same tiles as SAFE
    products were mosaicked."""
    from skysense.data.products import S2Mosaic
    from skysense.data.products.stac import mgrs_tile
    from tests.data.s2_safe import two_tiles

    whole = find_s2_products(write_safe(tmp_path / "whole", level="L2A", cloud=False))
    left, right = two_tiles()
    items = []
    for tile, columns in (("T30SYH", left), ("T30SYJ", right)):
        safe = write_safe(tmp_path / tile, level="L2A", cloud=False, tile=tile, columns=columns)
        item = _s2_item(safe, "2022-09-17", "file://")
        item.id = f"S2B_{tile[1:]}_20220917_0_L2A"
        items.append(item)
    path = tmp_path / "items.json"
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    source = SeriesSource.from_arg(path, "auto")
    (mosaic,) = source.files
    assert isinstance(mosaic, S2Mosaic) and mosaic.tile == "T30SYH+T30SYJ" and source.dates == [dt.date(2022, 9, 17)]
    series = read_time_series(source.files, sensor=S2_L2A, dates=source.dates)
    reference = read_time_series(whole, sensor=S2_L2A)
    assert series.values.shape == reference.values.shape and bool(series.valid.all())
    assert np.allclose(series.values.numpy(), reference.values.numpy(), atol=1e-4)
    assert mgrs_tile({"grid:code": "MGRS-30SYH"}) == mgrs_tile({"s2:mgrs_tile": "30SYH"}) == "T30SYH"
    assert mgrs_tile({"mgrs:utm_zone": 9, "mgrs:latitude_band": "U", "mgrs:grid_square": "XA"}) == "T09UXA"
    assert mgrs_tile({}, "S2B_MSIL2A_20220917T105619_R094_T30SYH_20220918T010203") == "T30SYH"
    assert mgrs_tile({}, "S1A_IW_GRDH_1SDV_20190918") == ""
