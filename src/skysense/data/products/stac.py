"""STAC Items as Sentinel inputs: an Item or ItemCollection JSON (or a folder of them), parsed with ``pystac``,
one date per Item, its per-band assets read onto any grid.

- **Bands** from each asset's STAC 1.1 ``bands`` (``eo:common_name``, ``name``) or ``eo:bands`` (``common_name``,
  ``name``), else the asset key without a resolution or format suffix (``B02``, ``B02_10m``, ``red``,
  ``blue-jp2``, ``vv``), through :func:`~skysense.data.sensors.canonical_band_name`. True-colour composites
  (``visual``, ``TCI_10m``), thumbnails, metadata and assets that name no band (``AOT``, ``WVP``) are skipped. Where
  several assets hold one band (Earth Search: a COG and its JPEG 2000 original; CDSE: each band at 10, 20 and 60 m),
  the native one (no ``sampling:*`` role) at its finest resolution is read, a GeoTIFF before a JPEG 2000 copy.
- **Date** from ``properties.datetime`` (else ``start_datetime``).
- **Hrefs**: local paths (relative to the JSON) and ``file://`` are read as files; ``http(s)://`` through GDAL's
  ``/vsicurl?url=`` and ``s3://`` through ``/vsis3/`` when the user has network (no test needs it).
- **Sentinel-2 radiometry** to reflectance × 1e4: Earth Search's ``earthsearch:boa_offset_applied`` flag with the
  processing baseline when the Item has the flag (its COGs may already carry the offset that its ``raster:bands``
  give again); else the asset's scaling (``raster:scale``/``raster:offset``, or ``raster:bands`` ``scale``/
  ``offset``: reflectance = DN × scale + offset); else the processing baseline (``s2:processing_baseline``,
  ``processing:version``, ``_N0400_`` in the id) ≥ 04.00 → offset −1000 on DN / 10000; else the sensing date
  decides, and the assumption is stated (as for SAFE products without metadata). The level comes from
  ``s2:product_type``, ``product:type`` or the collection id; ``SCL`` assets (``SCL_20m``, ``scl``) are cloud masks,
  as in :mod:`skysense.data.products.sentinel2`.
- **HLS S30** (NASA's Harmonized Landsat Sentinel-2, an id ``HLS.S30.…`` or a collection ``HLSS30…``): harmonised
  surface reflectance × 1e4 with no offset at any date, read as L2A; its ``Fmask`` asset is the cloud mask (bits
  1–3: cloud, adjacent to cloud or shadow, cloud shadow). HLS L30 Items (Landsat OLI band numbers) are refused.
- **EOPF Zarr Items** (the EOPF Sentinel Zarr Samples and Copernicus Data Space catalogues since 2025): assets of
  type ``application/vnd+zarr`` whose hrefs lie inside one product (``…/S2C_MSIL2A_…zarr/measurements/reflectance/
  r10m/b02``, or the product itself) are read as that product, by :mod:`skysense.data.products.eopf` (native
  resolutions, scaling, CRS and masks from the product's own metadata): the Item gives an
  :class:`~skysense.data.products.sentinel2.S2Product`, as the ``.zarr`` folder would. A local product (a path
  relative to the JSON, or ``file://``) is read from disk; a remote one (``https://``, ``s3://``) over the network:
  its metadata through ``fsspec`` (the consolidated ``.zmetadata``), its pixels through GDAL's ``/vsicurl/`` or
  ``/vsis3/``.
- **Sentinel-1** (``sar:polarizations``, or ``vv``/``vh`` assets): values as stored (dB or linear: the sensor says).
- CRS: the assets' own (``proj:epsg``/``proj:code`` describe them; the files are read with their georeferencing).
- Sentinel-1 files in radar geometry (GCPs only: a GRD Item) are refused, naming terrain correction.

Written on ``pystac`` rather than odc-stac: odc-stac loads an xarray cube of a whole area at one resolution, while
the tiled scene reader needs each Item as bands it can warp tile by tile onto the HR image's grid, with Sentinel-2
offsets and masks applied like a SAFE product's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import numpy as np

from skysense.containers import Grid
from skysense.data.products.sentinel1 import check_geocoded
from skysense.data.products.sentinel2 import (
    S2Product,
    _assumed_radiometry,
    boa_offset_applied,
    clear_pixels,
    processing_baseline,
)
from skysense.data.raster import Raster, raster_info, reproject_to_grid
from skysense.data.raster.litter import is_litter
from skysense.data.sensors import canonical_band_name
from skysense.errors import InputError

_SKIP_ROLES = {"visual", "thumbnail", "overview", "metadata"}
_ZARR_HREF = re.compile(r"^(?P<root>.+?\.zarr(?:\.zip)?)(?:/|$)", re.IGNORECASE)  # the product an href lies in
_RASTER_TYPES = ("image/tiff", "image/jp2", "application/x-hdf", "image/vnd.stac.geotiff")


@dataclass(frozen=True)
class BandAsset:
    """One band of an Item: the GDAL path of its file, the band index in it, and its scaling."""

    path: str
    index: int = 1
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None


@dataclass(frozen=True)
class StacItem:
    """One STAC Item as a date of a Sentinel series.

    Attributes:
        name: the Item id; source: the JSON it came from; date: its datetime's date.
        bands: canonical band (``B4``, ``VV``) → :class:`BandAsset`.
        mask: the ``SCL`` asset's GDAL path (Sentinel-2 L2A), or None.
        sensor: a :data:`~skysense.data.sensors.SENSORS` key when the Item says its level ("s2_l1c"/"s2_l2a"),
            else None (the series' sensor decides).
        level: "L1C", "L2A" or "" (Sentinel-1, unknown).
        s2_offset: for Sentinel-2 bands without ``raster:bands`` scaling, the offset added to the DN before / 10000.
        files: local files (the JSON and local assets), for fingerprints.
        assumptions: what was assumed where the Item is silent.
        mask_kind: "scl" (L2A scene classes) or "fmask" (HLS's Fmask bits: cloud, adjacent, shadow).
        tile: the MGRS tile (``T30SYH``) when the Item says it (:func:`mgrs_tile`), else "": one date's Items of
            different tiles are read as one mosaic (:mod:`skysense.data.products.mosaic`).
    """

    name: str
    source: Path
    date: dt.date
    bands: dict[str, BandAsset]
    mask: str | None
    sensor: str | None
    level: str
    s2_offset: float
    files: tuple[Path, ...]
    assumptions: tuple[str, ...] = field(default=())
    mask_kind: str = "scl"
    tile: str = ""

    @property
    def rasters(self) -> list[str]:
        return sorted({b.path for b in self.bands.values()} | ({self.mask} if self.mask else set()))

    @property
    def radiometry(self) -> str:
        """How the Item's values become the sensor's units, for ``skysense data info``."""
        optical = [a for b, a in self.bands.items() if b.startswith("B")]
        if not optical:
            return "values as stored (dB or linear: the sensor says)"
        scaled = sorted({(a.scale, a.offset or 0.0) for a in optical if a.scale is not None})
        if scaled:
            scale, offset = scaled[0]
            sign = "-" if offset < 0 else "+"
            return f"reflectance x 1e4 = (DN x {scale:g} {sign} {abs(offset):g}) x 10000 (the assets' raster scaling)"
        sign = "-" if self.s2_offset < 0 else "+"
        return f"reflectance x 1e4 = DN {sign} {abs(self.s2_offset):g}"

    def grid(self) -> Grid:
        """The grid of the Item's finest band."""
        return min((raster_info(b.path).grid for b in self.bands.values()), key=lambda g: g.res[0])

    def read(self, grid: Grid, bands: Sequence[str], resampling: str = "bilinear") -> Raster:
        """``bands`` onto ``grid`` (Sentinel-2 as reflectance × 1e4; Sentinel-1 as stored), NaN where invalid.

        Raises:
            InputError: a band the Item has no asset for, naming the Item and the bands it has.
        """
        wanted = [canonical_band_name(b) or b for b in bands]
        missing = [b for b in wanted if b not in self.bands]
        if missing:
            raise InputError(
                f"{self.source}: STAC Item {self.name} has no asset for {', '.join(missing)} (it has "
                f"{', '.join(self.bands)}); give Items with every band the model reads"
            )
        values, valid = [], []
        for band in wanted:
            asset = self.bands[band]
            nodata = asset.nodata if asset.nodata is not None else (0 if band.startswith("B") else None)
            raster = reproject_to_grid(asset.path, grid.crs, grid.transform, grid.shape, resampling,
                                       bands=[asset.index], nodata=nodata)  # fmt: skip
            plane = raster.values[0]
            if band.startswith("B"):  # Sentinel-2: reflectance × 1e4
                if asset.scale is not None:
                    plane = plane * (asset.scale * 10000.0) + (asset.offset or 0.0) * 10000.0  # 1e-4 → × 1.0
                else:
                    plane = plane + self.s2_offset
                plane = np.maximum(plane, 0.0, where=raster.valid[0], out=plane)
            values.append(plane)
            valid.append(raster.valid[0])
        values_array, valid_array = np.stack(values).astype(np.float32), np.stack(valid)
        if self.mask is not None:
            mask = reproject_to_grid(self.mask, grid.crs, grid.transform, grid.shape, "nearest")
            valid_array &= clear_pixels(mask, self.mask_kind)[None]
        values_array[~valid_array] = np.nan
        return Raster(values_array, valid_array, tuple(wanted), grid.crs, grid.transform, self.source)


def _gdal_path(href: str) -> str:
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https"):  # GDAL's "/vsicurl?url=" form: the path layer (pathlib) keeps it whole,
        return f"/vsicurl?url={quote(href, safe='')}"  # where it folds the "//" of "/vsicurl/https://…"
    if parsed.scheme == "s3":
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    if parsed.scheme == "file":  # a URI: spaces and non-ASCII characters percent-encoded (Path.as_uri, pystac)
        return unquote(parsed.path)
    return href


_KEY_SUFFIX = re.compile(r"(?:[_-](?:\d+m|jp2|cog|tif|tiff))+$", re.IGNORECASE)  # "B02_10m", "blue-jp2"
_VISUAL = re.compile(r"^(?:visual|tci|true[_-]?colou?r)", re.IGNORECASE)  # 8-bit RGB composites, never reflectance


@dataclass(frozen=True)
class _Candidate:
    """One asset's claim to be a band (or the SCL mask) of an Item, and how good a source of it it is."""

    band: str
    asset: BandAsset
    resolution: float  # metres; inf when the Item does not say
    native: bool  # not a resampled copy ("sampling:downsampled"/"upsampled" roles, as the CDSE catalogue marks them)
    jpeg2000: bool

    def rank(self) -> tuple[bool, float, bool]:
        return (not self.native, self.resolution, self.jpeg2000)


def _first(*values):
    return next((v for v in values if v is not None), None)


def _resolution(key: str, asset, entry: dict) -> float:
    """An asset's pixel size from ``gsd``, ``raster:spatial_resolution``, a ``gsd:20m`` role, ``proj:transform`` or a
    ``_20m`` key suffix (inf when none says)."""
    extra = asset.extra_fields
    for value in (extra.get("gsd"), entry.get("raster:spatial_resolution"), entry.get("spatial_resolution"),
                  (extra.get("raster:bands") or [{}])[0].get("spatial_resolution")):  # fmt: skip
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    for text in [*(asset.roles or []), key]:
        match = re.search(r"(?:gsd:|_)(\d+)m$", text, re.IGNORECASE)
        if match:
            return float(match.group(1))
    transform = extra.get("proj:transform")
    return abs(float(transform[0])) if transform else float("inf")


def _asset_bands(key: str, asset) -> list[tuple[str, int, dict]]:
    """(band, 1-based index, its scaling) for each band of an asset it names — a canonical band (``B4``, ``VV``) or
    ``SCL`` —; [] when not all of its bands are named.

    Band entries come from STAC 1.1 ``bands`` (``eo:common_name``, ``name``) or STAC 1.0 ``eo:bands``
    (``common_name``, ``name``), else the asset key without a resolution or format suffix (``B02_10m``,
    ``blue-jp2``). Scaling (``scale``, ``offset``, ``nodata``) comes from the band entry's ``raster:*`` fields (1.1),
    else ``raster:bands`` (1.0), else the asset's own ``raster:scale``/``raster:offset``/``nodata`` (1.1)."""
    extra = asset.extra_fields
    described = extra.get("bands") or extra.get("eo:bands") or []
    raster_bands = extra.get("raster:bands") or []
    asset_level = {"scale": extra.get("raster:scale"), "offset": extra.get("raster:offset"),
                   "nodata": extra.get("nodata", extra.get("raster:nodata"))}  # fmt: skip

    def scaling(i: int, entry: dict) -> dict:
        old = raster_bands[i] if i < len(raster_bands) else {}
        return {
            "scale": _first(entry.get("raster:scale"), old.get("scale"), asset_level["scale"]),
            "offset": _first(entry.get("raster:offset"), old.get("offset"), asset_level["offset"]),
            "nodata": _first(entry.get("nodata"), old.get("nodata"), asset_level["nodata"]),
            "resolution": _resolution(key, asset, entry),
        }

    def identity(*names: str | None) -> str | None:
        for name in names:
            if name and _KEY_SUFFIX.sub("", name).upper() in ("SCL", "FMASK"):
                return _KEY_SUFFIX.sub("", name).upper()
            band = canonical_band_name(name) or (canonical_band_name(_KEY_SUFFIX.sub("", name)) if name else None)
            if band:
                return band
        return None

    if described:
        names = [identity(b.get("eo:common_name"), b.get("common_name"), b.get("name")) for b in described]
        if not all(names):
            return []
        return [(n, i + 1, scaling(i, b)) for i, (n, b) in enumerate(zip(names, described, strict=True))]
    name = identity(key)
    return [(name, 1, scaling(0, {}))] if name else []


def _zarr_product(item, source: Path, roots: list[str]) -> S2Product:
    """The EOPF Zarr product whose arrays an Item's assets point into, read by
    :func:`~skysense.data.products.eopf.read_eopf_s2`."""
    from skysense.data.products.eopf import read_eopf_s2

    if len(roots) > 1:
        raise InputError(f"{source}: STAC Item {item.id} points into {len(roots)} Zarr products ({', '.join(roots)}); "
                         "give Items whose assets lie in one product")  # fmt: skip
    parsed = urlparse(roots[0])
    if parsed.scheme in ("http", "https", "s3"):  # metadata through fsspec, pixels through /vsicurl/ or /vsis3/
        return read_eopf_s2(roots[0], found_as=source)
    if parsed.scheme not in ("", "file"):
        raise InputError(f"{source}: STAC Item {item.id}'s Zarr product {roots[0]} is behind a {parsed.scheme}:// "
                         "address skysense cannot open; give http(s)://, s3:// or a local path")  # fmt: skip
    path = Path(parsed.path if parsed.scheme == "file" else roots[0])
    path = path if path.is_absolute() else source.parent / path
    if not path.exists():
        raise InputError(f"{source}: STAC Item {item.id}'s Zarr product {path} is not there; put the product there or "
                         "correct the Item's hrefs")  # fmt: skip
    return read_eopf_s2(path, found_as=source)


def _item(item, source: Path) -> StacItem | S2Product:
    properties = item.properties
    when = item.datetime or dt.datetime.fromisoformat(str(properties.get("start_datetime")).replace("Z", "+00:00"))
    date = when.date()
    candidates: dict[str, list[_Candidate]] = {}
    files = [source]
    zarr_roots: dict[str, None] = {}  # the EOPF Zarr products the Item's data assets lie in, in order
    for key, asset in item.assets.items():
        roles = set(asset.roles or [])
        if roles & _SKIP_ROLES and "data" not in roles or _VISUAL.match(key) or "visual" in roles:
            continue
        href = asset.get_absolute_href() or asset.href
        zarr_root = _ZARR_HREF.match(href)
        if "zarr" in (asset.media_type or "").lower() or zarr_root:
            if zarr_root:
                zarr_roots[zarr_root["root"]] = None
            continue
        if asset.media_type and not any(asset.media_type.startswith(t) for t in _RASTER_TYPES):
            continue
        named = _asset_bands(key, asset)
        if not named:
            continue
        path = _gdal_path(href)
        if not path.startswith("/vsi") and not Path(path).is_absolute():  # relative to the JSON (no self link)
            path = str(source.parent / path)
        native = not any(role.startswith("sampling:") for role in roles)
        jpeg2000 = (asset.media_type or "").startswith("image/jp2") or path.lower().endswith(".jp2")
        for band, index, scaling in named:
            band_asset = BandAsset(path, index, scaling["scale"], scaling["offset"], scaling["nodata"])
            candidate = _Candidate(band, band_asset, scaling["resolution"], native, jpeg2000)
            candidates.setdefault(band, []).append(candidate)
    # one asset per band: the native one, at its finest resolution, a COG before a JPEG 2000 copy (Earth Search
    # lists both; the CDSE catalogue lists each band at 10, 20 and 60 m)
    chosen = {band: min(found, key=_Candidate.rank).asset for band, found in candidates.items()}
    hls = str(item.id).upper().startswith("HLS.") or "HLS" in str(item.collection_id or "").upper()
    if hls and (".L30." in str(item.id).upper() or "L30" in str(item.collection_id or "").upper()):
        raise InputError(f"{source}: STAC Item {item.id} is HLS L30 (Landsat OLI: its B05 is near infrared, not "
                         "Sentinel-2's red edge); give HLS S30 Items (Sentinel-2) for the s2 series")  # fmt: skip
    if not chosen and zarr_roots:
        return _zarr_product(item, source, list(zarr_roots))
    mask_asset, fmask_asset = chosen.pop("SCL", None), chosen.pop("FMASK", None)
    mask_kind = "scl" if mask_asset is not None or fmask_asset is None else "fmask"
    mask_asset = mask_asset or fmask_asset
    mask = mask_asset.path if mask_asset else None
    bands = chosen
    if not bands:
        raise InputError(f"{source}: STAC Item {item.id} has no band assets (keys {list(item.assets)}); give Items "
                         "whose assets are single bands named by eo:bands or by their keys")  # fmt: skip
    files += [Path(p) for p in sorted({a.path for a in bands.values()} | ({mask} if mask else set()))
              if not p.startswith("/vsi")]  # fmt: skip
    product_type = " ".join(str(properties.get(k, "")) for k in ("s2:product_type", "product:type"))
    product_type = f"{product_type} {item.collection_id or ''}".upper()
    level = "L2A" if "2A" in product_type else "L1C" if "1C" in product_type else ""
    assumptions: list[str] = []
    s2_offset = 0.0
    optical = [b for b in bands if b.startswith("B")]
    baseline = processing_baseline(properties, str(item.id))
    applied = boa_offset_applied(properties)
    if optical and hls:  # HLS S30: harmonised surface reflectance x 1e4, no offset at any date
        level = "L2A"
    elif optical and (applied is not None or any(bands[b].scale is None for b in optical)):
        if applied is not None:  # Earth Search: its flag and the baseline say what the DN hold, whatever raster:bands
            # says (it gives offset -0.1 on Items whose COGs already carry the offset)
            bands = {
                b: BandAsset(a.path, a.index, None, None, a.nodata) if b in optical else a for b, a in bands.items()
            }
        if applied:
            s2_offset = 0.0
        elif baseline is not None:
            s2_offset = -1000.0 if baseline >= 4.0 else 0.0
        else:
            _, offsets, assumption = _assumed_radiometry(date)
            s2_offset = offsets.get("B2", 0.0)
            assumptions.append(assumption.replace("no product metadata (MTD_MSIL*.xml)", "no processing baseline"))
    sensor = {"L1C": "s2_l1c", "L2A": "s2_l2a"}.get(level)
    if not optical:  # Sentinel-1: radar geometry (GCPs only) needs terrain correction first
        for path in dict.fromkeys(a.path for a in bands.values()):  # in the Item's order
            if not path.startswith("/vsi"):
                check_geocoded(path)
    return StacItem(item.id, source, date, bands, mask, sensor, level, s2_offset, tuple(files), tuple(assumptions),
                    mask_kind, mgrs_tile(properties, str(item.id)) if optical else "")  # fmt: skip


_MGRS = re.compile(r"^T?(\d{1,2})([C-X])([A-Z]{2})$")
_MGRS_IN_ID = re.compile(r"_T?(\d{2}[C-X][A-Z]{2})_")  # S2B_30SYH_20220917_0_L2A, S2B_MSIL2A_…_T30SYH_…


def mgrs_tile(properties: dict, item_id: str = "") -> str:
    """The MGRS tile (``T30SYH``) a Sentinel-2 Item's properties state (``grid:code`` "MGRS-30SYH", ``s2:mgrs_tile``,
    ``tileId``, or Earth Search's ``mgrs:utm_zone`` + ``mgrs:latitude_band`` + ``mgrs:grid_square``) or its id
    holds; "" when neither says."""
    named = [str(properties.get(key) or "") for key in ("grid:code", "s2:mgrs_tile", "tileId", "tile_id")]
    parts = [properties.get(f"mgrs:{key}") for key in ("utm_zone", "latitude_band", "grid_square")]
    if all(part is not None for part in parts):
        named.append("".join(str(part) for part in parts))
    for name in named:
        if match := _MGRS.match(name.removeprefix("MGRS-")):
            return f"T{int(match[1]):02d}{match[2]}{match[3]}"
    match = _MGRS_IN_ID.search(f"_{item_id}_")
    return f"T{match[1]}" if match else ""


def read_stac(path: str | Path) -> list[StacItem | S2Product]:
    """The Items of a STAC Item or ItemCollection JSON, or of every such JSON in a folder, sorted by date (an Item
    whose assets lie in an EOPF Zarr product as that :class:`~skysense.data.products.sentinel2.S2Product`).

    Raises:
        InputError: a JSON that is not a STAC Item/ItemCollection, or an Item without band assets.
    """
    import pystac

    path = Path(path)
    sources = sorted(p for p in path.glob("*.json") if not is_litter(p)) if path.is_dir() else [path]
    items: list[StacItem | S2Product] = []
    skipped: list[str] = []  # a folder's other JSON files (tileinfo_metadata.json, …)
    for source in sources:
        try:
            parsed = _stac_items(source)
        except (ValueError, KeyError, AttributeError, pystac.STACError) as err:
            if len(sources) > 1:
                skipped.append(f"{source.name} ({err})")
                continue
            raise InputError(f"{source}: not a STAC Item or ItemCollection ({err}); give the Items' JSON") from None
        items += [_item(item, source) for item in parsed]
    if not items:
        found = f" ({'; '.join(skipped)})" if skipped else ""
        raise InputError(f"{path}: no STAC Item JSON found{found}")
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} JSON files that are no STAC Item: {', '.join(skipped)}",
                      stacklevel=2)  # fmt: skip
    return sorted(items, key=lambda i: (i.date, i.name))


