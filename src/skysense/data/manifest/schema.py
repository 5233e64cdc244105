"""The manifest row (:class:`ManifestEntry`) and its files: CSV (one row per file, columns in field order) or JSON
(a list of objects). Reading a manifest refuses unknown modalities and malformed numbers naming the row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rasterio.crs import CRS

from skysense.errors import InputError
from skysense.files import write_durably

RASTER_SUFFIXES = (".tif", ".tiff", ".gtiff", ".jp2", ".jpg", ".jpeg", ".png", ".vrt", ".img")
MODALITIES = ("hr", "s2", "s1", "label", "unknown")


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
        item: for a product row (``driver`` one of :data:`PRODUCT_DRIVERS`), what identifies the product within
            ``path``: a STAC Item's id (``path`` its JSON), a Sentinel-1 pair's file names joined by "|" (``path``
            their folder, or its first file); "" for a file row and a Sentinel-2 product (its date identifies it).
        split: "train", "val" or "test" when a folder of the file's path (below the indexed folder) names one
            (``train``/``training``, ``val``/``valid``/``validation``, ``test``/``testing``), else "" (edit the column
            to assign samples by hand; :class:`~skysense.data.manifest.ManifestDataset` splits the samples of a
            manifest without any by a seeded hash of their ids).
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
    item: str = ""
    split: str = ""

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
                item=str(row.get("item") or ""),
                split=_split(row.get("split")),
            )
        except (KeyError, ValueError, TypeError) as err:
            raise InputError(
                f"{where}: bad row {row!r} ({err!r}); fix the row, or index the folder again with `skysense data index`"
            ) from err


SPLITS = ("train", "val", "test")


def _split(value: Any) -> str:
    """A manifest's split cell: "", or one of :data:`SPLITS` (case and spaces ignored)."""
    split = str(value or "").strip().lower()
    if split and split not in SPLITS:
        raise ValueError(f"split {value!r} is not one of {', '.join(SPLITS)} (or empty)")
    return split


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


# The driver column of a product row: a product read through skysense.data.products, not one GDAL file
PRODUCT_DRIVER = "Sentinel-2 product"  # a .SAFE folder, a .SAFE.zip, a folder of per-band files
S1_PAIR_DRIVER = "Sentinel-1 pair"  # one file per polarisation of one acquisition
STAC_DRIVER = "STAC item"  # an Item of a STAC Item/ItemCollection JSON
PRODUCT_DRIVERS = (PRODUCT_DRIVER, S1_PAIR_DRIVER, STAC_DRIVER)


_COLUMNS = [f.name for f in fields(ManifestEntry)]


def write_manifest(entries: Iterable[ManifestEntry], path: str | Path) -> Path:
    """Write entries as CSV, or JSON when ``path`` ends in ".json"; file paths relative to the manifest's folder
    when they lie under it. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [e.to_row(path.parent) for e in entries]
    if path.suffix.lower() == ".json":
        write_atomically(path, json.dumps({"version": 1, "entries": rows}, indent=1) + "\n")
        return path
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=_COLUMNS)
    writer.writeheader()
    for row in rows:
        row = dict(row)
        row["band_names"] = "|".join(row["band_names"])
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    write_atomically(path, text.getvalue())
    return path


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`skysense.files.write_durably`: a failed write (a full disk)
    leaves the previous file, never half of one, and no temporary file; missing folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, lambda handle: handle.write(text.encode("utf-8")))


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
