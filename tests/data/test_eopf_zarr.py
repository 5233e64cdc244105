"""Sentinel-2 products in ESA's EOPF Zarr format (issue 14: the layout the Copernicus Data Space and the EOPF Sentinel
Zarr Samples service distribute since 2025), built from the real Sen1Floods11 L1C chip in tmp folders: a ``.zarr``
folder and its ``.zarr.zip`` read the same pixels, validity and date as the chip written as a SAFE product."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from skysense.data.products import find_s2_products
from skysense.data.sensors import S2_L1C, S2_L2A
from skysense.errors import InputError
from skysense.inference.sources import SeriesSource
from tests.data.s2_safe import TILE, cloud_pixels, side, write_eopf_zarr, write_safe


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_an_eopf_zarr_product_reads_like_the_safe_product(tmp_path: Path, level: str) -> None:
    """Each band from its native resolution group (the coarser groups' resampled copies are 7 DN off in the
    fixture), the offset from ``add_offset``/``scale_factor``, clouds from the L1C flags or the L2A SCL: the same
    values and validity as the SAFE product of the same pixels, to the bit."""
    sensor = S2_L1C if level == "L1C" else S2_L2A
    (safe,) = find_s2_products(write_safe(tmp_path / "safe", level=level))
    (product,) = find_s2_products(write_eopf_zarr(tmp_path / "zarr", level=level))
    assert (product.level, product.tile, product.date) == (level, TILE, dt.date(2022, 9, 17))
    assert product.quantification == 10000.0 and set(product.offsets.values()) == {-1000.0}
    assert not product.assumptions and product.mask is not None
    grid = safe.grid()
    assert product.grid().shape == grid.shape == (side(), side())
    assert np.allclose(product.grid().transform, grid.transform, rtol=0, atol=1e-12)
    got, expected = product.read(grid, sensor.bands), safe.read(grid, sensor.bands)
    assert np.array_equal(got.valid, expected.valid)
    assert np.array_equal(got.values, expected.values, equal_nan=True)
    rows, cols = cloud_pixels()
    assert not got.valid[:, rows, cols].any()
    right = slice(side() // 2 + 6, None)  # the L1C fixture's snow and ice: valid
    assert got.valid[:, rows.stop :, right].all()


def test_zarr_format_3_is_read_or_refused_in_one_line(tmp_path: Path) -> None:
    """Zarr format 3 (``zarr.json``, the format EOPF moves to): read like format 2 where GDAL decodes its codecs,
    else refused before any work, naming the GDAL version and the conversion to format 2."""
    import rasterio

    (v2,) = find_s2_products(write_eopf_zarr(tmp_path / "v2", level="L2A"))
    product = write_eopf_zarr(tmp_path / "v3", level="L2A", zarr_format=3)
    assert (product / "zarr.json").is_file()
    try:
        (v3,) = find_s2_products(product)
    except InputError as err:
        assert f"a Zarr format 3 product that GDAL {rasterio.__gdal_version__} cannot decode" in str(err)
        assert "zarr_format=2" in str(err) and "\n" not in str(err)
        return
    grid = v2.grid()
    a, b = v3.read(grid, S2_L2A.bands), v2.read(grid, S2_L2A.bands)
    assert np.array_equal(a.values, b.values, equal_nan=True) and np.array_equal(a.valid, b.valid)


def test_a_zipped_product_and_a_folder_of_products(tmp_path: Path) -> None:
    """The ``.zarr.zip`` as downloaded is read in place (GDAL's /vsizip/, nothing extracted) and equals the folder;
    a folder of products is a series, one date each, the CRS also found in the root's ``other_metadata`` alone."""
    folder = write_eopf_zarr(tmp_path / "one")
    zipped = write_eopf_zarr(tmp_path / "zip", zipped=True)
    (from_folder,), (from_zip,) = find_s2_products(folder), find_s2_products(zipped)
    assert from_zip.files == (zipped,) and from_zip.bands["B2"].startswith('vrt://ZARR:"/vsizip/')
    grid = from_folder.grid()
    a, b = from_folder.read(grid, S2_L1C.bands), from_zip.read(grid, S2_L1C.bands)
    assert np.array_equal(a.values, b.values, equal_nan=True) and np.array_equal(a.valid, b.valid)
    series = tmp_path / "series"
    write_eopf_zarr(series, zipped=True)
    write_eopf_zarr(series, time="20221007T105619", crs_on_arrays=False)
    source = SeriesSource.from_arg(series, "auto")
    assert source.sensor == "s2_l1c" and source.dates == [dt.date(2022, 9, 17), dt.date(2022, 10, 7)]
    assert all(on_disk.exists() for on_disk in source.paths)


def test_a_product_without_a_crs_or_bands_is_refused_in_one_line(tmp_path: Path) -> None:
    product = write_eopf_zarr(tmp_path, crs_on_arrays=False)
    metadata = json.loads((product / ".zmetadata").read_text())
    metadata["metadata"][".zattrs"].pop("other_metadata")
    (product / ".zmetadata").write_text(json.dumps(metadata))
    (product / ".zattrs").write_text(json.dumps(metadata["metadata"][".zattrs"]))
    with pytest.raises(InputError, match=r"\.zarr: no CRS in the product's attributes \(proj:epsg") as err:
        find_s2_products(product)
    assert "\n" not in str(err.value)
    empty = tmp_path / "S2B_MSIL2A_20220917T105619_N0511_R094_T30SYH_20220917T131452.zarr"
    empty.mkdir()
    (empty / ".zgroup").write_text('{"zarr_format": 2}')
    with pytest.raises(InputError, match=r"no Sentinel-2 band arrays under measurements/reflectance"):
        find_s2_products(empty)


def test_utm_metre_coordinates_give_the_tiles_grid(tmp_path: Path) -> None:
    """Real products: int64 pixel-centre coordinates in metres of the tile's UTM zone; each resolution group's grid
    is the tile's 10/20/60 m grid (corner 699960, 4300020), and the bands read onto the 10 m grid."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    (product,) = find_s2_products(write_eopf_zarr(tmp_path, level="L2A", utm=True))
    grid = product.grid()
    assert grid.crs == CRS.from_epsg(32630) and grid.transform == Affine(10, 0, 699960, 0, -10, 4300020)
    raster = product.read(grid, S2_L2A.bands)
    assert raster.values.shape == (len(S2_L2A.bands), side(), side()) and raster.valid[:, -1, -1].all()


def test_index_gives_one_row_per_product_and_the_dataset_reads_them(tmp_path: Path) -> None:
    """`skysense data index` of a folder of EOPF products (a folder and a zip; hundreds of chunk files each): one s2
    row per product, not a row per chunk, and ManifestDataset reads both dates."""
    from skysense.cli import main
    from skysense.data.manifest import PRODUCT_DRIVER, ManifestDataset, read_manifest

    root = tmp_path / "downloads"
    write_eopf_zarr(root)
    write_eopf_zarr(root, time="20221007T105619", zipped=True)
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(root), "-o", str(manifest)]) == 0
    entries = read_manifest(manifest)
    assert [e.driver for e in entries] == [PRODUCT_DRIVER] * 2 and {e.modality for e in entries} == {"s2"}
    assert [e.date for e in entries] == [dt.date(2022, 9, 17), dt.date(2022, 10, 7)]
    sample = ManifestDataset(manifest)[0]
    assert sample.s2.values.shape == (2, 10, side(), side())


def test_a_folder_of_safe_and_zarr_products_reads_them_all(tmp_path: Path) -> None:
    """Downloads of both formats side by side: every product is a date (none is dropped for the other format)."""
    write_safe(tmp_path)
    write_eopf_zarr(tmp_path, time="20221007T105619")
    products = find_s2_products(tmp_path)
    assert [p.date for p in products] == [dt.date(2022, 9, 17), dt.date(2022, 10, 7)]
    assert [p.source.suffix for p in products] == [".SAFE", ".zarr"]


def _eopf_item(product: Path, json_path: Path, href_root: str | None = None) -> Path:
    """A STAC Item as the EOPF Sentinel Zarr Samples catalogue describes a product: one asset per band at its native
    resolution whose href lies inside the product (``…zarr/measurements/reflectance/r10m/b02``), a group asset
    (``SR_10m``) and the product itself, all ``application/vnd+zarr``; hrefs relative to the JSON unless
    ``href_root`` replaces the product's location."""
    from skysense.data.products.eopf import NATIVE_RESOLUTION
    from skysense.data.products.sentinel2 import BANDS

    root = href_root or f"./{product.relative_to(json_path.parent)}"
    zarr_type = "application/vnd+zarr"
    assets: dict = {
        "product": {"href": root, "type": zarr_type, "roles": ["data", "metadata"], "title": "EOPF product"},
        "SR_10m": {"href": f"{root}/measurements/reflectance/r10m", "type": zarr_type,
                   "roles": ["data", "reflectance", "dataset"], "gsd": 10},
    }  # fmt: skip
    for band in BANDS:
        resolution = NATIVE_RESOLUTION.get(band, 10)
        code = f"b{band[1:].zfill(2).lower()}"
        assets[f"{band}_{resolution}m"] = {
            "href": f"{root}/measurements/reflectance/r{resolution}m/{code}", "type": zarr_type,
            "roles": ["data", "reflectance"], "gsd": resolution, "bands": [{"name": f"B{band[1:].zfill(2)}"}],
        }  # fmt: skip
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": product.name[: -len(".zarr")],
        "geometry": {"type": "Point", "coordinates": [-0.78, 38.1]}, "bbox": [-0.79, 38.08, -0.74, 38.13],
        "properties": {"datetime": "2022-09-17T10:56:19Z", "product:type": "S2MSI1C", "proj:code": "EPSG:4326"},
        "links": [], "assets": assets, "collection": "sentinel-2-l1c",
    }  # fmt: skip
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(item))
    return json_path


