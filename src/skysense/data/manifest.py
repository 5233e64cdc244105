"""A manifest of a folder of rasters: one row per file with its metadata, acquisition date, inferred modality and
the sample (place) it belongs to; per-band statistics streamed over the files; and a dataset reading it.

Modality inference (:func:`infer_modality`), first rule that fires:

1. Words in the file name, then in its folders (nearest first; the indexed root's own path is not used):
   ``label``/``labels``/``LabelHand``/``annotation``/``groundtruth``/``gt``/``target`` → "label";
   ``s1``/``S1A``/``S1Hand``/``sentinel1``/``sar``/``grd`` → "s1"; ``s2``/``S2B``/``S2Hand``/``sentinel2``/``MSIL2A``/
   ``HLS.S30`` → "s2"; ``hr``/``vhr``/``aerial``/``ortho``/``naip``/``rgb``/``rgbn``/``uav``/``drone`` → "hr".
2. Band descriptions: VV/VH/HH/HV → "s1"; at least four Sentinel-2 band names (B2, B02, B8A, ...) → "s2";
   red/green/blue → "hr".
3. Structure: JPEG/PNG → "hr"; 10, 12 or 13 bands → "s2"; 2 float bands → "s1"; 1 integer band → "label";
   3 or 4 bands of 8-bit data, or of any type at ≤ 5 m pixels in a projected CRS → "hr".
4. Otherwise "unknown" (kept in the manifest, ignored by :class:`ManifestDataset`; edit the column to fix it).

Sample grouping (:func:`assign_samples`): files are linked (union-find) when

- their footprints coincide: bounds transformed to EPSG:4326 agree within half a pixel of the coarser file, or
- they share a non-empty *name key* and their footprints intersect (or one of them has no CRS). The name key is the
  file stem, lower-cased, without dates, Sentinel/Landsat product boilerplate (``S2A``, ``MSIL2A``, ``N0213``,
  ``R051``), and modality words (``S1Hand``, ``LabelHand``, ``s2``, ``hr``, ...): ``Spain_7370579_S1Hand`` and
  ``Spain_7370579_LabelHand`` → ``spain_7370579``; an S2 product name keeps its tile (``t30syh``); a Sentinel-1
  product name has no key (it names no place) and groups by footprint only.

Indexing reads the first and the last block of every band of every file
(:func:`~skysense.data.readers.check_readable`), so a truncated download or a corrupt file is found when the folder
is indexed, not in the middle of training: by default the folder is refused, naming every such file; with
``strict=False`` (CLI ``--no-strict``) they are left out of the manifest and listed. Dates after today, and S2/S1
files of one sample that share a date, are noted in the ``notes`` column (:class:`ManifestDataset` refuses them).

A group's sample id is its most common name key, else ``lat<lat>_lon<lon>`` of its footprint centre, else the file
stem; clashes get ``_2``, ``_3``, ... in path order. A large file covering several places is one sample: crop per
place first.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from torch.utils.data import Dataset

from skysense.data.collate import Sample
from skysense.data.dates import _listing, acquisition_date, check_series_dates
from skysense.data.readers import (
    RasterFile,
    RasterInfo,
    UnreadableRaster,
    check_readable,
    coregistered_grids,
    iter_windows,
    raster_info,
    read_raster,
    read_time_series,
    reproject_to_grid,
    sensor_bands,
)
from skysense.data.sensors import HR_RGB, S1_GRD, S2_L1C, S2_L2A, SENSORS, Sensor
from skysense.errors import InputError

MODALITIES = ("hr", "s2", "s1", "label", "unknown")
RASTER_SUFFIXES = (".tif", ".tiff", ".gtiff", ".jp2", ".jpg", ".jpeg", ".png", ".vrt", ".img")

# ------------------------------------------------------------------------------------------------------------------
# Manifest rows
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class ManifestEntry:
    """One file of a manifest.

    Attributes:
        path: the file (absolute once read; written relative to the manifest's folder when inside it).
        driver: GDAL driver name ("" when the file could not be read).
        width, height: size in pixels.
        count: number of bands.
        dtype: data type of the first band.
        crs: "EPSG:<code>" or WKT; "" when not georeferenced.
        left, bottom, right, top: bounds in ``crs`` (pixel coordinates for non-georeferenced images).
        res_x, res_y: pixel size in ``crs`` units.
        nodata: the nodata value, or None.
        band_names: band descriptions ("" where a band has none).
        date: acquisition date, or None.
        modality: "hr", "s2", "s1", "label" or "unknown".
        sample: id of the place the file belongs to.
        notes: problems met while indexing (an ambiguous or unparseable date, a date after today, a date shared
            with another S2/S1 file of the sample), "" when none. Unreadable files get no row.
    """

    path: Path
    driver: str = ""
    width: int = 0
    height: int = 0
    count: int = 0
    dtype: str = ""
    crs: str = ""
    left: float = math.nan
    bottom: float = math.nan
    right: float = math.nan
    top: float = math.nan
    res_x: float = math.nan
    res_y: float = math.nan
    nodata: float | None = None
    band_names: tuple[str, ...] = ()
    date: dt.date | None = None
    modality: str = "unknown"
    sample: str = ""
    notes: str = ""

    @property
    def georeferenced(self) -> bool:
        return bool(self.crs)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.left, self.bottom, self.right, self.top

    def to_row(self, root: Path | None = None) -> dict[str, Any]:
        """JSON-ready dict; ``path`` relative to ``root`` when the file lies under it."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["path"] = _relative(self.path, root)
        row["band_names"] = list(self.band_names)
        row["date"] = self.date.isoformat() if self.date else None
        for key in ("left", "bottom", "right", "top", "res_x", "res_y", "nodata"):
            value = row[key]
            row[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        if self.nodata is not None and math.isnan(self.nodata):
            row["nodata"] = "nan"
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any], root: Path | None = None, where: str = "manifest") -> ManifestEntry:
        """Inverse of :meth:`to_row` (also accepts the all-string rows of a CSV)."""
        try:
            path = Path(str(row["path"]))
            if not path.is_absolute() and root is not None:
                path = root / path
            names = row.get("band_names") or ()
            if isinstance(names, str):
                names = tuple(names.split("|")) if names else ()
            return cls(
                path=path,
                driver=str(row.get("driver") or ""),
                width=int(row.get("width") or 0),
                height=int(row.get("height") or 0),
                count=int(row.get("count") or 0),
                dtype=str(row.get("dtype") or ""),
                crs=str(row.get("crs") or ""),
                left=_float(row.get("left")),
                bottom=_float(row.get("bottom")),
                right=_float(row.get("right")),
                top=_float(row.get("top")),
                res_x=_float(row.get("res_x")),
                res_y=_float(row.get("res_y")),
                nodata=None if row.get("nodata") in (None, "") else float(row["nodata"]),
                band_names=tuple(names),
                date=dt.date.fromisoformat(str(row["date"])) if row.get("date") else None,
                modality=str(row.get("modality") or "unknown"),
                sample=str(row.get("sample") or ""),
                notes=str(row.get("notes") or ""),
            )
        except (KeyError, ValueError, TypeError) as err:
            raise InputError(
                f"{where}: bad row {row!r} ({err!r}); fix the row, or index the folder again with `skysense data index`"
            ) from err


