"""Sentinel-2 L1C and L2A products in ESA's EOPF Zarr format, as the Copernicus Data Space and the EOPF Sentinel Zarr
Samples service distribute them (``S2B_MSIL2A_20250101T100309_N0511_R122_T32TQM_20250101T121816.zarr``, a folder or
its ``.zarr.zip``).

The product is a Zarr group tree (format 2 with consolidated ``.zmetadata``, as EOPF writes it today; format 3 where
GDAL decodes its codecs, else refused naming the conversion): the bands are 2-D arrays
``measurements/reflectance/r10m|r20m|r60m/b01 … b12, b8a`` (uint16 digital counts; the same band resampled into the
coarser groups too), each group with its pixel-centre coordinates ``x`` and ``y``; the L2A scene classification is
``conditions/mask/l2a_classification/r20m/scl``, the L1C cloud mask ``conditions/mask/l1c_classification/r60m/b00``
(bit flags: opaque clouds, cirrus, snow and ice). Each band is read at its native resolution (10 m: B2 B3 B4 B8; 20 m:
B5 B6 B7 B8A B11 B12; 60 m: B1 B9 B10), the finest copy where the native one is missing, so that no band is read from
a resampled copy.

- **Values.** The arrays' CF attributes (``scale_factor``, ``add_offset``, ``_FillValue``; or the same keys under
  ``_eopf_attrs``) give the reflectance: ``DN × scale_factor + add_offset`` (``0.0001`` and ``-0.1`` since processing
  baseline 04.00), and become the product's quantification (``1 / scale_factor``) and offset (``add_offset /
  scale_factor`` DN) as in a SAFE product's metadata. Without them the assumption by date is stated, as for a SAFE
  product without ``MTD_MSIL*.xml``. Float arrays without a scale are taken as reflectance.
- **Georeferencing.** GDAL's Zarr driver derives the grid from ``x``/``y``; the CRS comes from the attributes EOPF
  writes (``proj:epsg``/``proj:code`` on the arrays, ``other_metadata.horizontal_CRS_code`` or
  ``stac_discovery.properties.proj:epsg``/``proj:code`` on the root) and is given to GDAL with a ``vrt://`` connection
  string (``vrt://ZARR:"product.zarr":/measurements/reflectance/r10m/b02?a_srs=EPSG:32632``), so every band stays an
  ordinary GDAL raster for windows, warps and the block cache.
- **Date** from ``stac_discovery.properties`` (``start_datetime``, ``datetime``), else the product name; **tile** from
  the name.

Written by hand because neither GDAL (no CRS from EOPF's attributes) nor ``xarray-eopf`` (not installable here, and
it resamples whole products through dask) turns a product into the per-band rasters the scene reader windows.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from skysense.data.products.sentinel2 import (
    _PRODUCT_NAME,
    BANDS,
    S2Product,
    _assumed_radiometry,
    band_code,
    processing_baseline,
)
from skysense.errors import InputError

NATIVE_RESOLUTION = {"B1": 60, "B9": 60, "B10": 60, "B5": 20, "B6": 20, "B7": 20, "B8A": 20, "B11": 20, "B12": 20}
RESOLUTION_GROUPS = ("r10m", "r20m", "r60m")
REFLECTANCE = "measurements/reflectance"
L2A_CLASSIFICATION = "conditions/mask/l2a_classification"
L1C_CLASSIFICATION = "conditions/mask/l1c_classification"
L1C_INVALID_FLAGS = ("OPAQUE", "CIRRUS")  # the L1C mask's flags that make a pixel invalid (snow and ice stay valid)
L1C_DEFAULT_BITS = 0b11  # opaque clouds (1) and cirrus (2) when the mask states no flag_masks
_BAND_ARRAY = re.compile(r"^b(?:0[1-9]|1[0-2]|8a)$")
_METADATA_FILES = (".zmetadata", ".zgroup", ".zattrs", "zarr.json")


def is_eopf_zarr(path: Path) -> bool:
    """Whether ``path`` is an EOPF Zarr product: a ``*.zarr`` folder with Zarr metadata, or a ``*.zarr.zip``."""
    name = path.name.lower()
    if name.endswith(".zarr.zip"):
        return path.is_file()
    return name.endswith(".zarr") and path.is_dir() and any((path / m).is_file() for m in _METADATA_FILES)


def _gdal_url(url: str) -> str | None:
    """GDAL's path of a product URL (``/vsicurl/`` for http(s), ``/vsis3/`` for s3), or None for a local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return f"/vsicurl/{url}"
    if parsed.scheme == "s3":
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    return None