def test_a_stac_item_of_an_eopf_product_reads_the_product(tmp_path: Path, capsys) -> None:
    """Input: the real chip as an EOPF L1C product and the STAC Item that the EOPF catalogue gives for it (band assets
    pointing inside the product, relative hrefs).
    Expected: the Item reads as that product (same bands, date, values and validity, to the bit); a series of the
    Item equals the series of the .zarr; `data info` of the JSON describes the product; `data index` of a folder
    holding both the JSON and the product gives one row, not two."""
    from skysense.cli import main
    from skysense.data.manifest import read_manifest
    from skysense.data.products.stac import read_stac

    product = write_eopf_zarr(tmp_path / "downloads")
    item_json = _eopf_item(product, tmp_path / "downloads" / "item.json")
    (direct,) = find_s2_products(product)
    (from_item,) = read_stac(item_json)
    assert (from_item.name, from_item.level, from_item.date) == (direct.name, "L1C", dt.date(2022, 9, 17))
    assert from_item.bands == direct.bands and from_item.mask == direct.mask
    grid = direct.grid()
    a, b = from_item.read(grid, S2_L1C.bands), direct.read(grid, S2_L1C.bands)
    assert np.array_equal(a.values, b.values, equal_nan=True) and np.array_equal(a.valid, b.valid)
    series = SeriesSource.from_arg(item_json, "auto")
    assert series.sensor == "s2_l1c" and series.dates == [dt.date(2022, 9, 17)]
    assert main(["data", "info", str(item_json)]) == 0
    out = capsys.readouterr().out
    assert f"STAC Item {direct.name} of an EOPF Zarr product" in out and "Sentinel-2 L1C product" in out
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(tmp_path / "downloads"), "-o", str(manifest)]) == 0
    assert [e.date for e in read_manifest(manifest)] == [dt.date(2022, 9, 17)]


