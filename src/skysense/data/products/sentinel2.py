"""Sentinel-2 L1C and L2A products as ESA distributes them, read band by band onto any grid.

Accepted layouts (:func:`find_s2_products`):

- a ``.SAFE`` folder (``GRANULE/<granule>/IMG_DATA/*.jp2``; L2A: ``IMG_DATA/R10m|R20m|R60m``), or the ``.SAFE.zip``
  as downloaded, read inside the zip through GDAL's ``/vsizip/`` (nothing is extracted);
- a granule's ``IMG_DATA`` folder (or ``R10m``/``R20m``/``R60m``), or any folder of loose per-band files with
  product names (``T33UUU_20170216T102101_B01.jp2``, L2A ``…_B02_10m.jp2``; ``.jp2``, ``.tif``, ``.tiff``), grouped
  into one product per tile and sensing time;
- a scene folder of bare band names (``B01.tif`` … ``B12.tif``, ``B8A``, ``SCL``; ``.tif``/``.jp2``) whose name says
  the scene: Earth Search's COG folders (``S2B_30SYH_20220917_0_L2A/``, offsets from the scene's STAC Item JSON when
  it is saved there), a product name without ``.SAFE``, or AWS's ``tiles/30/S/YH/2022/9/17/0/`` layout (L2A:
  ``R10m``/``R20m``/``R60m``; L1C ``qi/MSK_CLASSI_B00.jp2``). Bare band names in a folder that names no scene are
  refused (:func:`refuse_unnamed_band_files`): read one by one they would be one-band dates;
- a product from before the compact naming of December 2016 (``S2A_OPER_PRD_MSIL1C_PDMC_…_V20160208T104652_…``,
  folder or zip): bands named for their granule (``S2A_OPER_MSI_L1C_TL_SGS__<processed>_A…_T31TCJ_B01.jp2``), the
  sensing time from the product's name, the metadata from ``S2A_OPER_MTD_SAFL1C_….xml``; and Sen2Cor's L2A of such a
  product (``S2A_USER_PRD_MSIL2A_PDMC_…``: ``IMG_DATA/R10m/S2A_USER_MSI_L2A_TL_…_B02_10m.jp2``, the scene
  classification ``IMG_DATA/S2A_USER_SCL_L2A_TL_…_20m.jp2``, ``L2A_BOA_QUANTIFICATION_VALUE`` in
  ``S2A_USER_MTD_SAFL2A_….xml``);
- a NASA HLS v2 S30 granule (``HLS.S30.T30SYH.2022260T105619.v2.0.B02.tif``, ``….Fmask.tif``): harmonised surface
  reflectance × 1e4 with no offset at any date, the Fmask's cloud, adjacent-cloud and shadow bits invalid. HLS L30
  (Landsat OLI band numbers) is refused;
- an EOPF Zarr product (``….zarr`` folder or ``.zarr.zip``): read by :mod:`skysense.data.products.eopf` into the same
  :class:`S2Product`.

Each product is one date: its bands are identified by their B-codes (``B1``…``B12``, ``B8A``; zero-padded or not),
at the finest resolution present, and read onto the target grid with bilinear resampling (reflectance; masks use
nearest), in the order asked (the sensor's). Values are returned as reflectance × 1e4, the unit of
:mod:`skysense.data.sensors`:

    reflectance × 1e4 = (DN + offset) × 10000 / quantification

with the quantification value (``QUANTIFICATION_VALUE``, L2A ``BOA_QUANTIFICATION_VALUE``) and, since processing
baseline 04.00 (25 January 2022), the per-band offset (``RADIO_ADD_OFFSET``, L2A ``BOA_ADD_OFFSET``, −1000) from the
product's ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` (looked up in the folders above a loose ``IMG_DATA`` too).
Without the metadata the assumption is stated (:attr:`S2Product.assumptions`): quantification 10000, and an offset
of −1000 for products sensed on or after 2022-01-25, 0 before. DN 0 is nodata; a value the offset makes negative
(dark water, noise) is clipped to 0.

Validity: DN 0, and the product's cloud mask where it has one — L2A scene classification ``SCL`` (no data,
saturated/defective, cloud shadow, medium and high cloud probability, thin cirrus are invalid), L1C ``MSK_CLASSI``
(baseline ≥ 04.00: opaque clouds and cirrus are invalid) — read with nearest resampling. Invalid pixels count like
nodata everywhere downstream (frames below the valid fraction are dropped, pixels masked).

Written by hand because GDAL's SENTINEL2 driver exposes the product as subdatasets per resolution without the
offsets or masks applied, and neither rioxarray nor odc-stac reads a SAFE folder or zip.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skysense.containers import Grid
from skysense.data.raster import Raster, raster_info, reproject_to_grid
from skysense.data.raster.litter import is_litter
from skysense.errors import InputError

BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
# the band_id of the MTD files' per-band lists (Spectral_Information order)
_BAND_IDS = {str(i): band for i, band in enumerate(BANDS)}
OFFSET_BASELINE_DATE = dt.date(2022, 1, 25)  # processing baseline 04.00: offsets of -1000 from this date
SCL_INVALID = (0, 1, 3, 8, 9, 10)  # no data, saturated/defective, cloud shadow, cloud medium/high, thin cirrus
MSK_CLASSI_INVALID_BANDS = (1, 2)  # opaque clouds, cirrus (band 3 is snow/ice: valid)
FMASK_INVALID_BITS = 0b1110  # HLS v2 Fmask: bit 1 cloud, bit 2 adjacent to cloud/shadow, bit 3 cloud shadow

_PRODUCT_NAME = re.compile(
    r"S2[A-D]_MSI(?P<level>L1C|L2A)_(?P<date>\d{8})T\d{6}_N\d{4}_R\d{3}_(?P<tile>T\d{2}[A-Z]{3})_"
)
_BAND_FILE = re.compile(
    r"(?:^|_)(?P<tile>T\d{2}[A-Z]{3})_(?P<time>\d{8}T\d{6})_(?P<band>B(?:0?[1-9]|1[0-2]|8A)|SCL)(?:_(?P<res>\d{2})m)?"
    r"\.(?:jp2|tif|tiff)$",
    re.IGNORECASE,
)
_SAFE_SUFFIX = re.compile(r"\.SAFE(?:\.zip)?$", re.IGNORECASE)  # S2A_….SAFE, ….SAFE.zip, ….safe (any case)
_MASK_FILE = re.compile(r"MSK_CLASSI_B00\.(?:jp2|tif|tiff)$", re.IGNORECASE)
# product metadata: MTD_MSIL1C.xml / MTD_MSIL2A.xml, and before December 2016 S2A_OPER_MTD_SAFL1C_PDMC_….xml
_METADATA = re.compile(r"(?:MTD_MSIL(?:1C|2A)|_(?:OPER|USER)_MTD_SAFL(?:1C|2A)_[^/]*)\.xml$")
# products before the compact naming of December 2016: bands named for their granule, sensing time in the product's
# name (S2A_OPER_PRD_MSIL1C_PDMC_20160209T133227_R051_V20160208T104652_20160208T104652.SAFE); Sen2Cor's L2A of such a
# product is a USER product (S2A_USER_PRD_MSIL2A_PDMC_…: bands IMG_DATA/R10m/S2A_USER_MSI_L2A_TL_…_B02_10m.jp2, the
# scene classification IMG_DATA/S2A_USER_SCL_L2A_TL_…_20m.jp2, metadata S2A_USER_MTD_SAFL2A_….xml)
_OLD_BAND_FILE = re.compile(
    r"^S2[A-D]_(?:OPER|USER)_(?P<kind>MSI|SCL)_(?P<level>L1C|L2A)_TL_\w{4}_\d{8}T\d{6}_A\d{6}_"
    r"(?P<tile>T\d{2}[A-Z]{3})(?:_(?P<band>B(?:0[1-9]|1[0-2]|8A)))?(?:_(?P<res>\d{2})m)?\.(?:jp2|tif)$"
)
_OLD_PRODUCT = re.compile(
    r"S2[A-D]_(?:OPER|USER)_PRD_MSI(?P<level>L1C|L2A)_\w{4}_\d{8}T\d{6}_R\d{3}_V(?P<time>\d{8}T\d{6})_"
)
# bare band names in a folder named for one scene (Earth Search's COGs, AWS's tiles/ layout): B04.tif, SCL_20m.jp2
_BARE_BAND_FILE = re.compile(
    r"^(?P<band>B(?:0?[1-9]|1[0-2]|8A)|SCL)(?:_(?P<res>\d{2})m)?\.(?:jp2|tif|tiff)$", re.IGNORECASE
)
# NASA HLS v2 granules: HLS.S30.T30SYH.2022260T105619.v2.0.B02.tif (S30: Sentinel-2; L30, Landsat, is not read)
_HLS_FILE = re.compile(
    r"^HLS\.(?P<sensor>S30|L30)\.(?P<tile>T\d{2}[A-Z]{3})\.(?P<year>\d{4})(?P<doy>\d{3})T(?P<hms>\d{6})\.v\d+\.\d+"
    r"\.(?P<band>B\d{2}|B8A|Fmask)\.tif$",
    re.IGNORECASE,
)
_EARTH_SEARCH_SCENE = re.compile(r"^S2[A-D]_(?P<tile>\d{1,2}[A-Z]{3})_(?P<date>\d{8})_\d+_(?P<level>L1C|L2A)$")
_AWS_TILE_PATH = re.compile(
    r"(?:^|/)tiles/(?P<zone>\d{1,2})/(?P<band>[C-X])/(?P<square>[A-Z]{2})/(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})"
    r"/(?P<seq>\d+)(?:/|$)"
)


def band_code(name: str) -> str:
    """ "B02" → "B2", "b8a" → "B8A"."""
    name = name.strip().upper()
    return "B" + name[1:].lstrip("0") if name.startswith("B") and name[1:2].isdigit() else name


@dataclass(frozen=True)
class S2Product:
    """One Sentinel-2 acquisition (a tile at a sensing time) as per-band files.

    Attributes:
        name: the product or granule name (for messages).
        level: "L1C" or "L2A".
        date: sensing date.
        tile: MGRS tile, e.g. "T33UUU".
        bands: band code (:data:`BANDS`) → GDAL path of its finest-resolution file.
        quantification: digital numbers per unit reflectance (10000).
        offsets: band code → radiometric offset added to the DN before dividing (−1000 since baseline 04.00).
        mask: GDAL path of the cloud mask (L2A ``SCL`` or L1C ``MSK_CLASSI``), or None.
        source: what the product was found as (a ``.SAFE`` folder, a zip, a folder of band files).
        files: the files on disk that make up the product (for fingerprints; the zip for a zipped product).
        assumptions: what was assumed where the metadata is missing (one phrase each).
    """

    name: str
    level: str
    date: dt.date
    tile: str
    bands: dict[str, str]
    quantification: float
    offsets: dict[str, float]
    mask: str | None
    source: Path
    files: tuple[Path, ...]
    assumptions: tuple[str, ...] = field(default=())
    mask_kind: str = "esa"  # "esa": L2A SCL classes / L1C MSK_CLASSI; "fmask": HLS's Fmask bits; "bits": mask_bits
    mask_bits: int = 0  # mask_kind "bits": the flags that make a pixel invalid (an EOPF L1C mask's opaque and cirrus)

    @property
    def sensor(self) -> str:
        """The :data:`skysense.data.sensors.SENSORS` key of this product's values."""
        return "s2_l1c" if self.level == "L1C" else "s2_l2a"

    @property
    def rasters(self) -> list[str]:
        """Every GDAL path the product reads (bands and mask)."""
        return [*self.bands.values(), *([self.mask] if self.mask else [])]

    def grid(self) -> Grid:
        """The product's 10 m grid (the grid of its finest band)."""
        finest = min(self.bands.values(), key=lambda path: raster_info(path).res[0])
        return raster_info(finest).grid

    def read(self, grid: Grid, bands: Sequence[str], resampling: str = "bilinear") -> Raster:
        """``bands`` (codes, any padding) onto ``grid`` as reflectance × 1e4, with validity (DN 0 and the cloud mask).

        Returns:
            :class:`~skysense.data.raster.Raster`: values (C, H, W) float32, NaN where invalid; valid (C, H, W).

        Raises:
            InputError: a band the product does not have, naming the product and the bands it has.
        """
        codes = [band_code(b) for b in bands]
        missing = [b for b in codes if b not in self.bands]
        if missing:
            from skysense.data.sensors import get_sensor

            has = ", ".join(b for b in BANDS if b in self.bands)
            if set(missing) <= set(get_sensor(self.sensor).bands):  # bands its own level has: files are missing
                fix = "the product is incomplete: re-download it"
            else:
                fix = f"use the sensor of its level (--s2-sensor {self.sensor})"
            raise InputError(
                f"{self.source}: the {self.level} product {self.name} has no band {', '.join(missing)} (it has {has}); "
                f"{fix}"
            )
        by_grid: dict[Grid, list[str]] = {}  # bands of one resolution are put onto the grid in one warp
        for code in codes:
            by_grid.setdefault(raster_info(self.bands[code]).grid, []).append(code)
        planes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for group in by_grid.values():
            paths = [self.bands[code] for code in group]
            raster = reproject_to_grid(paths, grid.crs, grid.transform, grid.shape, resampling, nodata=0)
            planes.update((code, (raster.values[i], raster.valid[i])) for i, code in enumerate(group))
        values, valid = [], []
        for code in codes:
            plane, ok = planes[code]
            scaled = (plane + self.offsets.get(code, 0.0)) * (10000.0 / self.quantification)
            values.append(np.maximum(scaled, 0.0, where=ok, out=scaled))
            valid.append(ok)
        values_array, valid_array = np.stack(values).astype(np.float32), np.stack(valid)
        if self.mask is not None:
            valid_array &= self._mask_valid(grid)[None]
        values_array[~valid_array] = np.nan
        names = tuple(codes)
        return Raster(values_array, valid_array, names, grid.crs, grid.transform, Path(self.bands[codes[0]]))

    def _mask_valid(self, grid: Grid) -> np.ndarray:
        """(H, W) bool: False where the cloud mask says cloud, shadow, cirrus or no data."""
        raster = reproject_to_grid(self.mask, grid.crs, grid.transform, grid.shape, "nearest")
        if self.mask_kind == "bits":
            return clear_pixels(raster, "bits", self.mask_bits)
        kind = "fmask" if self.mask_kind == "fmask" else "scl" if self.level == "L2A" else "msk_classi"
        return clear_pixels(raster, kind)