def _open_root(path: Path | str) -> tuple[Any, str]:
    """(the product's root zarr group, the GDAL path of that root) of a ``.zarr`` folder, a ``.zarr.zip``, or a
    product URL (http(s), s3: the metadata through fsspec, the pixels through GDAL's ``/vsicurl/``/``/vsis3/``)."""
    try:
        import zarr
    except ImportError:
        raise InputError(
            f"{path}: an EOPF Zarr product; reading its metadata needs the zarr package: pip install 'skysense[zarr]'"
        ) from None

    remote = _gdal_url(str(path))
    if remote is not None:
        try:  # the consolidated metadata in one request where the product has it
            return zarr.open_group(str(path), mode="r"), remote
        except Exception as err:  # noqa: BLE001 - fsspec and zarr raise many kinds for an unreachable store
            raise InputError(
                f"{path}: cannot read the remote Zarr product ({type(err).__name__}: {err}); check the address and "
                "the network, or download the product and give the .zarr folder"
            ) from None
    path = Path(path)
    if path.is_dir():
        store, gdal_root, prefix = str(path), str(path.resolve()), ""
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise InputError(f"{path}: not a readable zip ({err}); download the product again") from None
        roots = sorted(
            (n.rsplit("/", 1)[0] if "/" in n else "" for n in names if n.rsplit("/", 1)[-1] in _METADATA_FILES),
            key=len,
        )
        if not roots:
            raise InputError(f"{path}: a zip without Zarr metadata (.zmetadata, zarr.json); download the product again")
        prefix = roots[0]
        store = zarr.storage.ZipStore(path, mode="r")
        gdal_root = f"/vsizip/{{{path.resolve()}}}" + (f"/{prefix}" if prefix else "")
    try:  # the consolidated metadata when the product has it (EOPF's .zmetadata), else group by group
        root = zarr.open_group(store, path=prefix, mode="r")
    except Exception as err:  # noqa: BLE001 - zarr raises many kinds for a broken store
        raise InputError(
            f"{path}: not a readable Zarr product ({type(err).__name__}: {err}); download it again"
        ) from None
    return root, gdal_root


def _group(root: Any, path: str) -> Any | None:
    try:
        return root[path]
    except KeyError:
        return None


def _attrs(node: Any) -> dict[str, Any]:
    """A node's attributes with EOPF's ``_eopf_attrs`` merged under the CF ones."""
    attrs = dict(node.attrs)
    eopf = attrs.get("_eopf_attrs")
    return {**eopf, **attrs} if isinstance(eopf, Mapping) else attrs


def _epsg(*attribute_sets: Mapping[str, Any]) -> str | None:
    """``EPSG:n`` from the first attribute set that states a CRS (``proj:epsg``, ``proj:code``,
    ``horizontal_CRS_code``)."""
    for attrs in attribute_sets:
        for key in ("proj:epsg", "proj:code", "horizontal_CRS_code"):
            value = attrs.get(key)
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                return f"EPSG:{int(value)}"
            if isinstance(value, str) and re.fullmatch(r"EPSG:\d+", value.strip(), re.IGNORECASE):
                return value.strip().upper()
    return None


def _sensing(properties: Mapping[str, Any], name_date: dt.date | None) -> dt.date | None:
    for key in ("start_datetime", "datetime"):
        value = properties.get(key)
        if isinstance(value, str) and len(value) >= 10:
            try:
                return dt.date.fromisoformat(value[:10])
            except ValueError:
                continue
    return name_date


