"""STAC Items as Sentinel inputs: an Item or ItemCollection JSON (or a folder of them), parsed with ``pystac``,
one date per Item, its per-band assets read onto any grid.

- **Bands** from each asset's ``eo:bands`` (STAC 1.1 ``bands``) ``common_name`` or ``name``, else the asset key
  (``B02``, ``red``, ``nir08``, ``vv``), through :func:`~skysense.data.sensors.canonical_band_name`; assets that
  are not single bands (``visual``, thumbnails, metadata) are skipped. A multi-band asset counts when every band
  is named.
- **Date** from ``properties.datetime`` (else ``start_datetime``).
- **Hrefs**: local paths (relative to the JSON) and ``file://`` are read as files; ``http(s)://`` through GDAL's
  ``/vsicurl?url=`` and ``s3://`` through ``/vsis3/`` when the user has network (no test needs it).
- **Sentinel-2 radiometry** to reflectance × 1e4: an asset's ``raster:bands`` ``scale``/``offset`` when given
  (reflectance = DN × scale + offset); else ``s2:processing_baseline`` ≥ 04.00 → offset −1000 on DN / 10000;
  else the sensing date decides, and the assumption is stated (as for SAFE products without metadata). The level
  comes from ``s2:product_type`` or the collection id; ``SCL`` assets are cloud masks, as in
  :mod:`skysense.data.products.sentinel2`.
- **Sentinel-1** (``sar:polarizations``, or ``vv``/``vh`` assets): values as stored (dB or linear: the sensor says).
- CRS: the assets' own (``proj:epsg``/``proj:code`` describe them; the files are read with their georeferencing).

Written on ``pystac`` rather than odc-stac: odc-stac loads an xarray cube of a whole area at one resolution, while
the tiled scene reader needs each Item as bands it can warp tile by tile onto the HR image's grid, with Sentinel-2
offsets and masks applied like a SAFE product's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

import numpy as np

from skysense.containers import Grid
from skysense.data.products.sentinel2 import SCL_INVALID, _assumed_radiometry
from skysense.data.raster import Raster, raster_info, reproject_to_grid
from skysense.data.sensors import canonical_band_name
from skysense.errors import InputError

_SKIP_ROLES = {"visual", "thumbnail", "overview", "metadata"}
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

    @property
    def rasters(self) -> list[str]:
        return sorted({b.path for b in self.bands.values()} | ({self.mask} if self.mask else set()))

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
                    plane = (plane * asset.scale + (asset.offset or 0.0)) * 10000.0
                else:
                    plane = plane + self.s2_offset
                plane = np.maximum(plane, 0.0, where=raster.valid[0], out=plane)
            values.append(plane)
            valid.append(raster.valid[0])
        values_array, valid_array = np.stack(values).astype(np.float32), np.stack(valid)
        if self.mask is not None:
            scl = reproject_to_grid(self.mask, grid.crs, grid.transform, grid.shape, "nearest")
            valid_array &= (scl.valid[0] & ~np.isin(scl.values[0], SCL_INVALID))[None]
        values_array[~valid_array] = np.nan
        return Raster(values_array, valid_array, tuple(wanted), grid.crs, grid.transform, self.source)


def _gdal_path(href: str) -> str:
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https"):  # GDAL's "/vsicurl?url=" form: the path layer (pathlib) keeps it whole,
        return f"/vsicurl?url={quote(href, safe='')}"  # where it folds the "//" of "/vsicurl/https://…"
    if parsed.scheme == "s3":
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    if parsed.scheme == "file":
        return parsed.path
    return href


def _asset_bands(key: str, asset) -> list[tuple[str, int, dict]]:
    """(canonical band, 1-based index, raster:bands entry) for each band of an asset it names; [] when not all of
    its bands are named."""
    extra = asset.extra_fields
    described = extra.get("eo:bands") or extra.get("bands") or []
    raster_bands = extra.get("raster:bands") or [{} for _ in described] or [{}]
    if described:
        names = [canonical_band_name(b.get("common_name")) or canonical_band_name(b.get("name")) for b in described]
        if not all(names):
            return []
        return [(n, i, raster_bands[i - 1] if i - 1 < len(raster_bands) else {}) for i, n in enumerate(names, 1)]
    name = canonical_band_name(key)
    return [(name, 1, raster_bands[0] if raster_bands else {})] if name else []


def _item(item, source: Path) -> StacItem:
    properties = item.properties
    when = item.datetime or dt.datetime.fromisoformat(str(properties.get("start_datetime")).replace("Z", "+00:00"))
    date = when.date()
    bands: dict[str, BandAsset] = {}
    mask, files = None, [source]
    for key, asset in item.assets.items():
        roles = set(asset.roles or [])
        if roles & _SKIP_ROLES and "data" not in roles:
            continue
        if asset.media_type and not any(asset.media_type.startswith(t) for t in _RASTER_TYPES):
            continue
        path = _gdal_path(asset.get_absolute_href() or asset.href)
        if not path.startswith("/vsi") and not Path(path).is_absolute():  # relative to the JSON (no self link)
            path = str(source.parent / path)
        if not path.startswith("/vsi"):
            files.append(Path(path))
        if key.upper() == "SCL":
            mask = path
            continue
        for band, index, raster in _asset_bands(key, asset):
            bands.setdefault(
                band, BandAsset(path, index, raster.get("scale"), raster.get("offset"), raster.get("nodata"))
            )
    if not bands:
        raise InputError(f"{source}: STAC Item {item.id} has no band assets (keys {list(item.assets)}); give Items "
                         "whose assets are single bands named by eo:bands or by their keys")  # fmt: skip
    product_type = str(properties.get("s2:product_type", "")) + " " + str(item.collection_id or "")
    level = "L2A" if "2A" in product_type.upper() else "L1C" if "1C" in product_type.upper() else ""
    assumptions: list[str] = []
    s2_offset = 0.0
    if any(b.startswith("B") and a.scale is None for b, a in bands.items()):
        baseline = properties.get("s2:processing_baseline")
        if baseline is not None:
            s2_offset = -1000.0 if float(baseline) >= 4.0 else 0.0
        else:
            _, offsets, assumption = _assumed_radiometry(date)
            s2_offset = offsets.get("B2", 0.0)
            assumptions.append(assumption.replace("no product metadata (MTD_MSIL*.xml)", "no s2:processing_baseline"))
    sensor = {"L1C": "s2_l1c", "L2A": "s2_l2a"}.get(level)
    return StacItem(item.id, source, date, bands, mask, sensor, level, s2_offset, tuple(files), tuple(assumptions))


def read_stac(path: str | Path) -> list[StacItem]:
    """The Items of a STAC Item or ItemCollection JSON, or of every such JSON in a folder, sorted by date.

    Raises:
        InputError: a JSON that is not a STAC Item/ItemCollection, or an Item without band assets.
    """
    import pystac

    path = Path(path)
    sources = sorted(path.glob("*.json")) if path.is_dir() else [path]
    items: list[StacItem] = []
    for source in sources:
        try:
            kind = json.loads(source.read_text()).get("type")
            if kind == "Feature":
                parsed = [pystac.Item.from_file(str(source))]
            elif kind == "FeatureCollection":
                parsed = list(pystac.ItemCollection.from_file(str(source)))
            else:
                raise ValueError(f"type {kind!r}")
        except (ValueError, KeyError, pystac.STACError) as err:
            raise InputError(f"{source}: not a STAC Item or ItemCollection ({err}); give the Items' JSON") from None
        items += [_item(item, source) for item in parsed]
    if not items:
        raise InputError(f"{path}: no STAC Item JSON found")
    return sorted(items, key=lambda i: (i.date, i.name))


def is_stac_path(path: Path) -> bool:
    """A ``.json`` file, or a folder holding ``.json`` files and no rasters."""
    if path.is_file():
        return path.suffix.lower() == ".json"
    return path.is_dir() and any(path.glob("*.json")) and not any(
        p.suffix.lower() in (".tif", ".tiff", ".jp2", ".vrt") for p in path.iterdir()
    )  # fmt: skip