def clear_pixels(mask: Raster, kind: str, bits: int = 0) -> np.ndarray:
    """(H, W) bool: True where a cloud mask read onto a grid (its first band) leaves a pixel clear — not flagged
    (:func:`cloud_flags`), and for SCL and Fmask inside the mask's valid pixels (their fill means no data); flags
    only ("bits", "msk_classi") count their fill value as clear."""
    flagged = cloud_flags(mask.values, kind, bits)
    return ~flagged if kind in ("bits", "msk_classi") else mask.valid[0] & ~flagged


def cloud_flags(values: np.ndarray, kind: str, bits: int = 0) -> np.ndarray:
    """(H, W) bool: True where a cloud mask's values (C, H, W) flag a pixel as invalid — ``kind`` "scl": L2A scene
    classes :data:`SCL_INVALID`; "fmask": HLS Fmask bits :data:`FMASK_INVALID_BITS`; "bits": the flags ``bits`` of
    one band (an EOPF L1C mask); "msk_classi": L1C ``MSK_CLASSI`` bands :data:`MSK_CLASSI_INVALID_BANDS` (its own
    nodata counts as clear)."""
    if kind in ("fmask", "bits"):  # Fmask bits 1-3: cloud, adjacent to cloud or shadow, cloud shadow
        flags = FMASK_INVALID_BITS if kind == "fmask" else bits
        return (np.nan_to_num(values[0]).astype(np.int64) & flags) != 0
    if kind == "scl":  # one band of classes
        return np.isin(values[0], SCL_INVALID)
    flagged = np.zeros(values.shape[1:], dtype=bool)
    for band in MSK_CLASSI_INVALID_BANDS:
        if band <= values.shape[0]:
            flagged |= np.nan_to_num(values[band - 1]) > 0
    return flagged