def _radiometry(arrays: Mapping[str, Any], date: dt.date, name: str) -> tuple[float, dict[str, float], tuple[str, ...]]:
    """(quantification, offsets in DN per band, assumptions) from the band arrays' scale and offset attributes."""
    scales, offsets = {}, {}
    for code, array in arrays.items():
        attrs = _attrs(array)
        scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
        if scale is None and np.dtype(array.dtype).kind == "f":
            scale, offset = 1.0, offset or 0.0  # decoded reflectance
        if scale is not None:
            scales[code] = float(scale)
            offsets[code] = float(offset or 0.0) / float(scale)
    if not scales:
        named = Path(name).name  # the product's name holds its baseline (…_N0511_…)
        baseline = processing_baseline({}, named) if _PRODUCT_NAME.search(named) else None
        quantification, assumed, assumption = _assumed_radiometry(date, baseline)
        return quantification, assumed, (assumption.replace("MTD_MSIL*.xml", "scale_factor/add_offset"),)
    if len(set(scales.values())) > 1 or len(scales) < len(arrays):
        missing = sorted(set(arrays) - set(scales))
        raise InputError(
            f"{name}: the bands' scale_factor differ ({scales}{f', none for {missing}' if missing else ''}); "
            "this reader takes one scale per product: re-download the product"
        )
    return 1.0 / next(iter(scales.values())), offsets, ()


def _l1c_invalid_bits(attrs: Mapping[str, Any]) -> int:
    """The bits of the L1C mask that flag opaque clouds and cirrus, from its ``flag_masks``/``flag_meanings``."""
    masks, meanings = attrs.get("flag_masks"), attrs.get("flag_meanings")
    if isinstance(meanings, str):
        meanings = meanings.split()
    if not masks or not meanings or len(masks) != len(meanings):
        return L1C_DEFAULT_BITS
    bits = 0
    for mask, meaning in zip(masks, meanings, strict=True):
        if any(flag in str(meaning).upper() for flag in L1C_INVALID_FLAGS):
            bits |= int(mask)
    return bits or L1C_DEFAULT_BITS


