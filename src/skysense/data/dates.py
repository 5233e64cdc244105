"""Acquisition dates of raster files: from the file name, the GeoTIFF tags, or a sidecar table.

Sources are tried in this order, the first that gives a date wins:

1. ``filename_regex`` — a user regex with a named ``date`` group, searched in the file name, parsed with
   ``date_format`` (TorchGeo's convention: ``filename_regex`` + ``date_format``, default ``"%Y%m%d"``).
2. ``sidecar`` — a JSON or CSV table mapping file name (or path, or stem) → date.
3. The file name: Sentinel-2 product/granule names (``S2A_MSIL2A_20190917T105031_…``, ``T30SYH_20190917T105031_B02``),
   Sentinel-1 (``S1A_IW_GRDH_1SDV_20190917T175953_…``), Landsat (``LC08_L2SP_199026_20200917_20200926_02_T1``),
   HLS (``HLS.S30.T30SYH.2019260T105031``), then a generic date ``YYYYMMDD``, ``YYYY-MM-DD`` or ``YYYY_MM_DD``, and
   last a year and day of year ``YYYYDOY`` (7 digits alone).
   Product names carry a processing date too: only the sensing date is used. Two different generic dates in one
   name are ambiguous and refused.
4. GeoTIFF tags: ``ACQUISITION_DATE``, ``DATE_ACQUIRED``, ``SENSING_TIME``, ``SENSING_DATE``,
   ``DATATAKE_SENSING_START``, ``PRODUCT_START_TIME``, ``ACQUISITION_START_TIME``, ``DATE``, and last
   ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``; by the TIFF standard the file's creation time, so only a fallback).
5. The name of the file's folder, with the patterns of 3 (one folder per acquisition: ``2019-09-17/vv.tif``).

A source that is found but cannot be parsed is an error, never skipped: a wrong date is worse than none.

:func:`check_series_dates` refuses the dates of one time series (one place, one modality) that cannot be right: a
date after today, and two files of one date (unless duplicates are allowed).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from skysense.errors import InputError

# the generic patterns accept years in this range only, so that ids such as 12345678 are not read as dates
_YEAR_RANGE = (1950, 2100)

# (name, regex with a `date` group (8 digits YYYYMMDD, or 7 digits YYYYDDD for `doy`)), most specific first
_PRODUCT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Sentinel-2 product", re.compile(r"S2[A-D]_MSI(?:L1C|L2A|L2B)_(?P<date>\d{8})T\d{6}", re.IGNORECASE)),
    ("Sentinel-2 granule", re.compile(r"(?<![A-Z0-9])T\d{2}[A-Z]{3}_(?P<date>\d{8})T\d{6}", re.IGNORECASE)),
    ("Sentinel-1 product", re.compile(r"S1[A-D]_(?:IW|EW|SM|WV|S\d)_[A-Z_]{4}_\d[A-Z]{3}_(?P<date>\d{8})T\d{6}", re.I)),
    ("Landsat product", re.compile(r"L[CTEMO]0\d_L[0-9A-Z]{3}_\d{6}_(?P<date>\d{8})_\d{8}_\d{2}_", re.IGNORECASE)),
    ("HLS product", re.compile(r"HLS\.[LS]30\.T\d{2}[A-Z]{3}\.(?P<doy>\d{7})T\d{6}", re.IGNORECASE)),
)
_GENERIC_PATTERN = re.compile(r"(?<!\d)(?P<year>\d{4})(?P<sep>[-_]?)(?P<month>\d{2})(?P=sep)(?P<day>\d{2})(?!\d)")

# tags in the order they are trusted; keys are compared case-insensitively
DATE_TAGS = (
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_DATE",
    "DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "ACQUISITION_START_TIME",
    "DATE",
    "TIFFTAG_DATETIME",
)

_FORMATS = (
    "%Y-%m-%d",
    "%Y%m%d",
    "%Y_%m_%d",
    "%Y/%m/%d",
    "%Y:%m:%d %H:%M:%S",  # TIFFTAG_DATETIME
    "%Y:%m:%d",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y%m%dT%H%M%S",
)


def parse_date(text: str, date_format: str | None = None, source: str = "input") -> dt.date:
    """A date or date-time string → ``datetime.date`` (the date part; time zones are not converted).

    Args:
        text: e.g. "2019-09-17", "20190917", "2019:09:17 10:50:31", "2019-09-17T10:50:31.024Z".
        date_format: a ``strptime`` format to use instead of the built-in ones.
        source: named in the error.

    Raises:
        ValueError: naming ``source``, the text and the formats tried.
    """
    text = text.strip()
    if date_format is not None:
        try:
            return dt.datetime.strptime(text, date_format).date()
        except ValueError as err:
            raise ValueError(f"{source}: cannot parse date {text!r} with format {date_format!r} ({err})") from err
    for fmt in _FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    iso = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        return dt.datetime.fromisoformat(iso).date()
    except ValueError:
        pass
    raise ValueError(f"{source}: cannot parse date {text!r}; expected ISO 8601 or one of {list(_FORMATS)}")


def _generic_dates(name: str) -> list[dt.date]:
    found = []
    for match in _GENERIC_PATTERN.finditer(name):
        year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
        if not _YEAR_RANGE[0] <= year <= _YEAR_RANGE[1]:
            continue
        try:
            found.append(dt.date(year, month, day))
        except ValueError:
            continue
    return found


def date_from_name(name: str, filename_regex: str | None = None, date_format: str | None = "%Y%m%d") -> dt.date | None:
    """The acquisition date in a file name, or None when it holds none.

    Args:
        name: the file name (a path's directories are ignored).
        filename_regex: a regex with a named ``date`` group, searched in the name; when given, only it is used.
        date_format: ``strptime`` format of the ``date`` group (None: the built-in formats).

    Raises:
        ValueError: the regex has no ``date`` group or its match does not parse, or the name holds two different
            generic dates (ambiguous), naming the file.
    """
    name = Path(name).name
    if filename_regex is not None:
        pattern = re.compile(filename_regex, re.VERBOSE) if isinstance(filename_regex, str) else filename_regex
        if "date" not in pattern.groupindex:
            raise ValueError(f"filename_regex {pattern.pattern!r} has no named group 'date' (use (?P<date>...))")
        match = pattern.search(name)
        if match is None:
            return None
        return parse_date(match["date"], date_format, f"{name} (filename_regex {pattern.pattern!r})")
    for label, pattern in _PRODUCT_PATTERNS:
        match = pattern.search(name)
        if match is None:
            continue
        if "doy" in pattern.groupindex:
            year, day_of_year = int(match["doy"][:4]), int(match["doy"][4:])
            return dt.date(year, 1, 1) + dt.timedelta(days=day_of_year - 1)
        return parse_date(match["date"], "%Y%m%d", f"{name} ({label})")
    dates = sorted(set(_generic_dates(name)))
    if len(dates) > 1:
        raise ValueError(
            f"{name}: ambiguous acquisition date, the name holds {[d.isoformat() for d in dates]}; pass a "
            "filename_regex with a (?P<date>...) group or a sidecar table"
        )
    if not dates:  # last: a year and day of year, YYYYDOY (7 digits alone, e.g. 2019260)
        dates = sorted(set(_day_of_year_dates(name)))
        if len(dates) > 1:
            raise ValueError(
                f"{name}: ambiguous acquisition date, the name holds {[d.isoformat() for d in dates]} (YYYYDOY); "
                "pass a filename_regex with a (?P<date>...) group or a sidecar table"
            )
    return dates[0] if dates else None


_DAY_OF_YEAR_PATTERN = re.compile(r"(?<![0-9])(?P<year>\d{4})(?P<doy>\d{3})(?![0-9])")


def _day_of_year_dates(name: str) -> list[dt.date]:
    found = []
    for match in _DAY_OF_YEAR_PATTERN.finditer(name):
        year, day = int(match["year"]), int(match["doy"])
        if _YEAR_RANGE[0] <= year <= _YEAR_RANGE[1] and 1 <= day <= (366 if year % 4 == 0 else 365):
            found.append(dt.date(year, 1, 1) + dt.timedelta(days=day - 1))
    return found


def date_from_tags(tags: Mapping[str, str], source: str = "input") -> dt.date | None:
    """The acquisition date in a GeoTIFF's tags (see :data:`DATE_TAGS`), or None when none is present.

    Raises:
        ValueError: a date tag is present but does not parse, naming ``source`` and the tag.
    """
    upper = {key.upper(): value for key, value in tags.items()}
    for key in DATE_TAGS:
        if key in upper and str(upper[key]).strip():
            return parse_date(str(upper[key]), None, f"{source} (tag {key})")
    return None


@lru_cache(maxsize=32)
def _load_sidecar_cached(path: str, mtime: float) -> dict[str, dt.date]:
    return _parse_sidecar(Path(path))


def load_sidecar(path: str | Path) -> dict[str, dt.date]:
    """A sidecar table → {key: date}; keys are the file names (or paths) as written in the table.

    Formats: JSON ``{"a.tif": "2019-09-17", ...}`` or ``[{"file": "a.tif", "date": "2019-09-17"}, ...]``; CSV with a
    header holding a file column (``file``, ``filename``, ``path`` or ``name``) and a date column (``date``,
    ``acquisition_date`` or ``datetime``), or two columns without a header.

    Raises:
        FileNotFoundError / ValueError: naming the sidecar and the row or key at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no date sidecar at {path}")
    return dict(_load_sidecar_cached(str(path.resolve()), path.stat().st_mtime))


_FILE_COLUMNS = ("file", "filename", "file_name", "path", "name")
_DATE_COLUMNS = ("date", "acquisition_date", "datetime")


def _parse_sidecar(path: Path) -> dict[str, dt.date]:
    table: dict[str, dt.date] = {}
    if path.suffix.lower() == ".json":
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"date sidecar {path} is not valid JSON: {err}") from err
        if isinstance(content, dict):
            rows = list(content.items())
        elif isinstance(content, list):
            rows = []
            for i, item in enumerate(content):
                keys = {k.lower(): k for k in item} if isinstance(item, dict) else {}
                file_key = next((keys[c] for c in _FILE_COLUMNS if c in keys), None)
                date_key = next((keys[c] for c in _DATE_COLUMNS if c in keys), None)
                if file_key is None or date_key is None:
                    raise ValueError(
                        f"date sidecar {path}, entry {i}: expected an object with a file key {_FILE_COLUMNS} and a "
                        f"date key {_DATE_COLUMNS}, got {item!r}"
                    )
                rows.append((item[file_key], item[date_key]))
        else:
            raise ValueError(f"date sidecar {path}: expected a JSON object or list, got {type(content).__name__}")
        for key, value in rows:
            table[str(key)] = parse_date(str(value), None, f"date sidecar {path}, entry {key!r}")
        return table
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"date sidecar {path} is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    file_index = next((header.index(c) for c in _FILE_COLUMNS if c in header), None)
    date_index = next((header.index(c) for c in _DATE_COLUMNS if c in header), None)
    if file_index is None or date_index is None:
        if len(header) != 2:
            raise ValueError(
                f"date sidecar {path}: expected a header with a file column {_FILE_COLUMNS} and a date column "
                f"{_DATE_COLUMNS}, or two columns 'file,date' without header; got {rows[0]}"
            )
        file_index, date_index, first_row = 0, 1, 1
    else:
        rows, first_row = rows[1:], 2
    for number, row in enumerate(rows, start=first_row):
        if len(row) <= max(file_index, date_index):
            raise ValueError(f"date sidecar {path}, row {number}: expected a file and a date, got {row}")
        key = row[file_index].strip()
        table[key] = parse_date(row[date_index], None, f"date sidecar {path}, row {number} ({key})")
    return table


