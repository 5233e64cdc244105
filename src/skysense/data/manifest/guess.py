"""A manifest row from one file: its modality, date and name key.

Modality inference (:func:`infer_modality`), first rule that fires:

1. Words in the file name, then in its folders (nearest first; the indexed root's own path is not used):
   ``label``/``labels``/``LabelHand``/``annotation``/``groundtruth``/``gt``/``target``/``mask``/``masks``/``lbl``/
   ``seg`` → "label";
   ``s1``/``S1A``/``S1Hand``/``sentinel1``/``sar``/``grd`` → "s1"; ``s2``/``S2B``/``S2Hand``/``sentinel2``/``MSIL2A``/
   ``HLS.S30`` → "s2"; ``hr``/``vhr``/``aerial``/``ortho``/``naip``/``rgb``/``rgbn``/``uav``/``drone`` → "hr".
2. Band descriptions: VV/VH/HH/HV → "s1"; at least four Sentinel-2 band names (B2, B02, B8A, ...) → "s2";
   red/green/blue → "hr".
3. Structure: a one-band integer PNG (a class map, or a palette PNG) → "label"; other JPEG/PNG → "hr"; 10, 12 or
   13 bands → "s2"; 2 float bands → "s1"; 1 integer band → "label";
   3 or 4 bands of 8-bit data, or of any type at ≤ 5 m pixels in a projected CRS → "hr".
4. Otherwise "unknown" (kept in the manifest, ignored by :class:`ManifestDataset`; edit the column to fix it).

The name key (:func:`name_key`) is described in :mod:`~skysense.data.manifest.index`, which groups files by it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skysense.data.dates import acquisition_date
from skysense.data.manifest.schema import RASTER_SUFFIXES, ManifestEntry, _crs_string
from skysense.data.products.sentinel1 import _POLARISATION_TOKEN
from skysense.data.raster import RasterInfo


def entry_from_info(
    info: RasterInfo,
    modality: str | None = None,
    *,
    folders: Sequence[str] = (),
    filename_regex: str | None = None,
    date_format: str | None = "%Y%m%d",
    sidecar: str | Path | None = None,
) -> ManifestEntry:
    """A manifest row from a file's metadata: date (empty if none; problems go to ``notes``) and modality."""
    notes = []
    try:
        date = acquisition_date(
            info.path, filename_regex=filename_regex, date_format=date_format, sidecar=sidecar, tags=info.tags
        )
    except ValueError as err:
        date = None
        if "no acquisition date found" not in str(err):
            notes.append(f"date: {err}")
    today = dt.datetime.now(dt.timezone.utc).date()
    if date is not None and date > today:
        notes.append(f"date: {date.isoformat()} is after today ({today.isoformat()} UTC); fix the name, tag or sidecar")
    stacked = stacked_kinds(info)
    if stacked:
        notes.append(f"{stacked}: not read as a series; export one file per date and sensor")
    left, bottom, right, top = info.bounds
    res_x, res_y = info.res
    return ManifestEntry(
        path=info.path,
        driver=info.driver,
        width=info.width,
        height=info.height,
        count=info.count,
        dtype=info.dtypes[0] if info.dtypes else "",
        crs=_crs_string(info.crs),
        left=left,
        bottom=bottom,
        right=right,
        top=top,
        res_x=res_x,
        res_y=res_y,
        nodata=info.nodata,
        band_names=tuple(d or "" for d in info.descriptions),
        date=date,
        modality=modality or infer_modality(info, folders),
        notes="; ".join(notes),
    )


_B = r"(?<![a-z0-9])"  # token start


_NAME_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "label",
        re.compile(
            rf"label|annotation|groundtruth|ground_truth|{_B}(gt|gts|target|targets|masks?|lbl|seg|segmentation)(?![a-z0-9])"
        ),
    ),  # fmt: skip
    ("s1", re.compile(rf"{_B}s1[a-d]?(?![0-9])|sentinel[-_ ]?1|{_B}(sar|grd|grdh)(?![a-z0-9])")),
    ("s2", re.compile(rf"{_B}s2[a-d]?(?![0-9])|sentinel[-_ ]?2|msil1c|msil2a|{_B}hls\.s30")),
    ("hr", re.compile(rf"{_B}(hr|vhr|aerial|ortho|orthophoto|naip|rgb|rgbn|uav|drone)(?![a-z0-9])")),
)


_S1_BANDS = {"VV", "VH", "HH", "HV"}


_S2_BANDS = {f"B{i}" for i in range(1, 13)} | {"B8A"}


def _modality_from_words(text: str) -> str | None:
    text = text.lower()
    for modality, pattern in _NAME_RULES:
        if pattern.search(text):
            return modality
    return None


