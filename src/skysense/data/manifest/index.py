"""Indexing a folder: one row per raster file, or per product as downloaded — a Sentinel-2 product (a ``.SAFE``
folder, a ``.SAFE.zip``, a folder of per-band files), a STAC Item, a Sentinel-1 acquisition as one file per
polarisation: one row each, their band files not listed one by one (:mod:`skysense.data.manifest.products`) —,
grouped into samples.

Sample grouping (:func:`assign_samples`): files are linked (union-find) when

- their footprints coincide: bounds transformed to EPSG:4326 agree within half a pixel of the coarser file, or
- they share a non-empty *name key* and their footprints intersect (or one of them has no CRS). The name key is the
  file stem, lower-cased, without dates, Sentinel/Landsat product boilerplate (``S2A``, ``MSIL2A``, ``N0213``,
  ``R051``), and modality words (``S1Hand``, ``LabelHand``, ``s2``, ``hr``, ...): ``Spain_7370579_S1Hand`` and
  ``Spain_7370579_LabelHand`` → ``spain_7370579``; an S2 product name keeps its tile (``t30syh``); a Sentinel-1
  product name has no key (it names no place) and groups by footprint only.

Indexing reads the first and the last block of every band of every file
(:func:`~skysense.data.raster.check_readable`), so a truncated download or a corrupt file is found when the folder
is indexed, not in the middle of training: by default the folder is refused, naming every such file; with
``strict=False`` (CLI ``--no-strict``) they are left out of the manifest and listed. Dates after today, and S2/S1
files of one sample that share a date, are noted in the ``notes`` column (:class:`ManifestDataset` refuses them).

Files without a footprint (PNGs, JPEGs, GeoTIFFs without a CRS) that share a name key are one sample, unless that
sample would hold what no sample can (more than two HR images, more than one label): then they are told apart by the
folder above their own, as in a change-detection dataset laid out ``train/A/0.png``, ``train/B/0.png``,
``train/label/0.png``, ``test/A/0.png``, ...: ``train_0`` and ``test_0``, not one sample of four images.

A group's sample id is its most common name key (prefixed by that folder when files were told apart by it), else
``lat<lat>_lon<lon>`` of its footprint centre, else the file stem; clashes get ``_2``, ``_3``, ... in path order.
A large file covering several places is one sample: crop per place first.

Each row's ``split`` is "train", "val" or "test" when a folder of its path below the indexed folder names one
(:func:`split_of`), which is how most labelled datasets are laid out.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds

from skysense.data.datasets.base import split_named
from skysense.data.dates import _listing
from skysense.data.manifest.guess import entry_from_info, name_key
from skysense.data.manifest.products import pair_polarisations, s2_entries, stac_entries
from skysense.data.manifest.schema import RASTER_SUFFIXES, ManifestEntry, _relative
from skysense.data.raster import UnreadableRaster, check_readable
from skysense.data.raster.litter import is_litter
from skysense.errors import InputError


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
    context: dict[int, Path] = {}  # the folder that tells apart same-named files without a footprint
    for members in by_key.values():
        unplaced = [i for i in members if footprints[i] is None]
        if _overfull([entries[i] for i in unplaced]):
            context.update({i: Path(entries[i].path).parent.parent for i in unplaced})
        clusters: list[tuple[int, tuple[float, ...] | None]] = []  # (representative, footprint)
        for i in members:
            fp = footprints[i][0] if footprints[i] else None
            for representative, cluster_fp in clusters:
                if fp is None and cluster_fp is None and context.get(i) != context.get(representative):
                    continue
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
            folders = {context[i].name for i in members if i in context}
            if len(folders) == 1 and folders != {""}:
                base = f"{folders.pop()}_{base}"
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


_MOST_PER_SAMPLE = {"hr": 2, "label": 1}  # two dates for change detection, one label (ManifestDataset's rule)


def _overfull(entries: Sequence[ManifestEntry]) -> bool:
    """Whether these files, as one sample, would hold more HR images or labels than a sample can."""
    counts = Counter(e.modality for e in entries)
    return any(counts[modality] > most for modality, most in _MOST_PER_SAMPLE.items())


def split_of(path: str | Path, root: str | Path) -> str:
    """The split a folder of ``path`` below ``root`` names ("train", "val", "test"; the deepest such folder wins),
    else "". Only whole folder names count: ``test/train_tiles/x.tif`` is "test"."""
    try:
        parts = Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(root))).parts[:-1]
    except ValueError:  # outside root (a STAC asset elsewhere)
        return ""
    splits = [split for split in map(split_named, parts) if split]
    return splits[-1] if splits else ""


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
    return sorted(p for p in files if p.is_file() and not p.name.endswith(".aux.xml") and not is_litter(p))


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

    Each file's first and last block of every band is read (:func:`~skysense.data.raster.check_readable`), so a
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
    entries, covered = s2_entries(root) if pattern is None else ([], set())
    unreadable: dict[Path, str] = {}
    if pattern is None:
        stac_rows, stac_files, stac_unreadable = stac_entries(root, covered)
        entries += stac_rows
        covered |= stac_files
        unreadable.update(stac_unreadable)
    # a band, mask or metadata file of a product row: compared as absolute paths, since pystac makes a STAC Item's
    # hrefs absolute where the listing under a relative root is relative
    covered = {Path(os.path.abspath(p)) for p in covered}
    for path in find_rasters(root, pattern):
        if Path(os.path.abspath(path)) in covered:
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
    entries = [replace(e, split=split_of(e.path, root)) for e in entries]
    return _note_shared_dates(assign_samples(pair_polarisations(entries)))


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