def _float(value: Any) -> float:
    return math.nan if value in (None, "") else float(value)


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            if _is_under(path, root):
                return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()
            return str(Path(path).resolve())
        except ValueError:  # another drive (Windows)
            pass
    return str(path)


def _is_under(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def _crs_string(crs: CRS | None) -> str:
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


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


# ------------------------------------------------------------------------------------------------------------------
# Modality inference
# ------------------------------------------------------------------------------------------------------------------
_B = r"(?<![a-z0-9])"  # token start
_NAME_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("label", re.compile(rf"label|annotation|groundtruth|ground_truth|{_B}(gt|target|targets)(?![a-z0-9])")),
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


def infer_modality(info: RasterInfo, folders: Sequence[str] = ()) -> str:
    """Guess a file's modality from its name, folders, band names and structure (rules in the module docstring).

    Args:
        info: the file's metadata.
        folders: the folder names between the indexed root and the file, outermost first.
    """
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
    if len(names & _S2_BANDS) >= 4:
        return "s2"
    if {"RED", "GREEN", "BLUE"} <= names:
        return "hr"
    data_bands = len(info.data_bands)
    dtype = np.dtype(info.dtypes[0]) if info.dtypes else np.dtype("float32")
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


# ------------------------------------------------------------------------------------------------------------------
# Sample grouping
# ------------------------------------------------------------------------------------------------------------------
_S1_PRODUCT = re.compile(r"s1[a-d]_(iw|ew|sm|wv|s\d)_[a-z_]{4}_\d[a-z]{3}_\d{8}t\d{6}", re.IGNORECASE)
_DROP_SUBSTRINGS = re.compile(  # date-times, dates (YYYYMMDD, YYYY-MM-DD, YYYY_MM_DD), "sentinel-2"
    r"\d{8}t\d{6}|\d{7}t\d{6}|sentinel[-_ ]?[12][a-d]?|"
    r"(?<!\d)(19|20)\d{2}([-_]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?!\d)"
)
_DROP_TOKENS = re.compile(
    r"s[12][a-d]?(hand)?|labelhand|labels?|label_?hand|hr|vhr|gt|sar|grdh?|l1c|l2a|msil1c|msil2a|rgbn?|"
    r"n\d{4}|r\d{3}|hls|s30|l30|v\d+|image|img"
)


def name_key(path: str | Path) -> str:
    """The place part of a file name: lower-case stem without dates, product boilerplate and modality words."""
    stem = Path(path).name.lower()
    for suffix in RASTER_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if _S1_PRODUCT.search(stem):
        return ""
    stem = _DROP_SUBSTRINGS.sub("_", stem)
    tokens = [t for t in re.split(r"[-_. ]+", stem) if t and not _DROP_TOKENS.fullmatch(t)]
    return "_".join(tokens)


def _footprint(entry: ManifestEntry) -> tuple[tuple[float, float, float, float], float] | None:
    """(bounds in EPSG:4326, tolerance in degrees: half the larger pixel side), or None if not georeferenced."""
    if not entry.georeferenced or not all(map(math.isfinite, entry.bounds)):
        return None
    try:
        crs = CRS.from_user_input(entry.crs)
        bounds = transform_bounds(crs, "EPSG:4326", *entry.bounds, densify_pts=21)
    except (RasterioError, ValueError):
        return None
    if not all(map(math.isfinite, bounds)):
        return None
    pixel = max((bounds[2] - bounds[0]) / max(entry.width, 1), (bounds[3] - bounds[1]) / max(entry.height, 1))
    return bounds, 0.5 * pixel


def _intersect(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def assign_samples(entries: Sequence[ManifestEntry]) -> list[ManifestEntry]:
    """Set each entry's ``sample`` id by the grouping rule of the module docstring (returns new entries)."""
    count = len(entries)
    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    footprints = [_footprint(e) if e.modality != "unknown" or e.georeferenced else None for e in entries]
    # 1. coinciding footprints: sweep over files sorted by their west bound
    located = sorted((fp[0][0], i) for i, fp in enumerate(footprints) if fp is not None)
    for position, (west, i) in enumerate(located):
        bounds_i, tol_i = footprints[i]
        for west_j, j in located[position + 1 :]:
            bounds_j, tol_j = footprints[j]
            tol = max(tol_i, tol_j)
            if west_j - west > tol:
                break
            if all(abs(a - b) <= tol for a, b in zip(bounds_i, bounds_j, strict=True)):
                union(i, j)
    # 2. shared name keys, when the footprints are compatible
    keys = [name_key(e.path) for e in entries]
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            by_key.setdefault(key, []).append(i)
    for members in by_key.values():
        clusters: list[tuple[int, tuple[float, ...] | None]] = []  # (representative, footprint)
        for i in members:
            fp = footprints[i][0] if footprints[i] else None
            for representative, cluster_fp in clusters:
                if fp is None or cluster_fp is None or _intersect(fp, cluster_fp):
                    union(i, representative)
                    break
            else:
                clusters.append((i, fp))
    # ids
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(find(i), []).append(i)
    ordered = sorted(groups.values(), key=lambda members: min(str(entries[i].path) for i in members))
    taken: Counter[str] = Counter()
    sample_of: dict[int, str] = {}
    for members in ordered:
        named = Counter(keys[i] for i in members if keys[i])
        if named:
            top = max(named.values())
            base = sorted(k for k, c in named.items() if c == top)[0]
        elif any(footprints[i] for i in members):
            bounds = next(footprints[i][0] for i in members if footprints[i])
            base = f"lat{(bounds[1] + bounds[3]) / 2:.5f}_lon{(bounds[0] + bounds[2]) / 2:.5f}"
        else:
            base = Path(entries[min(members)].path).stem
        taken[base] += 1
        sample_id = base if taken[base] == 1 else f"{base}_{taken[base]}"
        for i in members:
            sample_of[i] = sample_id
    return [replace(e, sample=sample_of[i]) for i, e in enumerate(entries)]


# ------------------------------------------------------------------------------------------------------------------
# Index, write, read
# ------------------------------------------------------------------------------------------------------------------
def find_rasters(root: str | Path, pattern: str | None = None) -> list[Path]:
    """Files under ``root`` matching the glob ``pattern`` (default: every raster suffix, recursively), sorted.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no directory at {root}")
    if pattern:
        files = root.glob(pattern)
    else:
        files = (p for p in root.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES)
    return sorted(p for p in files if p.is_file() and not p.name.endswith(".aux.xml"))


PRODUCT_DRIVER = "Sentinel-2 product"  # the driver column of a product row


def _product_entries(root: Path) -> tuple[list[ManifestEntry], set[Path]]:
    """One manifest row per Sentinel-2 product under ``root`` (``.SAFE`` folders, ``.SAFE.zip`` files, folders of
    per-band product files such as ``IMG_DATA``), and the files those rows cover (not indexed one by one)."""
    from skysense.data.products.sentinel2 import _BAND_FILE, find_s2_products

    holders = sorted(p for p in root.rglob("*") if p.name.endswith(".SAFE") or p.name.endswith(".SAFE.zip"))
    holders = [p for p in holders if not any(h != p and h in p.parents for h in holders)]
    covered: set[Path] = set()
    for holder in holders:
        if holder.is_dir():
            covered |= {p for p in holder.rglob("*") if p.is_file()}
        else:
            covered.add(holder)
    loose: dict[Path, None] = {}
    for band_file in sorted(p for p in root.rglob("*") if p.is_file() and _BAND_FILE.search(p.name)):
        if band_file not in covered:  # the folder holding it (IMG_DATA, not R10m): one product folder
            folder = band_file.parent.parent if re.fullmatch(r"R\d0m", band_file.parent.name) else band_file.parent
            loose.setdefault(folder, None)
    entries = []
    for holder in [*holders, *loose]:
        for product in find_s2_products(holder):
            grid = product.grid()
            left, bottom, right, top = grid.bounds
            entries.append(ManifestEntry(
                path=holder, driver=PRODUCT_DRIVER, width=grid.width, height=grid.height, count=len(product.bands),
                dtype="uint16", crs=_crs_string(grid.crs), left=left, bottom=bottom, right=right, top=top,
                res_x=grid.res[0], res_y=grid.res[1], nodata=0.0, band_names=tuple(product.bands),
                date=product.date, modality="s2", notes="; ".join(product.assumptions),
            ))  # fmt: skip
            covered |= {Path(p) for p in product.files}
    return entries, covered


def index_directory(
    root: str | Path,
    pattern: str | None = None,
    *,
    filename_regex: str | None = None,
    date_format: str | None = "%Y%m%d",
    sidecar: str | Path | None = None,
    strict: bool = True,
    skipped: dict[Path, str] | None = None,
) -> list[ManifestEntry]:
    """Index every raster under ``root``: metadata, date, modality, sample id.

    Each file's first and last block of every band is read (:func:`~skysense.data.readers.check_readable`), so a
    file whose header opens but whose pixels do not (a truncated download) is found here.

    Args:
        root: the folder.
        pattern: glob relative to ``root`` (e.g. "**/*.tif"); default every raster suffix, recursively.
        filename_regex, date_format, sidecar: where dates come from (:mod:`skysense.data.dates`).
        strict: refuse the folder when any file cannot be opened or read: one error naming them (the default, as
            in ``skysense data index``). False: leave those files out of the entries (a manifest never lists a file
            that cannot be read) and report them in ``skipped``, or, when ``skipped`` is not given, in a warning.
        skipped: filled with file → problem for every file left out (only with ``strict=False``).

    Returns:
        Entries of the readable files, sorted by path, with ``sample`` set (see :func:`assign_samples`) and
        ``notes`` for dates after today and for S2/S1 files of one sample that share a date.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
        InputError: with ``strict``, some files cannot be read, naming them (the first five, and a count).
    """
    root = Path(root)
    entries, covered = _product_entries(root) if pattern is None else ([], set())
    unreadable: dict[Path, str] = {}
    for path in find_rasters(root, pattern):
        if path in covered:  # a band, mask or metadata file of a Sentinel-2 product row
            continue
        folders = path.relative_to(root).parts[:-1]
        try:
            info = check_readable(path)
        except UnreadableRaster as err:
            unreadable[path] = err.problem
            continue
        except FileNotFoundError as err:  # removed while the folder was being indexed
            unreadable[path] = str(err)
            continue
        entries.append(
            entry_from_info(
                info, folders=folders, filename_regex=filename_regex, date_format=date_format, sidecar=sidecar
            )
        )
    if unreadable:
        listed = _listing([f"{_relative(p, root)} ({problem})" for p, problem in unreadable.items()])
        total = len(unreadable) + len(entries)
        if strict:
            raise InputError(
                f"{root}: {len(unreadable)} of {total} rasters cannot be read: {listed}; re-download or replace "
                "them, or pass --no-strict (Python: strict=False) to index the rest without them"
            )
        if skipped is not None:
            skipped.update(unreadable)
        else:
            warnings.warn(
                f"{root}: left out {len(unreadable)} of {total} rasters that cannot be read: {listed}", stacklevel=2
            )
    return _note_shared_dates(assign_samples(entries))


def _note_shared_dates(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    """Note on each S2/S1 file that shares its date with another file of its sample and modality (one series)."""
    series: dict[tuple[str, str, dt.date], list[int]] = {}
    for i, entry in enumerate(entries):
        if entry.modality in ("s2", "s1") and entry.date is not None:
            series.setdefault((entry.sample, entry.modality, entry.date), []).append(i)
    notes = {}
    for (sample, modality, date), members in series.items():
        for i in members if len(members) > 1 else ():
            others = [Path(entries[j].path).name for j in members if j != i]
            notes[i] = (
                f"date: {date.isoformat()} shared with {', '.join(others)} in the {modality} series of sample "
                f"{sample!r}; remove or fix one, or load with allow_duplicate_dates=True"
            )
    return [
        replace(e, notes="; ".join(n for n in (e.notes, notes[i]) if n)) if i in notes else e
        for i, e in enumerate(entries)
    ]


_COLUMNS = [f.name for f in fields(ManifestEntry)]


def write_manifest(entries: Iterable[ManifestEntry], path: str | Path) -> Path:
    """Write entries as CSV, or JSON when ``path`` ends in ".json"; file paths relative to the manifest's folder
    when they lie under it. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [e.to_row(path.parent) for e in entries]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"version": 1, "entries": rows}, indent=1) + "\n")
        return path
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
        writer.writeheader()
        for row in rows:
            row = dict(row)
            row["band_names"] = "|".join(row["band_names"])
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read a manifest written by :func:`write_manifest` (CSV or JSON); relative paths resolve against its folder.

    Raises:
        FileNotFoundError / ValueError: naming the manifest and the bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    if path.suffix.lower() == ".json":
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InputError(
                f"manifest {path} is not valid JSON ({err}); index the folder again with `skysense data index`"
            ) from err
        rows = content.get("entries") if isinstance(content, dict) else content
        if not isinstance(rows, list):
            raise InputError(
                f"manifest {path}: expected a JSON list of rows or an object with an 'entries' list; write it with "
                "`skysense data index`"
            )
    else:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise InputError(
                    f"manifest {path}: expected a CSV header with a 'path' column, got {reader.fieldnames}"
                )
            rows = list(reader)
    return [ManifestEntry.from_row(r, path.parent, f"manifest {path}, row {i + 1}") for i, r in enumerate(rows)]