def _sidecar_lookup(table: Mapping[str, dt.date], path: Path) -> dt.date | None:
    for key in (str(path), path.as_posix(), path.name, path.stem):
        if key in table:
            return table[key]
    # relative paths in the table: match by suffix of the path
    for key, value in table.items():
        if "/" in key and path.as_posix().endswith("/" + key.lstrip("./")):
            return value
    return None


def acquisition_date(
    path: str | Path,
    *,
    filename_regex: str | None = None,
    date_format: str | None = "%Y%m%d",
    sidecar: str | Path | Mapping[str, dt.date | str] | None = None,
    use_name: bool = True,
    use_tags: bool = True,
    tags: Mapping[str, str] | None = None,
) -> dt.date:
    """The acquisition date of one raster file (see the module docstring for the order of sources).

    Args:
        path: the file (it is opened only when tags are needed and ``tags`` is not given).
        filename_regex: user regex with a named ``date`` group, searched in the file name.
        date_format: ``strptime`` format of that group (TorchGeo's default ``"%Y%m%d"``; None: flexible).
        sidecar: a JSON/CSV table (path) or a mapping file name → date.
        use_name: look for dates in the file name (built-in patterns).
        use_tags: look at the GeoTIFF tags.
        tags: the file's tags if already read (saves opening it).

    Returns:
        The acquisition date.

    Raises:
        ValueError: no date found (naming the file and every source tried), an ambiguous name, or a date that
            does not parse.
    """
    path = Path(path)
    tried = []
    if filename_regex is not None:
        found = date_from_name(path.name, filename_regex, date_format)
        if found is not None:
            return found
        tried.append(f"filename_regex {filename_regex!r} (no match in {path.name!r})")
    if sidecar is not None:
        if isinstance(sidecar, Mapping):
            table = {
                str(k): v if isinstance(v, dt.date) else parse_date(str(v), None, f"sidecar entry {k!r}")
                for k, v in sidecar.items()
            }
            where = "the given sidecar mapping"
        else:
            table = load_sidecar(sidecar)
            where = f"sidecar {sidecar}"
        found = _sidecar_lookup(table, path)
        if found is not None:
            return found
        tried.append(f"{where} (no entry for {path.name!r})")
    if use_name:
        found = date_from_name(path.name)
        if found is not None:
            return found
        tried.append("file-name patterns (Sentinel-2/-1, Landsat, HLS product names; YYYYMMDD, YYYY-MM-DD, YYYY_MM_DD)")
    if use_tags:
        if tags is None:
            tags = _read_tags(path)
        found = date_from_tags(tags, str(path))
        if found is not None:
            return found
        tried.append(f"tags {list(DATE_TAGS)}")
    if use_name and path.parent.name:  # last: the folder's name (one folder per acquisition, e.g. vv.tif/vh.tif)
        found = date_from_name(path.parent.name)
        if found is not None:
            return found
        tried.append(f"the folder name {path.parent.name!r}")
    raise ValueError(f"{path}: no acquisition date found; tried {'; '.join(tried) or 'nothing (all sources off)'}")