def read_eopf_s2(path: str | Path, found_as: Path | None = None) -> S2Product:
    """The Sentinel-2 product of an EOPF Zarr ``.zarr`` folder or ``.zarr.zip`` (see the module docstring), or of a
    product's URL (``https://…/S2C_MSIL2A_….zarr``, ``s3://…``: read over the network, as the STAC Items of the EOPF
    catalogue point at it).

    Args:
        found_as: what the product was found as (its STAC Item's JSON), for the product's ``source``; default the
            product itself.

    Raises:
        InputError: not a readable Zarr product, no Sentinel-2 band arrays, no CRS in its attributes, or bands of
        different scales; each naming the product and what to do.
    """
    url = str(path) if _gdal_url(str(path)) is not None else None
    root, gdal_root = _open_root(url or Path(path))
    name = url.rstrip("/").rsplit("/", 1)[-1] if url else Path(path).name
    path = url or Path(path)  # what messages name
    root_attrs = dict(root.attrs)
    stac = root_attrs.get("stac_discovery") if isinstance(root_attrs.get("stac_discovery"), Mapping) else {}
    properties = stac.get("properties", {}) if isinstance(stac.get("properties"), Mapping) else {}
    other = root_attrs.get("other_metadata") if isinstance(root_attrs.get("other_metadata"), Mapping) else {}
    stem = name[: -len(".zip")] if name.lower().endswith(".zip") else name
    stem = stem[: -len(".zarr")] if stem.lower().endswith(".zarr") else stem
    named = _PRODUCT_NAME.search(stem)
    product_type = str(properties.get("product:type", ""))
    level = named["level"] if named else "L2A" if "L2A" in product_type else "L1C" if "L1C" in product_type else None
    date = _sensing(properties, dt.datetime.strptime(named["date"], "%Y%m%d").date() if named else None)
    if level is None or date is None:
        raise InputError(
            f"{path}: a Zarr product that does not say it is Sentinel-2 MSI L1C or L2A, or when it was sensed (no "
            "S2x_MSIL1C_/S2x_MSIL2A_ product name, stac_discovery product:type or datetime); keep the product's name"
        )
    found: dict[str, tuple[int, Any, str]] = {}  # band → (rank, array, GDAL path of its array)
    reflectance = _group(root, REFLECTANCE)
    for resolution_group in RESOLUTION_GROUPS if reflectance is not None else ():
        group = _group(reflectance, resolution_group)
        if group is None:
            continue
        resolution = int(resolution_group[1:-1])
        for array_name, array in group.arrays():
            if not _BAND_ARRAY.match(array_name) or len(array.shape) != 2:
                continue
            code = band_code(array_name)
            rank = (resolution != NATIVE_RESOLUTION.get(code, 10), resolution)  # native first, then finest
            if code not in found or rank < found[code][0]:
                found[code] = (rank, array, f"/{REFLECTANCE}/{resolution_group}/{array_name}")
    if not found:
        raise InputError(
            f"{path}: no Sentinel-2 band arrays under {REFLECTANCE}/r10m|r20m|r60m (b01 … b12, b8a); is this a "
            "Sentinel-2 MSI product?"
        )
    arrays = {code: entry[1] for code, entry in found.items()}
    crs = _epsg(*(_attrs(a) for a in arrays.values()), other, properties)
    if crs is None:
        raise InputError(
            f"{path}: no CRS in the product's attributes (proj:epsg / proj:code on the bands, "
            "other_metadata.horizontal_CRS_code, stac_discovery proj:epsg); re-download the product"
        )

    def gdal_path(array_path: str) -> str:
        return f'vrt://ZARR:"{gdal_root}":{array_path}?a_srs={crs}'

    quantification, offsets, assumptions = _radiometry(arrays, date, str(path))
    bands = {code: gdal_path(found[code][2]) for code in BANDS if code in found}
    if getattr(root.metadata, "zarr_format", 2) == 3:
        _check_gdal_reads(next(iter(bands.values())), path)
    mask, mask_kind, mask_bits = None, "esa", 0
    candidates = (
        [(L2A_CLASSIFICATION, g, "scl") for g in ("r20m", "r60m", "r10m")]
        if level == "L2A"
        else [(L1C_CLASSIFICATION, g, "b00") for g in ("r60m", "r20m", "r10m")]
    )
    for group_path, resolution_group, array_name in candidates:
        group = _group(root, f"{group_path}/{resolution_group}")
        if group is not None and array_name in group:
            mask = gdal_path(f"/{group_path}/{resolution_group}/{array_name}")
            if level == "L1C":
                mask_kind, mask_bits = "bits", _l1c_invalid_bits(_attrs(group[array_name]))
            break
    if mask is None:
        mask_name = "l2a_classification scl" if level == "L2A" else "l1c_classification b00"
        assumptions = (*assumptions, f"no cloud mask ({mask_name}): only the fill value is invalid")
    if url:
        files: tuple[Path, ...] = (found_as,) if found_as else ()  # on disk: the Item's JSON at most
    elif path.is_file():
        files = (path,)
    else:
        files = tuple(sorted(p for p in path.rglob("*") if p.is_file() and _used(p, path)))
    tile = named.group("tile") if named else str(properties.get("grid:code", "unknown")).replace("MGRS-", "T")
    source = found_as or (Path(name) if url else path)
    return S2Product(stem, level, date, tile, bands, quantification, offsets, mask, source, files, assumptions,
                     mask_kind, mask_bits)  # fmt: skip


def _check_gdal_reads(band: str, path: Path | str) -> None:
    """Refuse a Zarr format 3 product whose codecs this GDAL does not decode (GDAL 3.10 lacks format 3's ``bytes``
    codec), in one line, instead of at the first tile."""
    import rasterio

    from skysense.data.raster import raster_info
    from skysense.data.raster.info import UnreadableRaster

    try:
        raster_info(band)
    except UnreadableRaster as err:
        raise InputError(
            f"{path}: a Zarr format 3 product that GDAL {rasterio.__gdal_version__} cannot decode ({err.problem}); "
            "use a rasterio built on a newer GDAL, or convert the product to Zarr format 2 (xarray: "
            "open_datatree(product, engine='zarr').to_zarr('product_v2.zarr', zarr_format=2))"
        ) from None


def _used(file: Path, product: Path) -> bool:
    """Whether a file of a product folder is read: the Zarr metadata, and the arrays of the bands and masks."""
    parts = file.relative_to(product).parts
    return len(parts) == 1 or "/".join(parts[:2]) in (REFLECTANCE, "conditions/mask")