# --------------------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_metadata(text: str, source: str) -> tuple[str | None, float, dict[str, float], str | None]:
    """(level, quantification, offsets per band, processing baseline) from an ``MTD_MSIL1C.xml`` /
    ``MTD_MSIL2A.xml``.

    Raises:
        InputError: the XML does not parse or has no quantification value, naming ``source``.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise InputError(
            f"{source}: not a readable Sentinel-2 metadata file ({err}); re-download the product"
        ) from None
    level, quantification, baseline, offsets = None, None, None, {}
    for element in root.iter():
        tag, value = _local(element.tag), (element.text or "").strip()
        if tag == "PRODUCT_TYPE" and value:
            level = "L2A" if "L2A" in value else "L1C" if "L1C" in value else None
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE", "L2A_BOA_QUANTIFICATION_VALUE") and value:
            quantification = float(value)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and value:
            band = _BAND_IDS.get(element.get("band_id", ""))
            if band is not None:
                offsets[band] = float(value)
        elif tag == "PROCESSING_BASELINE" and value:
            baseline = value
    if quantification is None:
        raise InputError(
            f"{source}: no QUANTIFICATION_VALUE / BOA_QUANTIFICATION_VALUE in this Sentinel-2 metadata file; "
            "re-download the product"
        )
    return level, quantification, offsets, baseline


def _assumed_radiometry(date: dt.date, baseline: float | None = None) -> tuple[float, dict[str, float], str]:
    """(quantification, offsets, the assumption said) of a product without metadata: the offset from its processing
    baseline when its name gives one (a 2021 scene reprocessed at N0500 carries the offset), else from its date."""
    if baseline is not None:
        offsets, said = (dict.fromkeys(BANDS, -1000.0), "offset -1000") if baseline >= 4.0 else ({}, "no offset")
        return (
            10000.0,
            offsets,
            f"no product metadata (MTD_MSIL*.xml): assumed quantification 10000 and {said} (processing baseline "
            f"{baseline:05.2f} in the product's name)",
        )
    if date >= OFFSET_BASELINE_DATE:
        return (
            10000.0,
            dict.fromkeys(BANDS, -1000.0),
            (
                f"no product metadata (MTD_MSIL*.xml): assumed quantification 10000 and offset -1000 (baseline 04.00, "
                f"sensed on or after {OFFSET_BASELINE_DATE})"
            ),
        )
    return (
        10000.0,
        {},
        (
            f"no product metadata (MTD_MSIL*.xml): assumed quantification 10000 and no offset (sensed before "
            f"{OFFSET_BASELINE_DATE}, baseline < 04.00)"
        ),
    )


# --------------------------------------------------------------------------------------------------------------
# Finding products
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BandFile:
    """What a band file's name and folders say: the band (``B2``…, ``SCL``), its resolution in metres when named,
    the tile and sensing time, and for a file in a folder named for its scene, that folder's name and level."""

    band: str
    resolution: int | None
    tile: str
    time: str  # YYYYMMDDTHHMMSS; T000000 when only the date is known
    scene: str | None = None
    level: str | None = None