# ------------------------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class BandStats:
    """Running statistics of one band over valid pixels (Chan et al.'s parallel mean/variance update, float64).

    Attributes:
        band: the band's name.
        count: number of valid values.
        total: number of values seen, valid or not.
        mean, m2: running mean and sum of squared deviations.
        min, max: extremes of the valid values.
    """

    band: str
    count: int = 0
    total: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values: np.ndarray, total: int) -> None:
        """Add valid values (1-D) out of ``total`` seen."""
        self.total += total
        n = values.size
        if n == 0:
            return
        values = values.astype(np.float64)
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        combined = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / combined
        self.m2 += m2 + delta * delta * self.count * n / combined
        self.count = combined
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    def as_dict(self) -> dict[str, Any]:
        """count, mean, std (population), min, max, valid_fraction (None where no value was valid)."""
        empty = self.count == 0
        return {
            "band": self.band,
            "count": self.count,
            "mean": None if empty else self.mean,
            "std": None if empty else math.sqrt(self.m2 / self.count),
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "valid_fraction": self.count / self.total if self.total else 0.0,
        }


def compute_stats(entries: Sequence[ManifestEntry], modality: str | None = None, tile: int = 1024) -> dict[str, Any]:
    """Per-band count/mean/std/min/max/valid fraction over every file of a modality, ignoring invalid pixels,
    streaming window by window (:func:`~skysense.data.readers.iter_windows`; memory does not grow with file size).

    Args:
        entries: manifest entries.
        modality: only files of this modality (None: all, which then must agree in band count).
        tile: window side in pixels.

    Returns:
        {"modality", "files", "bands": [{"band", "count", "mean", "std", "min", "max", "valid_fraction"}, ...]}.

    Raises:
        ValueError: no file of the modality, or files that differ in band count or band names (naming both).
    """
    chosen = [e for e in entries if modality is None or e.modality == modality]
    if not entries:
        raise InputError("the manifest has no rows; index a folder that holds rasters with `skysense data index`")
    if not chosen:
        found = sorted({e.modality for e in entries})
        raise InputError(
            f"no file of modality {modality!r} in the manifest (modalities present: {found}); choose one of those "
            "(--modality), or fix the manifest's 'modality' column"
        )
    scope = f"modality {modality!r}" if modality else "the manifest's files (no modality chosen)"
    reference: RasterInfo | None = None
    stats: list[BandStats] = []
    for entry in chosen:
        with RasterFile(entry.path) as raster_file:  # opened once, read window by window
            info = raster_file.info
            bands = info.data_bands
            if reference is None:
                reference = info
                stats = [BandStats(info.band_names[b - 1]) for b in bands]
            elif len(bands) != len(stats):
                raise InputError(
                    f"band counts differ within {scope}: {reference.path} has {len(stats)} bands, "
                    f"{info.path} has {len(bands)}; index them as different modalities or pass --modality"
                )
            elif all(reference.descriptions) and all(info.descriptions) and info.descriptions != reference.descriptions:
                raise InputError(
                    f"band names differ within {scope}: {reference.path} has "
                    f"{list(reference.descriptions)}, {info.path} has {list(info.descriptions)}"
                )
            for window in iter_windows(info, tile):
                raster = raster_file.read(bands, window)
                for band, band_stats in enumerate(stats):
                    band_stats.update(raster.values[band][raster.valid[band]], raster.valid[band].size)
    return {"modality": modality, "files": len(chosen), "bands": [s.as_dict() for s in stats]}