def _listing(items: Sequence[str], limit: int = 5) -> str:
    """ "a, b and c", or "a, b, c, d, e and 3 more" past ``limit`` items."""
    shown = list(items[:limit])
    rest = len(items) - len(shown)
    if rest:
        return f"{', '.join(shown)} and {rest} more"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def check_series_dates(
    dates: Sequence[dt.date],
    files: Sequence[str | Path],
    *,
    allow_duplicates: bool = False,
    what: str = "time series",
    today: dt.date | None = None,
) -> None:
    """Refuse dates of one time series (one place, one modality) that cannot be right.

    Refused: a date after today (UTC; an acquisition cannot lie in the future, so the date came from a wrong file
    name, tag or sidecar entry), and, unless ``allow_duplicates``, two or more files of one date (the same
    acquisition twice, or a wrong date: stacked as two frames of one day they would silently weigh double). Files
    of one date that are different things — two modalities, or two places — are not one series: check each series
    on its own.

    Args:
        dates: one date per file (a ``datetime`` counts by its date; None, an unknown date, is skipped).
        files: the files, in the order of ``dates`` (named in the errors).
        allow_duplicates: accept files that share a date.
        what: the series, named at the start of the message (e.g. "sample 'x', s2 series of manifest.csv").
        today: the current date (default: today in UTC); for tests.

    Raises:
        InputError: ``dates`` and ``files`` differ in length; dates after today (naming each file and its date);
            files sharing a date (naming them per date, and how to keep them).
    """
    if len(dates) != len(files):
        raise InputError(f"{what}: {len(files)} files but {len(dates)} dates; give one date per file")
    today = today or dt.datetime.now(dt.timezone.utc).date()
    days = [d.date() if isinstance(d, dt.datetime) else d for d in dates]
    future = [f"{path} ({day.isoformat()})" for day, path in zip(days, files, strict=True) if day and day > today]
    if future:
        verb = "is" if len(future) == 1 else "are"
        raise InputError(
            f"{what}: {_listing(future)} {verb} dated after today ({today.isoformat()} UTC); fix the date in the file "
            "name, date tag or sidecar entry, or pass the correct dates explicitly"
        )
    if allow_duplicates:
        return
    by_day: dict[dt.date, list[str]] = {}
    for day, path in zip(days, files, strict=True):
        if day is not None:
            by_day.setdefault(day, []).append(str(path))
    shared = [f"{day.isoformat()}: {' and '.join(paths)}" for day, paths in sorted(by_day.items()) if len(paths) > 1]
    if shared:
        raise InputError(
            f"{what}: files share a date ({_listing(shared, 3)}), so one place would get two frames of one day; "
            "remove or mosaic the duplicates or fix their dates, or keep them as separate frames with "
            "allow_duplicate_dates=True (CLI: --allow-duplicate-dates)"
        )


def _read_tags(path: Path) -> dict[str, str]:
    import rasterio

    if not path.is_file():
        raise FileNotFoundError(f"no raster at {path}")
    try:
        with rasterio.open(path) as src:
            return dict(src.tags())
    except rasterio.errors.RasterioError as err:
        raise InputError(
            f"{path}: cannot open the raster to read its date tags ({err}); re-download or re-export it, or give "
            "its date by filename_regex or sidecar"
        ) from err


def acquisition_dates(paths: Sequence[str | Path], **kwargs) -> list[dt.date]:
    """:func:`acquisition_date` of each path (same keyword arguments)."""
    return [acquisition_date(p, **kwargs) for p in paths]