def _scene_of(path: str) -> tuple[str, str, str, str | None] | None:
    """(scene name, tile, time, level) of the folder a bare-named band file lies in: an Earth Search scene
    (``S2B_30SYH_20220917_0_L2A``), a product name without ``.SAFE``, or AWS's ``tiles/30/S/YH/2022/9/17/0``; None
    when its folders name no scene."""
    parts = path.replace("\\", "/").split("/")[:-1]
    folders = list(parts)
    while folders and re.fullmatch(r"R\d0m|IMG_DATA", folders[-1]):  # L2A's resolution folders
        folders.pop()
    folder = folders[-1] if folders else ""
    if folder.endswith("}"):  # the zip itself, named for the scene: /vsizip/{…/S2B_30SYH_20220917_0_L2A.zip}/B02.tif
        folder = folder[:-1].removesuffix(".zip").removesuffix(".ZIP")
    if match := _EARTH_SEARCH_SCENE.match(folder):
        tile = f"T{int(match['tile'][:-3]):02d}{match['tile'][-3:]}"
        return folder, tile, f"{match['date']}T000000", match["level"]
    if match := _PRODUCT_NAME.search(folder):
        time = re.search(r"_(\d{8}T\d{6})_", folder)
        return re.sub(r"\.SAFE$", "", folder, flags=re.IGNORECASE), match["tile"], time.group(1), match["level"]
    if match := _AWS_TILE_PATH.search("/".join(parts)):
        tile = f"T{int(match['zone']):02d}{match['band']}{match['square']}"
        day = dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
        name = f"{tile}_{day:%Y%m%d}_{match['seq']}"
        level = "L2A" if any(re.fullmatch(r"R\d0m", part) for part in parts) else None
        return name, tile, f"{day:%Y%m%d}T000000", level
    return None