@pytest.fixture
def http_folder(tmp_path: Path):
    """A folder served over HTTP on this machine (as an object store serves products): (folder, base URL)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # no request lines in the test output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_stac_item_of_a_remote_eopf_product_reads_it_over_http(tmp_path: Path, http_folder) -> None:
    """Input: the EOPF product served over HTTP (a local server standing in for the EOPF object store) and its STAC
    Item with absolute https-style hrefs into it, the JSON alone on disk.
    Expected: the product's metadata read through fsspec and its pixels through GDAL's /vsicurl/: the same values
    and validity as the product read from disk, to the bit; the product's source is the Item's JSON."""
    from skysense.data.products.stac import read_stac

    served, base = http_folder
    product = write_eopf_zarr(served)
    (local,) = find_s2_products(product)
    item_json = _eopf_item(product, tmp_path / "item.json", href_root=f"{base}/{product.name}")
    (remote,) = read_stac(item_json)
    assert remote.bands["B2"].startswith(f'vrt://ZARR:"/vsicurl/{base}/{product.name}":')
    assert (remote.name, remote.date, remote.source, remote.files) == (local.name, local.date, item_json, (item_json,))
    grid = local.grid()
    a, b = remote.read(grid, S2_L1C.bands), local.read(grid, S2_L1C.bands)
    assert np.array_equal(a.values, b.values, equal_nan=True) and np.array_equal(a.valid, b.valid)
    series = SeriesSource.from_arg([f"{base}/{product.name}"], "auto")  # the URL given as `--s2` itself
    assert series.sensor == "s2_l1c" and series.dates == [local.date] and series.files[0].bands == remote.bands


def test_a_stac_item_of_an_unreachable_or_missing_eopf_product_is_refused_in_one_line(tmp_path: Path) -> None:
    """Input: the Item with hrefs into a product on a server that does not answer, and with hrefs to a product that
    is not on disk. Expected: one line each, naming the product, and what to do."""
    import socket

    from skysense.data.products.stac import read_stac

    product = write_eopf_zarr(tmp_path / "downloads")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{product.name}"
    with pytest.raises(InputError) as caught:
        read_stac(_eopf_item(product, tmp_path / "remote.json", href_root=url))
    message = str(caught.value)
    assert message.startswith(f"{url}: cannot read the remote Zarr product (") and "\n" not in message
    assert message.endswith("check the address and the network, or download the product and give the .zarr folder")
    missing = _eopf_item(product, tmp_path / "moved" / "item.json", href_root="./elsewhere/" + product.name)
    with pytest.raises(InputError, match=r"Zarr product .*elsewhere.* is not there; put the product there"):
        read_stac(missing)