def stacked_kinds(info: RasterInfo) -> str:
    """What makes a file a stack of several dates or sensors in one raster ("" when it is not): band names repeated
    with a suffix (``VV``, ``VV_1``, …: one per date, as Presto's and CropHarvest's exports are), or Sentinel-1
    polarisations beside Sentinel-2 bands. Such a file is no one date of one modality, so it is indexed as unknown,
    with this said in its notes."""
    bases: dict[str, int] = {}
    for description in info.descriptions:
        name = re.sub(r"^B0+(?=\d)", "B", (description or "").strip().upper())
        if name:
            base = re.sub(r"[_-]\d+$", "", name)
            bases[base] = bases.get(base, 0) + 1
    repeated = sorted(b for b, n in bases.items() if n > 1 and (b in _S1_BANDS or b in _S2_BANDS))
    if repeated:
        return (
            f"bands {', '.join(repeated[:4])} repeat (e.g. {repeated[0]}, {repeated[0]}_1): several dates in one file"
        )
    if set(bases) & _S1_BANDS and len(set(bases) & _S2_BANDS) >= 4:
        return "Sentinel-1 and Sentinel-2 bands in one file"
    return ""


def infer_modality(info: RasterInfo, folders: Sequence[str] = ()) -> str:
    """Guess a file's modality from its name, folders, band names and structure (rules in the module docstring).

    Args:
        info: the file's metadata.
        folders: the folder names between the indexed root and the file, outermost first.
    """
    if stacked_kinds(info):  # several dates or sensors in one file: no modality reads it
        return "unknown"
    from_name = _modality_from_words(info.path.stem)
    if from_name:
        return from_name
    for folder in reversed(list(folders)):
        from_folder = _modality_from_words(folder)
        if from_folder:
            return from_folder
    names = {re.sub(r"^B0+(?=\d)", "B", (d or "").strip().upper()) for d in info.descriptions} - {""}
    if names & _S1_BANDS:
        return "s1"
    if len(info.data_bands) == 1 and _POLARISATION_TOKEN.search(info.path.stem):  # vv.tif, …-vh-….tiff, …_VV.tif
        return "s1"
    if len(names & _S2_BANDS) >= 4:
        return "s2"
    if {"RED", "GREEN", "BLUE"} <= names:
        return "hr"
    data_bands = len(info.data_bands)
    dtype = np.dtype(info.dtypes[0]) if info.dtypes else np.dtype("float32")
    if info.driver == "PNG" and data_bands == 1 and dtype.kind in "iub":  # a class map (or palette) PNG
        return "label"
    if info.driver in ("JPEG", "PNG"):
        return "hr"
    if data_bands in (10, 12, 13):
        return "s2"
    if data_bands == 2 and dtype.kind == "f":
        return "s1"
    if data_bands == 1 and dtype.kind in "iub":
        return "label"
    if data_bands in (3, 4):
        fine = info.crs is not None and info.crs.is_projected and max(info.res) <= 5.0
        if dtype == np.uint8 or fine:
            return "hr"
    return "unknown"


_PRODUCT_SUFFIXES = re.compile(r"(\.(safe|zarr|json|zip))+$")

_S1_PRODUCT = re.compile(r"s1[a-d]_(iw|ew|sm|wv|s\d)_[a-z_]{4}_\d[a-z]{3}_\d{8}t\d{6}", re.IGNORECASE)


_DROP_SUBSTRINGS = re.compile(  # date-times, dates (YYYYMMDD, YYYY-MM-DD, YYYY_MM_DD), "sentinel-2"
    r"\d{8}t\d{6}|\d{7}t\d{6}|sentinel[-_ ]?[12][a-d]?|"
    r"(?<!\d)(19|20)\d{2}([-_]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?!\d)"
)


_DROP_TOKENS = re.compile(
    r"s[12][a-d]?(hand)?|labelhand|labels?|label_?hand|hr|vhr|gts?|sar|grdh?|l1c|l2a|msil1c|msil2a|rgbn?|"
    r"n\d{4}|r\d{3}|hls|s30|l30|v\d+|images?|img|masks?|lbl|seg|segmentation|sat|annotations?|targets?"
)


def name_key(path: str | Path) -> str:
    """The place part of a file name: lower-case stem without dates, product boilerplate and modality words."""
    stem = Path(path).name.lower()
    for suffix in RASTER_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = _PRODUCT_SUFFIXES.sub("", stem)  # a product's .SAFE, .SAFE.zip, .zarr, a STAC Item's .json
    if _S1_PRODUCT.search(stem):
        return ""
    stem = _DROP_SUBSTRINGS.sub("_", stem)
    tokens = [t for t in re.split(r"[-_. ]+", stem) if t and not _DROP_TOKENS.fullmatch(t)]
    return "_".join(tokens)