def band_file(path: str | Path) -> BandFile | None:
    """The identity of a Sentinel-2 band file from its GDAL path: a product band name
    (``T30SYH_20220917T105619_B02.jp2``, L2A ``…_B02_10m.jp2``, ``…_SCL_20m.jp2``), or a bare band name (``B02.tif``,
    ``SCL.tif``) in a folder named for its scene (see :func:`_scene_of`); None for anything else."""
    path = str(path)
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if is_litter(path):  # ._T30SYH_20220917T105619_B02.jp2: a Mac's AppleDouble file, not the band
        return None
    if match := _BAND_FILE.search(name):
        res = int(match["res"]) if match["res"] else None
        return BandFile(band_code(match["band"]), res, match["tile"].upper(), match["time"].upper())
    if (
        (match := _OLD_BAND_FILE.match(name))
        and (match["band"] is None) == (match["kind"] == "SCL")  # a band of the MSI, or the scene classification
        and (product := _OLD_PRODUCT.search(path))
    ):
        res = int(match["res"]) if match["res"] else None
        code = "SCL" if match["kind"] == "SCL" else band_code(match["band"])
        return BandFile(code, res, match["tile"], product["time"], None, match["level"])
    if (match := _HLS_FILE.match(name)) and match["sensor"].upper() == "S30":
        day = dt.date(int(match["year"]), 1, 1) + dt.timedelta(days=int(match["doy"]) - 1)
        granule = name[: match.start("band") - 1]
        band = "FMASK" if match["band"].upper() == "FMASK" else band_code(match["band"])
        return BandFile(band, 30, match["tile"].upper(), f"{day:%Y%m%d}T{match['hms']}", granule, "HLS")
    if (match := _BARE_BAND_FILE.match(name)) and (scene := _scene_of(path)):
        res = int(match["res"]) if match["res"] else None
        return BandFile(band_code(match["band"]), res, scene[1], scene[2], scene[0], scene[3])
    return None


@dataclass
class _Group:
    tile: str
    time: str
    scene: str | None = None
    level: str | None = None
    bands: dict[str, tuple[int, str]] = field(default_factory=dict)  # code → (resolution m, path)
    scl: tuple[int, str] | None = None

    def add(self, code: str, resolution: int, path: str) -> None:
        if code == "FMASK":
            self.scl = (resolution, path)
        elif code == "SCL":
            if self.scl is None or resolution < self.scl[0]:
                self.scl = (resolution, path)
        elif code not in self.bands or resolution < self.bands[code][0]:
            self.bands[code] = (resolution, path)


def _resolution(found: BandFile) -> int:
    if found.resolution:
        return found.resolution
    return 10 if found.band in ("B2", "B3", "B4", "B8") else 60 if found.band in ("B1", "B9", "B10") else 20


def _group_band_files(names: Sequence[str]) -> dict[tuple[str, str, str], _Group]:
    """GDAL paths of band files → groups per (tile, sensing time, scene folder)."""
    groups: dict[tuple[str, str, str], _Group] = {}
    for name in names:
        found = band_file(name)
        if found is None:
            continue
        key = (found.tile, found.time, found.scene or "")
        group = groups.setdefault(key, _Group(found.tile, found.time, found.scene, found.level))
        group.add(found.band, _resolution(found), name)
    return groups