def format_stats(result: dict[str, Any]) -> str:
    """A printable table of :func:`compute_stats`' result."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.6g}"

    header = f"{'band':<12}{'count':>14}{'mean':>14}{'std':>14}{'min':>14}{'max':>14}{'valid':>9}"
    lines = [f"modality {result['modality'] or 'all'}: {result['files']} files", header, "-" * len(header)]
    for band in result["bands"]:
        lines.append(
            f"{band['band']:<12}{band['count']:>14,}{number(band['mean']):>14}{number(band['std']):>14}"
            f"{number(band['min']):>14}{number(band['max']):>14}{band['valid_fraction']:>9.1%}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _products_at(path: str, mtime_ns: int) -> tuple:
    """:func:`~skysense.data.products.sentinel2.find_s2_products`, parsed once per product path (and modification
    time) rather than at every sample a dataset loads."""
    from skysense.data.products.sentinel2 import find_s2_products

    return tuple(find_s2_products(path))


def _product_of(entry: ManifestEntry):
    """The Sentinel-2 product a product row stands for (the one of its date when its folder holds several).

    Raises:
        InputError: the folder no longer holds a product of that date.
    """
    path = Path(entry.path)
    found = _products_at(str(path), path.stat().st_mtime_ns) if path.exists() else ()
    products = [p for p in found if entry.date is None or p.date == entry.date]
    if not products:
        raise InputError(f"{entry.path}: no Sentinel-2 product of {entry.date} any more; index the folder again")
    return products[0]


def _auto_s2_sensor(info: RasterInfo) -> Sensor:
    """S2 L1C for 13-band files, else the model's L2A bands (selected by name or count)."""
    return S2_L1C if len(info.data_bands) == 13 else S2_L2A