def _stac_items(source: Path) -> list:
    """The pystac Items of an Item or ItemCollection JSON.

    Raises:
        ValueError: a JSON of another type (or not JSON); pystac's errors for a malformed Item.
    """
    import pystac

    kind = json.loads(source.read_text()).get("type")
    if kind == "Feature":
        return [pystac.Item.from_file(str(source))]
    if kind == "FeatureCollection":
        return list(pystac.ItemCollection.from_file(str(source)))
    raise ValueError(f"type {kind!r}")


_RASTERS = (".tif", ".tiff", ".jp2", ".vrt")


def is_stac_path(path: Path) -> bool:
    """A ``.json`` file; a folder holding ``.json`` files and no rasters; or a folder of STAC Items saved beside
    the rasters they describe (``stac-asset download``: ``item.json`` with hrefs ``./B04.tif``), where every raster
    of the folder is an asset of one of its Items. A scene folder whose Item points at its original remote assets
    (Earth Search's) is not: its bands are read as the scene's product."""
    if path.is_file():
        return path.suffix.lower() == ".json"
    if not path.is_dir():
        return False
    jsons = [p for p in path.glob("*.json") if not is_litter(p)]
    if not jsons:
        return False
    rasters = [p for p in path.iterdir() if p.suffix.lower() in _RASTERS and p.is_file() and not is_litter(p)]
    if not rasters:
        return True
    assets = _local_assets(jsons)
    return all(Path(os.path.abspath(p)) in assets for p in rasters)


def _local_assets(jsons: Sequence[Path]) -> set[Path]:
    """The local files the STAC Items and ItemCollections among ``jsons`` point at (other JSONs are skipped)."""
    import pystac

    found: set[Path] = set()
    for source in jsons:
        try:
            items = _stac_items(source)
        except (ValueError, KeyError, AttributeError, OSError, pystac.STACError):
            continue
        for item in items:
            for asset in item.assets.values():
                href = _gdal_path(asset.get_absolute_href() or asset.href)
                if not href.startswith("/vsi"):
                    found.add(Path(os.path.abspath(href)))
    return found