def processing_baseline(properties: dict, product_id: str = "") -> float | None:
    """The Sentinel-2 processing baseline a STAC Item's properties state (``s2:processing_baseline``,
    ``sentinel:processing_baseline``, ``processing:version``) or its product id holds (``…_N0400_…``); None when
    neither says."""
    for key in ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version"):
        try:
            return float(properties[key])
        except (KeyError, TypeError, ValueError):
            continue
    match = re.search(r"_N(\d{2})(\d{2})_", product_id)
    return float(f"{match.group(1)}.{match.group(2)}") if match else None


def boa_offset_applied(properties: dict) -> bool | None:
    """Earth Search's flag that the Sentinel-2 offset is already in the stored DN (``earthsearch:boa_offset_applied``,
    formerly ``sentinel:boa_offset_applied``); None when the Item has none."""
    for key in ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied"):
        if key in properties:
            return bool(properties[key])
    return None


def _item_radiometry(candidates: Sequence[str], read_text) -> tuple[dict[str, float], str] | None:
    """(offsets, the Item JSON they come from) from a STAC Item JSON saved beside bare-named band files (an Earth
    Search scene folder holds its Item): ``earthsearch:boa_offset_applied`` (the COGs' DN already carry the offset),
    else ``s2:processing_baseline`` (≥ 04.00: −1000); None when no Item there says. ``candidates``: the JSON files'
    paths; ``read_text`` reads one."""
    for candidate in sorted(candidates):
        try:
            item = json.loads(read_text(candidate))
        except (OSError, ValueError, KeyError):
            continue
        properties = item.get("properties") if isinstance(item, dict) and item.get("type") == "Feature" else None
        if not isinstance(properties, dict):
            continue
        if boa_offset_applied(properties):
            return {}, candidate
        baseline = processing_baseline(properties)
        if baseline is not None:
            return (dict.fromkeys(BANDS, -1000.0) if baseline >= 4.0 else {}), candidate
    return None


def _scene_item_radiometry(group: _Group, names: Sequence[str], read_text) -> tuple[dict[str, float], str] | None:
    """:func:`_item_radiometry` of the folder named for ``group``'s scene, if any: on disk, or inside the zip whose
    listing ``names`` is (read with ``read_text``)."""
    if group.scene is None:
        return None
    band = next(path for _, path in group.bands.values())
    if band.startswith("/vsi"):  # a zip: the JSONs of the listing in the bands' own folder
        folder = band.rsplit("/", 1)[0]
        return _item_radiometry([n for n in names if n.rsplit("/", 1)[0] == folder and n.endswith(".json")], read_text)
    folder = next((f for f in Path(band).parents if f.name == group.scene), None)
    if folder is None:
        return None
    return _item_radiometry([str(f) for f in folder.glob("*.json")], lambda n: Path(n).read_text())


def _named_baseline(product_name: str | None, group: _Group) -> float | None:
    """The processing baseline in the name of the product the group's bands lie in (``…_N0500_…``), if any."""
    band = next((path for _, path in group.bands.values()), "")
    for name in [product_name or "", *band.replace("\\", "/").split("/")]:
        if _PRODUCT_NAME.search(name):
            return processing_baseline({}, name)
    return None


def _products_from_listing(
    names: Sequence[str],
    read_text,
    source: Path,
    files: tuple[Path, ...],
    product_name: str | None,
) -> list[S2Product]:
    """Products from the GDAL paths of one listing (a SAFE folder, a zip, a folder of band files); ``read_text``
    reads a listed metadata file. A scene folder of bare-named bands without product metadata takes its offsets from
    a STAC Item JSON saved in it, when there is one (:func:`_item_radiometry`). The listing holds no OS litter
    (:func:`~skysense.data.raster.litter.is_litter`: its callers drop it)."""
    metadata = sorted(n for n in names if _METADATA.search(n))
    masks = [n for n in names if _MASK_FILE.search(n)]
    level_meta = None
    if metadata:
        level_meta = parse_metadata(read_text(metadata[0]), metadata[0])
    products = []
    for (tile, time, _), group in sorted(_group_band_files(names).items()):
        date = dt.datetime.strptime(time[:8], "%Y%m%d").date()
        assumptions: list[str] = []
        product_files = files
        if group.level == "HLS":  # harmonised surface reflectance x 1e4: no offset at any date
            level, quantification, offsets = "L2A", 10000.0, {}
        elif level_meta is not None:
            level, quantification, offsets, _ = level_meta
        elif (from_item := _scene_item_radiometry(group, names, read_text)) is not None:
            quantification, (offsets, item_json), level = 10000.0, from_item, group.level
            product_files = (*files, Path(item_json))
        else:
            quantification, offsets, assumption = _assumed_radiometry(date, _named_baseline(product_name, group))
            if group.scene is not None:
                assumption += "; the scene's STAC Item JSON saved in its folder would say"
            assumptions.append(assumption)
            level = group.level
        if level is None:
            level = (
                "L2A"
                if group.scl is not None or any("_10m." in p or "/R10m/" in p for _, p in group.bands.values())
                else "L1C"
            )
        mask = group.scl[1] if group.scl else None
        if mask is None and level == "L1C":
            # the bands' folder's parent: a SAFE granule's IMG_DATA beside QI_DATA, an AWS tile's bands beside qi/
            parent = os.path.commonpath([path for _, path in group.bands.values()]).rsplit("/", 1)[0]
            same_granule = [m for m in masks if tile in m or m.startswith(parent + "/") or len(masks) == 1]
            mask = same_granule[0] if same_granule else None
        if mask is None:
            assumptions.append(f"no cloud mask ({'SCL' if level == 'L2A' else 'MSK_CLASSI'}): only DN 0 is invalid")
        name = product_name or group.scene or f"{tile}_{time}"
        bands = {code: path for code, (_, path) in group.bands.items()}
        kind = "fmask" if group.level == "HLS" else "esa"
        products.append(S2Product(name, level, date, tile, bands, quantification, offsets, mask, source, product_files,
                                  tuple(assumptions), kind))  # fmt: skip
    return products