@dataclass
class _Group:
    sample: str
    files: dict[str, list[ManifestEntry]] = field(default_factory=dict)


class ManifestDataset(Dataset):
    """One :class:`~skysense.data.collate.Sample` per sample id of a manifest, in sensor units.

    Per sample: the HR image (one file; a second dated HR file becomes ``hr_t2``), the S2 and S1 time series read
    onto the Sentinel grid co-registered with the HR image (:func:`~skysense.data.readers.coregistered_grids`,
    ``ratio`` HR pixels per Sentinel pixel; without an HR image, the earliest S2 (else S1) file's grid), the label
    (one single-band file, on the HR grid, else the Sentinel grid) as a long (H, W) target with ``ignore_index``
    where invalid, latitude/longitude of the grid's centre, and dates from the manifest (or the files).

    Args:
        manifest: a manifest file or its entries.
        ratio: HR pixels per Sentinel pixel (32 for 0.3 m HR and ~10 m Sentinel).
        crop: crop HR images whose size is not a multiple of ``ratio`` (top-left part) instead of refusing them.
        transforms: callable ``Sample -> Sample`` applied to every sample (e.g. Normalize then FillInvalid).
        hr_sensor, s2_sensor, s1_sensor: the sensors the files hold (HR default RGB: pass
            :data:`~skysense.data.sensors.HR_RGBN` for 4-band RGB+NIR; alpha bands are masks, not bands; S1 default
            GRD in dB; :data:`~skysense.data.sensors.S1_GRD_LINEAR` for linear power); ``s2_sensor=None`` picks by
            band count: L1C for 13 bands, else the L2A model bands. Source formats (L1C, linear S1) are converted to
            the model's (:func:`~skysense.data.sensors.to_model`).
        label_nodata: a label value meaning "no data" when the file does not declare one (Sen1Floods11: -1).
        ignore_index: target value of invalid label pixels.
        resampling: for S2/S1 values placed on the Sentinel grid (labels always use nearest).
        samples: only these sample ids (default: every sample with an hr, s2 or s1 file).
        allow_duplicate_dates: keep S2 (or S1) files of one sample that share a date as separate frames; by default
            such a sample is refused, as is a date after today (:func:`~skysense.data.dates.check_series_dates`,
            checked on the manifest's dates when the dataset is made, and on the files' dates when read).

    Attributes:
        sensors: the model sensors of "hr", "s2", "s1" (what :class:`~skysense.data.transforms.Normalize` needs).
        sample_ids: the samples, in order.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[ManifestEntry],
        *,
        ratio: int = 32,
        crop: bool = False,
        transforms: Callable[[Sample], Sample] | None = None,
        hr_sensor: Sensor = HR_RGB,
        s2_sensor: Sensor | None = None,
        s1_sensor: Sensor = S1_GRD,
        label_nodata: float | None = None,
        ignore_index: int = -1,
        resampling: str = "bilinear",
        samples: Sequence[str] | None = None,
        allow_duplicate_dates: bool = False,
    ) -> None:
        entries = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
        self.source = str(manifest) if isinstance(manifest, (str, Path)) else "manifest entries"
        groups: dict[str, _Group] = {}
        for entry in entries:
            if not entry.sample:
                raise InputError(f"{self.source}: {entry.path} has no sample id (index the folder first)")
            groups.setdefault(entry.sample, _Group(entry.sample)).files.setdefault(entry.modality, []).append(entry)
        if samples is None:
            samples = [s for s, g in groups.items() if any(m in g.files for m in ("hr", "s2", "s1"))]
        missing = [s for s in samples if s not in groups]
        if missing:
            raise KeyError(f"{self.source}: no sample {missing[:5]} (of {len(missing)} missing) in the manifest")
        self.groups = groups
        self.sample_ids = list(samples)
        self.allow_duplicate_dates = allow_duplicate_dates
        for sample_id in self.sample_ids:
            for name in ("s2", "s1"):
                series = sorted(groups[sample_id].files.get(name, []), key=_by_date)
                check_series_dates(
                    [e.date for e in series],
                    [e.path for e in series],
                    allow_duplicates=allow_duplicate_dates,
                    what=f"the {name} series of sample {sample_id!r} of {self.source}",
                )
        self.ratio, self.crop, self.transforms = ratio, crop, transforms
        self.hr_sensor, self.s2_sensor, self.s1_sensor = hr_sensor, s2_sensor, s1_sensor
        self.label_nodata, self.ignore_index, self.resampling = label_nodata, ignore_index, resampling
        model = {"hr": hr_sensor, "s2": s2_sensor, "s1": s1_sensor}
        self.sensors = {k: (SENSORS[s.model_sensor] if s and s.model_sensor else s) for k, s in model.items()}
        if self.sensors["s2"] is None:
            self.sensors["s2"] = S2_L2A  # both automatic choices end in the model's L2A bands

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __repr__(self) -> str:
        return f"ManifestDataset({self.source}, {len(self)} samples, ratio {self.ratio})"

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(self.sample_ids[index])
        return self.transforms(sample) if self.transforms is not None else sample

    def load(self, sample_id: str) -> Sample:
        """The sample ``sample_id``, before transforms."""
        group = self.groups[sample_id]
        files = group.files
        where = f"sample {sample_id!r} of {self.source}"
        meta: dict[str, Any] = {
            "id": sample_id,
            "source": sample_id,
            "files": {m: [str(e.path) for e in sorted(es, key=_by_date)] for m, es in files.items()},
        }
        hr_entries = sorted(files.get("hr", []), key=_by_date)
        if len(hr_entries) > 2:
            raise InputError(
                f"{where}: {len(hr_entries)} HR files {[str(e.path) for e in hr_entries]}; expected one (or two "
                "dates for change detection)"
            )
        if len(files.get("label", [])) > 1:
            raise InputError(f"{where}: {len(files['label'])} label files {meta['files']['label']}; expected one")
        hr = hr_valid = hr_t2 = hr_date = None
        hr_grid = sentinel_grid = None
        if hr_entries:
            info = raster_info(hr_entries[0].path)
            hr_grid, sentinel_grid = coregistered_grids(info, self.ratio, self.crop)
            sensor = self.hr_sensor
            raster = read_raster(info.path, sensor_bands(info, sensor), _top_left(hr_grid.shape))
            values, valid = raster.values, raster.valid
            hr = torch.from_numpy(values)
            hr_valid = torch.from_numpy(valid.all(axis=0))
            hr_date = hr_entries[0].date
            if len(hr_entries) == 2:
                second = raster_info(hr_entries[1].path)
                bands = sensor_bands(second, sensor)
                if hr_grid.crs is not None:
                    other = reproject_to_grid(second.path, hr_grid.crs, hr_grid.transform, hr_grid.shape, bands=bands)
                else:
                    other = read_raster(second.path, bands, _top_left(hr_grid.shape))
                if other.values.shape != values.shape:
                    raise InputError(
                        f"{where}: the second HR image {second.path} has shape {other.values.shape}, expected "
                        f"{values.shape}"
                    )
                hr_t2 = torch.from_numpy(other.values)
                hr_valid = hr_valid & torch.from_numpy(other.valid.all(axis=0))
        series = {}
        for name in ("s2", "s1"):
            entries = sorted(files.get(name, []), key=_by_date)
            if not entries:
                continue
            frames = [_product_of(e) if e.driver == PRODUCT_DRIVER else e.path for e in entries]
            if sentinel_grid is None:
                first = frames[0]
                sentinel_grid = raster_info(first).grid if isinstance(first, Path) else first.grid()
            elif sentinel_grid.crs is None:
                raise InputError(
                    f"{where}: the HR image {hr_entries[0].path} has no CRS, so the {name} files cannot be "
                    "co-registered with it"
                )
            if name == "s1":
                sensor = self.s1_sensor
            elif self.s2_sensor is not None:
                sensor = self.s2_sensor
            elif isinstance(frames[0], Path):
                sensor = _auto_s2_sensor(raster_info(frames[0]))
            else:
                sensor = SENSORS[frames[0].sensor]
            dates = [e.date for e in entries]
            series[name] = read_time_series(
                frames,
                grid=sentinel_grid,
                sensor=sensor,
                dates=None if any(d is None for d in dates) else dates,
                resampling=self.resampling,
                allow_duplicate_dates=self.allow_duplicate_dates,
            )
        target = None
        if files.get("label"):
            label_entry = files["label"][0]
            grid = hr_grid or sentinel_grid
            if grid is None:
                raise InputError(f"{where}: a label {label_entry.path} but no HR, S2 or S1 image to place it on")
            if grid.crs is not None:
                label = reproject_to_grid(
                    label_entry.path, grid.crs, grid.transform, grid.shape, "nearest", nodata=self.label_nodata
                )
            else:
                label = read_raster(label_entry.path, None, _top_left(grid.shape), nodata=self.label_nodata)
            if label.values.shape[0] != 1:
                raise InputError(f"{where}: label {label_entry.path} has {label.values.shape[0]} bands, expected 1")
            classes = np.where(label.valid[0], label.values[0], self.ignore_index)
            target = torch.from_numpy(classes.astype(np.int64))
        lat = lon = None
        grid = hr_grid or sentinel_grid
        if grid is not None and grid.crs is not None:
            lat, lon = grid.center_lat_lon()
        return Sample(
            hr=hr,
            hr_valid=hr_valid,
            hr_date=hr_date,
            hr_t2=hr_t2,
            s2=series.get("s2"),
            s1=series.get("s1"),
            lat=lat,
            lon=lon,
            target=target,
            meta=meta,
        )


def _by_date(entry: ManifestEntry) -> tuple[dt.date, str]:
    return entry.date or dt.date.min, str(entry.path)


def _top_left(shape: tuple[int, int]) -> Window:
    return Window(0, 0, shape[1], shape[0])