def read_s2_product(path: str | Path) -> list[S2Product]:
    """The Sentinel-2 products of one path: a ``.SAFE`` folder, a ``.SAFE.zip``, a granule's ``IMG_DATA`` folder
    or a folder of loose per-band files (one product per tile and sensing time).

    Raises:
        InputError: no Sentinel-2 band file found, naming the path and what was expected.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/") and not is_litter(m)]
                texts = {  # product metadata, and the STAC Item JSON a zipped Earth Search scene folder holds
                    m: archive.read(m).decode("utf-8", "replace")
                    for m in members
                    if _METADATA.search(m) or m.lower().endswith(".json")
                }
        except (zipfile.BadZipFile, zlib.error) as err:  # a damaged archive, or a damaged metadata member
            raise InputError(f"{path}: not a readable zip ({err}); re-download the product") from None
        names = [f"/vsizip/{{{path.resolve()}}}/{m}" for m in members]
        by_name = {f"/vsizip/{{{path.resolve()}}}/{m}": text for m, text in texts.items()}
        product_name = _product_name(path.name)
        products = _products_from_listing(names, by_name.__getitem__, path, (path,), product_name)
    elif path.is_dir():
        files = sorted(p for p in files_under(path) if not is_litter(p))
        names = [str(p) for p in files]
        metadata_dirs = [path, *path.parents[:4]]  # a loose IMG_DATA: the product's MTD is up to 4 folders above
        extra = []
        if not any(_METADATA.search(n) for n in names):
            for folder in metadata_dirs[1:]:
                found = sorted(f for f in folder.glob("*.xml") if _METADATA.search(f.name) and not is_litter(f))
                if found:
                    extra = [str(found[0])]
                    break
        if not any(_MASK_FILE.search(n) for n in names):
            for folder in metadata_dirs[1:]:
                found = sorted(folder.glob("QI_DATA/MSK_CLASSI_B00.*"))
                if found:
                    extra.append(str(found[0]))
                    break
        names += extra
        product_name = next((n for n in (_product_name(p.name) for p in [path, *path.parents]) if n), None)
        products = _products_from_listing(names, lambda n: Path(n).read_text(), path,
                                          tuple(files) + tuple(Path(e) for e in extra), product_name)  # fmt: skip
    else:
        raise FileNotFoundError(f"no Sentinel-2 product at {path}")
    if not products:
        raise InputError(
            f"{path}: no Sentinel-2 band file found (expected product band names such as "
            "T33UUU_20170216T102101_B02.jp2 or …_B02_10m.jp2 in a .SAFE folder, a .SAFE.zip or IMG_DATA)"
        )
    return products


def _product_name(name: str) -> str | None:
    stem = name[: -len(".zip")] if name.lower().endswith(".zip") else name
    if stem.upper().endswith(".SAFE"):
        return stem[: -len(".SAFE")]
    return (stem or None) if _PRODUCT_NAME.search(stem) or _OLD_PRODUCT.search(stem) else None


def refuse_unnamed_band_files(folder: Path, files: Sequence[Path]) -> None:
    """Refuse a folder of bare per-band files (``B02.tif``, ``B03.tif``, …) whose folders name no scene: read one by
    one they would be one-band dates.

    Raises:
        InputError: naming the folder, the files and the two ways to give them.
    """
    old_format = [f.name for f in files if _OLD_BAND_FILE.match(f.name)]
    if old_format:
        raise InputError(
            f"{folder}: band files of a Sentinel-2 product from before December 2016 ({old_format[0]}, …) outside "
            "their .SAFE product, whose name holds the sensing time (their own names hold the processing time); "
            "give the .SAFE folder or zip"
        )
    landsat = [f.name for f in files if (m := _HLS_FILE.match(f.name)) and m["sensor"].upper() == "L30"]
    if landsat:
        raise InputError(
            f"{folder}: HLS L30 files ({', '.join(landsat[:2])}{', …' if len(landsat) > 2 else ''}) are Landsat OLI "
            "bands (their B05 is near infrared, not Sentinel-2's red edge); give the HLS S30 granules for the s2 series"
        )
    bare = [f.name for f in files if _BARE_BAND_FILE.match(f.name) and band_code(f.stem.split("_")[0]) in BANDS]
    if len(bare) >= 2:
        raise InputError(
            f"{folder}: per-band files ({', '.join(bare[:4])}{', …' if len(bare) > 4 else ''}) in a folder that names "
            "no scene; name the folder for its scene (the product name, or Earth Search's S2B_30SYH_20220917_0_L2A) "
            "so that they are read as one date, or stack them into one GeoTIFF per date (gdalbuildvrt -separate)"
        )


def files_under(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, through symbolic links to folders too (a granule folder linked from a store;
    ``Path.rglob`` does not follow them before Python 3.13)."""
    for parent, _, names in os.walk(folder, followlinks=True):
        for name in names:
            path = Path(parent) / name
            if path.is_file():
                yield path


def is_product_holder(path: Path) -> bool:
    """Whether ``path`` is one Sentinel-2 product as downloaded: a ``.SAFE`` folder or ``.SAFE.zip``, an EOPF Zarr
    product (:mod:`skysense.data.products.eopf`), or a zip named for a product or holding a scene's band files (a
    zipped Earth Search scene folder)."""
    from skysense.data.products.eopf import is_eopf_zarr  # eopf builds on this module

    name = path.name
    if is_litter(path):
        return False
    if _SAFE_SUFFIX.search(name) or is_eopf_zarr(path):
        return True
    if path.is_dir():  # a product folder renamed without its suffix, or an Earth Search scene folder (B02.tif, …)
        return bool(_PRODUCT_NAME.search(name) or _OLD_PRODUCT.search(name) or _EARTH_SEARCH_SCENE.match(name))
    if path.suffix.lower() != ".zip" or not path.is_file():
        return False
    if _PRODUCT_NAME.search(name):
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(band_file(f"/vsizip/{{{path.resolve()}}}/{m}") for m in members if not m.endswith("/"))


def is_s2_product_path(path: Path) -> bool:
    """Whether ``path`` is a Sentinel-2 product layout :func:`find_s2_products` reads: a product
    (:func:`is_product_holder`), a folder of them, or a folder holding product band files."""
    if is_product_holder(path):
        return True
    if path.is_dir():
        return any(is_product_holder(p) for p in path.iterdir()) or _holds_band_files(path)
    return False


def find_s2_products(path: str | Path) -> list[S2Product]:
    """Every Sentinel-2 product under ``path``: the path itself when it is a product (:func:`is_product_holder`: a
    ``.SAFE`` folder or zip, an EOPF Zarr product, a zipped scene folder), each of them inside a folder (sorted by
    sensing time), or the band files of an ``IMG_DATA`` folder or a folder of loose band files (one product per tile
    and sensing time).

    Raises:
        FileNotFoundError / InputError: see :func:`read_s2_product` and
        :func:`~skysense.data.products.eopf.read_eopf_s2`.
    """
    from skysense.data.products.eopf import is_eopf_zarr, read_eopf_s2  # eopf builds on this module

    def read(item: Path) -> list[S2Product]:
        return [read_eopf_s2(item)] if is_eopf_zarr(item) else read_s2_product(item)

    path = Path(path)
    if path.is_dir() and not is_product_holder(path):
        entries = sorted(path.iterdir())
        inside = [p for p in entries if is_product_holder(p)]
        if inside:  # products, and folders of band files beside them (an IMG_DATA copied out): each read
            others = [p for p in entries if p not in inside and _holds_band_files(p)]
            loose = [p.name for p in others if p.is_file()]
            if loose:
                raise InputError(
                    f"{path}: holds Sentinel-2 products ({inside[0].name}{', …' * (len(inside) > 1)}) and loose band "
                    f"files beside them ({', '.join(loose[:3])}{', …' * (len(loose) > 3)}), which would be read as "
                    "neither; move the loose files into a folder of their own, or give the products alone"
                )
            products = [product for item in inside + others for product in read(item)]
            return sorted(products, key=lambda p: (p.date, p.tile, p.name))
    return read(path)


def _holds_band_files(path: Path) -> bool:
    """Whether ``path`` is a Sentinel-2 band file, or a folder with one somewhere inside."""
    if path.is_file():
        return band_file(path) is not None
    return path.is_dir() and any(band_file(p) is not None for p in files_under(path))
