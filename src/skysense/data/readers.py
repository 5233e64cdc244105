"""Reading rasters with rasterio: values as float32 plus an explicit validity mask (nodata and NaN are never
silently turned into numbers).

One reader per job, all built on :func:`read_raster`:

- :func:`raster_info` — a file's metadata, without reading pixels; :func:`check_readable` — the same after reading
  the first and the last block of every band (a truncated download keeps its header and loses its last blocks).
- :func:`read_raster` — bands (by 1-based index or by name) of a window (pixels, or bounds in the file's CRS);
  :class:`RasterFile` does the same on a file opened once, for streaming many windows.
- :func:`reproject_to_grid` — any CRS onto a target grid; values resampled (bilinear by default, nearest for
  labels), the validity mask carried with nearest neighbour, and a number only where the source had one.
- :func:`coregistered_grids` / :func:`read_coregistered` — the Sentinel grid whose pixel is ``ratio`` HR pixels
  (32 at the paper's 0.3 m / ~10 m), same origin and CRS as the HR image, and a Sentinel file read onto it.
- :func:`read_time_series` — per-date files → a :class:`~skysense.data.collate.TimeSeries` on one grid.
- :func:`iter_windows` — block-aligned windows for streaming over files of any size in constant memory.

Validity is per band: False where the file's mask says so (nodata value, an internal per-dataset or per-band mask,
an alpha band), where the value is NaN/inf, and where an optional extra mask says so. A time series keeps one mask
per pixel and frame: a pixel is valid only if every band is.

A file that cannot be opened, or whose pixels cannot be read (truncated, corrupt), raises :class:`UnreadableRaster`
(an :class:`~skysense.errors.InputError`, so a ``ValueError``) whose message names the file and, for a failed read,
the bands and pixels; GDAL's own message ("Read failed. See previous exception for details.") names neither.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from skysense.data.collate import TimeSeries
from skysense.data.dates import acquisition_date, check_series_dates, parse_date
from skysense.data.sensors import SENSORS, Sensor, canonical_band_name, s2_l1c_to_model_bands, to_model
from skysense.errors import InputError

Bounds = tuple[float, float, float, float]  # (left, bottom, right, top) in a raster's CRS
BandSelection = Sequence[int | str]


# ------------------------------------------------------------------------------------------------------------------
# Grids and metadata
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """A pixel grid: CRS, affine transform (pixel → CRS coordinates of the top-left corner) and size.

    Attributes:
        crs: coordinate reference system, or None for a non-georeferenced image.
        transform: affine transform of the top-left pixel corner.
        height: rows.
        width: columns.
    """

    crs: CRS | None
    transform: Affine
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.height, self.width

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) in the grid's CRS (north-up grids; rotated ones give their envelope)."""
        corners = [
            self.transform @ (c, r) for c, r in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height))
        ]
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, positive."""
        return math.hypot(self.transform.a, self.transform.d), math.hypot(self.transform.b, self.transform.e)

    def center_lat_lon(self) -> tuple[float, float]:
        """Latitude and longitude (degrees, WGS 84) of the grid's centre.

        Raises:
            ValueError: if the grid has no CRS.
        """
        from rasterio.warp import transform as warp_transform

        if self.crs is None:
            raise ValueError("the grid has no CRS, cannot compute latitude/longitude")
        x, y = self.transform @ (self.width / 2, self.height / 2)
        lon, lat = warp_transform(self.crs, "EPSG:4326", [x], [y])
        return float(lat[0]), float(lon[0])


@dataclass(frozen=True)
class RasterInfo:
    """A file's metadata, read without touching pixels.

    Attributes:
        path: the file.
        driver: GDAL driver ("GTiff", "JPEG", "PNG", ...).
        width, height: size in pixels.
        count: number of bands (alpha bands included).
        dtypes: data type of each band.
        crs: CRS, or None.
        transform: affine transform (identity for non-georeferenced images).
        nodata: the nodata value, or None.
        descriptions: band descriptions as stored (None where a band has none).
        colorinterp: colour interpretation of each band ("red", "alpha", "gray", "undefined", ...).
        tags: the dataset's default-domain tags.
        block_shape: (rows, cols) of the first band's internal blocks (tiles or strips).
        overviews: number of overview levels of the first band.
    """

    path: Path
    driver: str
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    crs: CRS | None
    transform: Affine
    nodata: float | None
    descriptions: tuple[str | None, ...]
    colorinterp: tuple[str, ...]
    tags: dict[str, str]
    block_shape: tuple[int, int]
    overviews: int

    @property
    def grid(self) -> Grid:
        return Grid(self.crs, self.transform, self.height, self.width)

    @property
    def bounds(self) -> Bounds:
        return self.grid.bounds

    @property
    def res(self) -> tuple[float, float]:
        return self.grid.res

    @property
    def band_names(self) -> tuple[str, ...]:
        """Descriptions, or "band_<i>" (1-based) where a band has none."""
        return tuple(d or f"band_{i}" for i, d in enumerate(self.descriptions, start=1))

    @property
    def data_bands(self) -> list[int]:
        """1-based indexes of the bands that hold data (alpha bands excluded: they are masks)."""
        return [i for i, c in enumerate(self.colorinterp, start=1) if c != "alpha"] or list(range(1, self.count + 1))


class UnreadableRaster(InputError):
    """A raster whose header or pixels cannot be read: a truncated download, a corrupt or a non-raster file.

    The message is ``<file>: <problem>; <what to do>``.

    Attributes:
        path: the file (None when rebuilt from a message alone, e.g. by a DataLoader worker).
        problem: what failed, without the file name or advice (e.g. "cannot read rows 512:1024, columns 512:1024 of
            band 2 (... TIFFReadEncodedTile() failed.)").
    """

    def __init__(self, message: str, *, path: Path | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem if problem is not None else message


def _gdal_message(err: BaseException) -> str:
    """GDAL's own words for a failure: rasterio's "Read failed. See previous exception for details." chains the
    message that names the band and block (a ``CPLE_*`` error) as its cause."""
    cause = err.__cause__ or err.__context__
    text = str(err)
    if cause is not None and str(cause) and "previous exception" in text:
        text = str(cause)
    return " ".join(text.split())


def _open_error(path: Path, err: Exception) -> UnreadableRaster:
    problem = f"cannot open the raster ({_gdal_message(err)})"
    return UnreadableRaster(
        f"{path}: {problem}; check that it is a complete raster file of a format GDAL reads (re-download or "
        "re-export it if it is truncated or corrupt)",
        path=path,
        problem=problem,
    )


def _read_error(path: Path, err: Exception, indexes: Sequence[int], window: Window, part: str = "") -> UnreadableRaster:
    """The error of a failed read of ``part`` ("" for values and masks together, or "the validity mask of ") of the
    bands ``indexes`` in ``window``."""
    rows = f"{window.row_off}:{window.row_off + window.height}"
    columns = f"{window.col_off}:{window.col_off + window.width}"
    bands = f"band {indexes[0]}" if len(indexes) == 1 else f"bands {list(indexes)}"
    problem = f"cannot read rows {rows}, columns {columns} of {part}{bands} ({_gdal_message(err)})"
    return UnreadableRaster(
        f"{path}: {problem}; the file is truncated or corrupt: re-download or re-export it",
        path=path,
        problem=problem,
    )


def _check_exists(path: Path) -> None:
    if str(path).startswith("/vsi"):  # a GDAL virtual file (inside a zip, on a URL): GDAL says if it is missing
        return
    if not path.is_file():
        where = "" if path.parent.is_dir() else f" (folder {path.parent} does not exist either)"
        raise FileNotFoundError(f"no raster at {path}{where}")


def _info_of(src: rasterio.io.DatasetReader, path: Path) -> RasterInfo:
    return RasterInfo(
        path=path,
        driver=src.driver,
        width=src.width,
        height=src.height,
        count=src.count,
        dtypes=tuple(src.dtypes),
        crs=src.crs,
        transform=src.transform,
        nodata=src.nodata,
        descriptions=tuple(src.descriptions),
        colorinterp=tuple(c.name for c in src.colorinterp),
        tags=dict(src.tags()),
        block_shape=tuple(src.block_shapes[0]) if src.count else (0, 0),
        overviews=len(src.overviews(1)) if src.count else 0,
    )


def _open(path: Path) -> rasterio.io.DatasetReader:
    _check_exists(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        raise _open_error(path, err) from err


def _checked_info(src: rasterio.io.DatasetReader, path: Path) -> RasterInfo:
    try:
        return _info_of(src, path)
    except RasterioError as err:  # a damaged directory: tags, overviews or masks that do not read
        src.close()
        raise _open_error(path, err) from err


def raster_info(path: str | Path) -> RasterInfo:
    """Metadata of one raster file (no pixels are read, so a file truncated after its header still gives its
    metadata: :func:`check_readable` also reads pixels).

    Raises:
        FileNotFoundError: no file at ``path``.
        UnreadableRaster: the file cannot be opened as a raster, naming it.
    """
    path = Path(path)
    with _open(path) as src:
        return _checked_info(src, path)


def check_readable(path: str | Path) -> RasterInfo:
    """Metadata of one raster file after reading the first and the last internal block of every band (see
    :meth:`RasterFile.unreadable_block`): a cheap check that the pixels, not only the header, are there.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnreadableRaster: the file cannot be opened or a block cannot be read, naming the file, bands and pixels.
    """
    with RasterFile(path) as raster_file:
        error = raster_file.unreadable_block()
        if error is not None:
            raise error
        return raster_file.info


def _normalize_band_name(name: str) -> str:
    """Case- and padding-insensitive band key: "b02" → "B2", "B8a" → "B8A", " vv " → "VV"."""
    key = name.strip().upper()
    if key.startswith("BAND_") or key.startswith("BAND "):
        return key.replace(" ", "_")
    if len(key) > 1 and key[0] == "B" and key[1:].lstrip("0")[:1].isdigit():
        key = "B" + key[1:].lstrip("0")
    return key


def resolve_bands(info: RasterInfo, bands: BandSelection | None) -> list[int]:
    """Band selection (1-based indexes and/or band names) → 1-based indexes.

    Names match the band descriptions exactly, else case- and zero-padding-insensitively ("b02" finds "B2");
    "band_<i>" always finds band i. ``None`` selects the data bands (alpha bands excluded).

    Raises:
        ValueError: an index out of range, an unknown or ambiguous name, naming the file and its bands.
    """
    if bands is None:
        return info.data_bands
    if isinstance(bands, (str, int)):
        bands = [bands]
    if len(bands) == 0:
        raise ValueError(f"{info.path}: empty band selection")
    names = info.band_names
    indexes = []
    for band in bands:
        if isinstance(band, (int, np.integer)) and not isinstance(band, bool):
            if not 1 <= band <= info.count:
                raise ValueError(
                    f"{info.path}: band {band} requested but the file has {info.count} bands (1-based indexes)"
                )
            indexes.append(int(band))
            continue
        if not isinstance(band, str):
            raise ValueError(f"{info.path}: bands are 1-based indexes or names, got {band!r}")
        exact = [i for i, n in enumerate(names, start=1) if n == band]
        if not exact:
            key = _normalize_band_name(band)
            exact = [i for i, n in enumerate(names, start=1) if _normalize_band_name(n) == key]
        if len(exact) != 1:
            problem = "no band named" if not exact else f"{len(exact)} bands named"
            raise ValueError(f"{info.path}: {problem} {band!r}; the file's bands are {list(names)}")
        indexes.append(exact[0])
    return indexes


def sensor_bands(info: RasterInfo, sensor: Sensor) -> list[int]:
    """The 1-based indexes of ``sensor``'s bands, in the sensor's order.

    Band names (descriptions) identify bands by B-code (zero-padded or not), STAC common name ("red", "nir08",
    "swir16", ...) or polarisation (:func:`~skysense.data.sensors.canonical_band_name`):

    - names that identify every band of the sensor are used whatever their order (a shuffled stack is reordered;
      extra bands are ignored);
    - names that identify some bands but not all are refused, naming the missing ones (never filled by position);
    - only a file whose bands have no recognisable name at all is read by position, when it has exactly the
      sensor's number of data bands, and a warning says so.

    Raises:
        InputError: names that miss some of the sensor's bands, or a name on two bands, or no names and another
            number of bands — naming the file, its bands and the expected ones.
    """
    data = info.data_bands
    named: dict[str, list[int]] = {}
    for index in data:
        canonical = canonical_band_name(info.descriptions[index - 1])
        if canonical is not None:
            named.setdefault(canonical, []).append(index)
    wanted = [canonical_band_name(b) or b for b in sensor.bands]
    twice = {k: v for k, v in named.items() if len(v) > 1 and k in wanted}
    if twice:
        band, indexes = next(iter(twice.items()))
        raise InputError(
            f"{info.path}: bands {indexes} are all named {band} (names {list(info.band_names)}); fix the band "
            "descriptions so that each band is named once"
        )
    if named:
        missing = [b for b, w in zip(sensor.bands, wanted, strict=True) if w not in named]
        if missing:
            raise InputError(
                f"{info.path}: its band names {list(info.band_names)} do not include {', '.join(missing)} of the "
                f"{len(sensor.bands)} {sensor.name} bands {list(sensor.bands)} ({sensor.units}); give a file with "
                "every band (named by B-code or STAC common name), or fix its band descriptions"
            )
        return [named[w][0] for w in wanted]
    if len(data) == len(sensor.bands):
        warnings.warn(
            f"{info.path}: its bands have no names; read by position as {', '.join(sensor.bands)} "
            f"({sensor.units}); name them in the band descriptions to be sure",
            stacklevel=2,
        )
        return data
    raise InputError(
        f"{info.path}: expected the {len(sensor.bands)} bands {list(sensor.bands)} of {sensor.name} "
        f"({sensor.units}), by band name or by count; found {len(data)} bands named {list(info.band_names)}"
    )


# ------------------------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Raster:
    """Values and metadata of one read.

    Attributes:
        values: (C, H, W) float32; entries where ``valid`` is False are NaN.
        valid: (C, H, W) bool, False where the file says nodata, holds NaN, or a mask says invalid.
        band_names: the file's band descriptions (or "band_<i>").
        crs: coordinate reference system.
        transform: affine transform of the window read.
        path: the file.
    """

    values: np.ndarray
    valid: np.ndarray
    band_names: tuple[str, ...]
    crs: CRS | None
    transform: rasterio.Affine
    path: Path

    @property
    def grid(self) -> Grid:
        """The grid of this read."""
        return Grid(self.crs, self.transform, *self.values.shape[-2:])

    @property
    def pixel_valid(self) -> np.ndarray:
        """(H, W) bool: True where every band is valid."""
        return self.valid.all(axis=0)

    def crop(self, window: Window) -> Raster:
        """The part of this read inside ``window`` (pixel offsets relative to this read), without re-reading; the
        arrays are copies, so changing the crop never changes this read."""
        row, col = int(window.row_off), int(window.col_off)
        height, width = int(window.height), int(window.width)
        if row < 0 or col < 0 or row + height > self.values.shape[1] or col + width > self.values.shape[2]:
            raise ValueError(f"{self.path}: window {window} lies outside the {self.values.shape[1:]} read")
        rows, cols = slice(row, row + height), slice(col, col + width)
        return dataclasses.replace(
            self,
            values=self.values[:, rows, cols].copy(),
            valid=self.valid[:, rows, cols].copy(),
            transform=rasterio.windows.transform(window, self.transform),
        )

    def require_valid(self, what: str = "raster") -> Raster:
        """Return self, or raise if no pixel of any band is valid.

        Raises:
            ValueError: naming the file and the size of the all-invalid read.
        """
        if not self.valid.any():
            raise ValueError(
                f"{self.path}: all {self.valid.size} values of this {what} ({self.values.shape[0]} bands × "
                f"{self.values.shape[1]}×{self.values.shape[2]} pixels) are invalid (nodata/NaN/masked); an "
                "all-invalid input is not allowed here"
            )
        return self

    def center_lat_lon(self) -> tuple[float, float]:
        """Latitude and longitude (degrees, WGS 84) of the read window's centre."""
        if self.crs is None:
            raise ValueError(f"{self.path}: no CRS, cannot compute latitude/longitude")
        return self.grid.center_lat_lon()


_EPS = 1e-6  # pixel fraction below which float noise in window/bounds arithmetic is ignored


def window_from_bounds(info: RasterInfo, bounds: Bounds) -> Window:
    """Bounds (left, bottom, right, top) in the file's CRS → the smallest whole-pixel window covering them."""
    from rasterio.windows import from_bounds

    left, bottom, right, top = bounds
    if not (right > left and top > bottom):
        raise ValueError(
            f"{info.path}: bounds {bounds} must be (left, bottom, right, top) with right > left, top > bottom"
        )
    window = from_bounds(left, bottom, right, top, info.transform)
    col0, row0 = math.floor(window.col_off + _EPS), math.floor(window.row_off + _EPS)
    col1 = math.ceil(window.col_off + window.width - _EPS)
    row1 = math.ceil(window.row_off + window.height - _EPS)
    return Window(col0, row0, max(col1 - col0, 1), max(row1 - row0, 1))


def read_raster(
    path: str | Path,
    bands: BandSelection | None = None,
    window: Window | None = None,
    *,
    bounds: Bounds | None = None,
    boundless: bool = False,
    nodata: float | None = None,
    valid_mask: np.ndarray | None = None,
    require_valid: bool = False,
) -> Raster:
    """Read bands of a raster, optionally a window, as float32 values with NaN where invalid plus a validity mask.

    Args:
        path: any GDAL-readable raster (GeoTIFF, COG, JPEG, PNG, ...).
        bands: 1-based indexes and/or band names (see :func:`resolve_bands`); default: every band but alpha.
        window: a pixel window (rasterio ``Window``); or give ``bounds``.
        bounds: (left, bottom, right, top) in the file's CRS, widened to whole pixels.
        boundless: allow a window reaching outside the file; those pixels are invalid (NaN). Without it such a
            window is refused (rasterio would silently return a smaller array).
        nodata: a nodata value to apply in addition to the file's own (e.g. -1 for Sen1Floods11 labels, which do
            not declare it).
        valid_mask: extra validity, (H, W) or (C, H, W) bool for the read window; False marks invalid.
        require_valid: refuse a read in which no value is valid.

    Returns:
        :class:`Raster` with values (C, H, W) float32 and valid (C, H, W) bool.

    Raises:
        FileNotFoundError: no file.
        ValueError: unreadable/corrupt file, bad band or window, all-invalid read with ``require_valid`` — each
            naming the file.
    """
    with RasterFile(path) as raster_file:
        return raster_file.read(
            bands,
            window,
            bounds=bounds,
            boundless=boundless,
            nodata=nodata,
            valid_mask=valid_mask,
            require_valid=require_valid,
        )


class RasterFile:
    """A raster opened once for many reads (streaming window by window); a context manager.

    Attributes:
        path: the file.
        info: its :class:`RasterInfo`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._src = _open(self.path)
        self.info = _checked_info(self._src, self.path)

    def __enter__(self) -> RasterFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._src.close()

    def unreadable_block(self) -> UnreadableRaster | None:
        """Read the first and the last internal block (tile or strip) of every band, values then validity mask;
        return the error of the first read that fails, or None when all succeed.

        A truncated file keeps its header (so it opens and :func:`raster_info` works) and loses its last blocks
        (and an internal mask written after the pixels, as in many COGs); a corrupt one fails anywhere. Two blocks
        per band are cheap on files of any size; blocks in between and overviews are not checked.
        """
        src = self._src
        for band, (block_rows, block_cols) in enumerate(src.block_shapes, start=1):
            block_rows, block_cols = max(int(block_rows), 1), max(int(block_cols), 1)
            last_row = (src.height - 1) // block_rows * block_rows
            last_col = (src.width - 1) // block_cols * block_cols
            first = Window(0, 0, min(block_cols, src.width), min(block_rows, src.height))
            last = Window(last_col, last_row, src.width - last_col, src.height - last_row)
            for window in (first, last) if last != first else (first,):
                # band by band, so the error names the band (GDAL caches the blocks bands share)
                for read, part in ((src.read, ""), (src.read_masks, "the validity mask of ")):
                    try:
                        read(band, window=window)
                    except RasterioError as err:
                        error = _read_error(self.path, err, [band], window, part)
                        error.__cause__ = err
                        return error
        return None

    def read(
        self,
        bands: BandSelection | None = None,
        window: Window | None = None,
        *,
        bounds: Bounds | None = None,
        boundless: bool = False,
        nodata: float | None = None,
        valid_mask: np.ndarray | None = None,
        require_valid: bool = False,
    ) -> Raster:
        """:func:`read_raster` on the open file (same arguments)."""
        info, path = self.info, self.path
        indexes = resolve_bands(info, bands)
        if window is not None and bounds is not None:
            raise ValueError(f"{path}: give a window or bounds, not both")
        if bounds is not None:
            if info.crs is None:
                raise ValueError(f"{path}: bounds {bounds} given but the file has no CRS to interpret them in")
            window = window_from_bounds(info, bounds)
        if window is None:
            window = Window(0, 0, info.width, info.height)
        window = Window(
            int(round(window.col_off)), int(round(window.row_off)), int(round(window.width)), int(round(window.height))
        )
        if window.width <= 0 or window.height <= 0:
            raise ValueError(f"{path}: empty window {window}")
        inside = window.intersection(Window(0, 0, info.width, info.height)) if _overlaps(window, info) else None
        if not boundless and (inside is None or inside != window):
            raise ValueError(
                f"{path}: window (rows {window.row_off}:{window.row_off + window.height}, columns "
                f"{window.col_off}:{window.col_off + window.width}) reaches outside the raster "
                f"({info.height}×{info.width}); pass boundless=True to read the outside as invalid"
            )
        shape = (len(indexes), window.height, window.width)
        values = np.full(shape, np.nan, dtype=np.float32)
        valid = np.zeros(shape, dtype=bool)
        if inside is not None:
            try:
                masked = self._src.read(indexes, window=inside, masked=True)
            except RasterioError as err:
                raise _read_error(path, err, indexes, inside) from err
            data = np.asarray(masked.data, dtype=np.float32)
            ok = ~np.ma.getmaskarray(masked) & np.isfinite(data)
            if nodata is not None:
                ok &= ~(np.isnan(data) if np.isnan(nodata) else data == np.float32(nodata))
            rows = slice(inside.row_off - window.row_off, inside.row_off - window.row_off + inside.height)
            cols = slice(inside.col_off - window.col_off, inside.col_off - window.col_off + inside.width)
            values[:, rows, cols] = data
            valid[:, rows, cols] = ok
        if valid_mask is not None:
            valid_mask = np.asarray(valid_mask, dtype=bool)
            if valid_mask.shape not in (shape, shape[1:]):
                raise ValueError(f"{path}: valid_mask has shape {valid_mask.shape}, expected {shape[1:]} or {shape}")
            valid &= valid_mask
        values[~valid] = np.nan
        names = tuple(info.band_names[i - 1] for i in indexes)
        transform = info.transform @ Affine.translation(window.col_off, window.row_off)
        raster = Raster(values, valid, names, info.crs, transform, path)
        return raster.require_valid() if require_valid else raster


def _overlaps(window: Window, info: RasterInfo) -> bool:
    return (
        window.col_off < info.width
        and window.row_off < info.height
        and window.col_off + window.width > 0
        and window.row_off + window.height > 0
    )


def iter_windows(info: RasterInfo | str | Path, tile: int = 1024) -> Iterator[Window]:
    """Windows of at most about ``tile``×``tile`` pixels covering a raster, aligned to its internal blocks
    (a strip-organised file gets full-width strips of whole blocks), for streaming in constant memory."""
    if not isinstance(info, RasterInfo):
        info = raster_info(info)
    block_rows, block_cols = info.block_shape
    block_rows, block_cols = max(block_rows, 1), max(block_cols, 1)
    rows = max(block_rows, tile // block_rows * block_rows)
    cols = info.width if block_cols >= info.width else max(block_cols, tile // block_cols * block_cols)
    if block_cols >= info.width:  # strips: keep memory about tile² by taking fewer rows of the full width
        rows = max(block_rows, (tile * tile // max(info.width, 1)) // block_rows * block_rows)
    for row in range(0, info.height, rows):
        for col in range(0, info.width, cols):
            yield Window(col, row, min(cols, info.width - col), min(rows, info.height - row))


# ------------------------------------------------------------------------------------------------------------------
# Reprojection and co-registration
# ------------------------------------------------------------------------------------------------------------------
def _resampling(value: str | Resampling) -> Resampling:
    if isinstance(value, Resampling):
        return value
    try:
        return Resampling[value]
    except KeyError:
        raise ValueError(f"unknown resampling {value!r}; use one of {[r.name for r in Resampling]}") from None


def _aligned_offset(source: Grid, target: Grid) -> tuple[int, int] | None:
    """(row, col) offset of ``target`` in ``source`` pixels when both grids share CRS, pixel size and pixel corners
    (so that the target is a plain window of the source, no resampling); None otherwise."""
    if source.crs is None or target.crs is None or source.crs != target.crs:
        return None
    s, t = source.transform, target.transform
    if s.b or s.d or t.b or t.d:
        return None
    span = max(target.width, target.height, 1)
    if abs(s.a - t.a) * span > 0.01 * abs(s.a) or abs(s.e - t.e) * span > 0.01 * abs(s.e):
        return None
    col = (t.c - s.c) / s.a
    row = (t.f - s.f) / s.e
    if abs(col - round(col)) > 0.01 or abs(row - round(row)) > 0.01:
        return None
    return int(round(row)), int(round(col))


def reproject_to_grid(
    source: str | Path | Raster,
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    resampling: str | Resampling = "bilinear",
    *,
    bands: BandSelection | None = None,
    nodata: float | None = None,
    require_valid: bool = False,
) -> Raster:
    """Read a raster onto a target grid, carrying the validity mask.

    Values are resampled with ``resampling`` (bilinear default, for reflectance/backscatter; use "nearest" for
    labels) from valid source pixels only; the mask goes with nearest neighbour; a target pixel is valid where its
    nearest source pixel is valid and the resampled value is finite, and NaN otherwise — never a number where the
    source had none, and target pixels outside the source are invalid. When the target is a pixel-aligned window
    of the source (same CRS, pixel size and corners) it is read directly, without resampling. From a path only the
    source window covering the target is read.

    Args:
        source: a file, or a :class:`Raster` already read.
        dst_crs: target CRS ("EPSG:32630", an EPSG code or a ``CRS``).
        dst_transform: target affine transform.
        dst_shape: target (height, width).
        resampling: a ``rasterio.enums.Resampling`` or its name.
        bands: band selection when ``source`` is a path.
        nodata: extra nodata value when ``source`` is a path (see :func:`read_raster`).
        require_valid: refuse a result without any valid value.

    Returns:
        :class:`Raster` on the target grid: values (C, H, W) float32, valid (C, H, W).

    Raises:
        ValueError: the source has no CRS (reprojection needs one), or see :func:`read_raster`.
    """
    method = _resampling(resampling)
    target = Grid(CRS.from_user_input(dst_crs), Affine(*dst_transform[:6]), int(dst_shape[0]), int(dst_shape[1]))
    if isinstance(source, Raster):
        _require_crs(source.crs, source.path, target)
        offset = _aligned_offset(source.grid, target)
        if offset is not None:
            out = _window_of(source, Window(offset[1], offset[0], target.width, target.height))
        else:
            out = _resample(source, target, method)
    else:
        with RasterFile(source) as raster_file:
            info = raster_file.info
            _require_crs(info.crs, info.path, target)
            indexes = resolve_bands(info, bands)
            offset = _aligned_offset(info.grid, target)
            if offset is not None:  # a plain window of the file: no resampling
                window = Window(offset[1], offset[0], target.width, target.height)
                out = raster_file.read(indexes, window, boundless=True, nodata=nodata)
            else:
                window = _source_window(info, target)
                if window is None:  # the target lies outside the file: nothing valid
                    shape = (len(indexes), *target.shape)
                    names = tuple(info.band_names[i - 1] for i in indexes)
                    out = Raster(
                        np.full(shape, np.nan, np.float32), np.zeros(shape, bool), names, None, None, info.path
                    )
                else:
                    out = _resample(raster_file.read(indexes, window, nodata=nodata), target, method)
    out = Raster(out.values, out.valid, out.band_names, target.crs, target.transform, out.path)
    return out.require_valid() if require_valid else out


def _require_crs(crs: CRS | None, path: Path, target: Grid) -> None:
    if crs is None:
        raise ValueError(
            f"{path}: the raster has no CRS, so it cannot be reprojected onto the target grid in {target.crs}; "
            "assign its CRS first (e.g. `rio edit-info --crs EPSG:32630 FILE`)"
        )


def _resample(raster: Raster, target: Grid, method: Resampling) -> Raster:
    """Warp values (from valid pixels only) and the validity mask (nearest) onto ``target``."""
    count = raster.values.shape[0]
    values = np.full((count, *target.shape), np.nan, dtype=np.float32)
    reproject(
        source=raster.values,
        destination=values,
        src_transform=raster.transform,
        src_crs=raster.crs,
        src_nodata=np.nan,
        dst_transform=target.transform,
        dst_crs=target.crs,
        dst_nodata=np.nan,
        resampling=method,
    )
    carried = np.zeros((count, *target.shape), dtype=np.uint8)
    reproject(
        source=raster.valid.astype(np.uint8),
        destination=carried,
        src_transform=raster.transform,
        src_crs=raster.crs,
        dst_transform=target.transform,
        dst_crs=target.crs,
        resampling=Resampling.nearest,
    )
    valid = carried.astype(bool) & np.isfinite(values)
    values[~valid] = np.nan
    return Raster(values, valid, raster.band_names, target.crs, target.transform, raster.path)


def _window_of(raster: Raster, window: Window) -> Raster:
    """A (possibly partly outside) window of an in-memory raster; the outside is invalid."""
    count, height, width = raster.values.shape
    values = np.full((count, window.height, window.width), np.nan, np.float32)
    valid = np.zeros(values.shape, bool)
    r0, c0 = max(window.row_off, 0), max(window.col_off, 0)
    r1, c1 = min(window.row_off + window.height, height), min(window.col_off + window.width, width)
    if r1 > r0 and c1 > c0:
        dst = (
            slice(None),
            slice(r0 - window.row_off, r1 - window.row_off),
            slice(c0 - window.col_off, c1 - window.col_off),
        )
        values[dst] = raster.values[:, r0:r1, c0:c1]
        valid[dst] = raster.valid[:, r0:r1, c0:c1]
    transform = raster.transform @ Affine.translation(window.col_off, window.row_off)
    return Raster(values, valid, raster.band_names, raster.crs, transform, raster.path)


def _source_window(info: RasterInfo, target: Grid, pad: int = 2) -> Window | None:
    """The window of the file covering the target grid's footprint (plus ``pad`` pixels for the resampling
    kernel), clipped to the file; None when they do not overlap."""
    try:
        left, bottom, right, top = transform_bounds(target.crs, info.crs, *target.bounds, densify_pts=21)
    except RasterioError as err:
        raise InputError(
            f"{info.path}: cannot transform the target bounds from {target.crs} to the file's CRS {info.crs} "
            f"({_gdal_message(err)}); check the file's CRS"
        ) from err
    if not all(map(math.isfinite, (left, bottom, right, top))) or right <= left or top <= bottom:
        return Window(0, 0, info.width, info.height)
    window = window_from_bounds(info, (left, bottom, right, top))
    col0, row0 = max(window.col_off - pad, 0), max(window.row_off - pad, 0)
    col1 = min(window.col_off + window.width + pad, info.width)
    row1 = min(window.row_off + window.height + pad, info.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def _as_grid(hr: Grid | Raster | RasterInfo | str | Path) -> tuple[Grid, str]:
    if isinstance(hr, Grid):
        return hr, "HR grid"
    if isinstance(hr, (Raster, RasterInfo)):
        return hr.grid, str(hr.path)
    info = raster_info(hr)
    return info.grid, str(info.path)


def coregistered_grids(
    hr: Grid | Raster | RasterInfo | str | Path, ratio: int = 32, crop: bool = False
) -> tuple[Grid, Grid]:
    """The HR grid and the Sentinel grid co-registered with it: same CRS and origin, one Sentinel pixel =
    ``ratio`` × ``ratio`` HR pixels (32: 0.3 m HR ↔ 9.6 m ≈ 10 m Sentinel, the paper's setting), so an HR (H, W)
    image meets a Sentinel (H / ratio, W / ratio) image exactly.

    Args:
        hr: the HR image (a file, a read :class:`Raster`, its info, or a :class:`Grid`).
        ratio: HR pixels per Sentinel pixel along each axis.
        crop: when H or W is not a multiple of ``ratio``, keep the top-left (H // ratio · ratio, W // ratio · ratio)
            part instead of refusing.

    Returns:
        (hr_grid, sentinel_grid); ``hr_grid`` is the cropped one when ``crop`` applied.

    Raises:
        ValueError: size not a multiple of ``ratio`` (without ``crop``), or smaller than one Sentinel pixel.
    """
    grid, where = _as_grid(hr)
    if ratio < 1:
        raise ValueError(f"ratio must be a positive number of HR pixels per Sentinel pixel, got {ratio}")
    height, width = grid.shape
    fit_h, fit_w = height // ratio * ratio, width // ratio * ratio
    if fit_h == 0 or fit_w == 0:
        raise ValueError(
            f"{where}: HR size {height}×{width} is smaller than one Sentinel pixel ({ratio}×{ratio} HR pixels)"
        )
    if (fit_h, fit_w) != (height, width):
        if not crop:
            raise ValueError(
                f"{where}: HR size {height}×{width} is not a multiple of the HR/Sentinel ratio {ratio}; crop it to "
                f"{fit_h}×{fit_w} (crop=True keeps the top-left part) or pad it"
            )
        grid = Grid(grid.crs, grid.transform, fit_h, fit_w)
    sentinel = Grid(grid.crs, grid.transform @ Affine.scale(ratio), fit_h // ratio, fit_w // ratio)
    return grid, sentinel


def read_coregistered(
    path: str | Path,
    hr: Grid | Raster | RasterInfo | str | Path,
    ratio: int = 32,
    *,
    crop: bool = False,
    resampling: str | Resampling = "bilinear",
    bands: BandSelection | None = None,
    nodata: float | None = None,
) -> Raster:
    """Read a Sentinel file onto the grid co-registered with an HR image (see :func:`coregistered_grids`).

    Returns:
        :class:`Raster` of shape (C, H / ratio, W / ratio) on the Sentinel grid.
    """
    _, grid = coregistered_grids(hr, ratio, crop)
    if grid.crs is None:
        raise ValueError(f"{_as_grid(hr)[1]}: the HR image has no CRS, so {path} cannot be placed onto its grid")
    return reproject_to_grid(path, grid.crs, grid.transform, grid.shape, resampling, bands=bands, nodata=nodata)


# ------------------------------------------------------------------------------------------------------------------
# Time series
# ------------------------------------------------------------------------------------------------------------------
SERIES_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")  # per-date rasters in a series folder (any case)
_SIDECARS = (".aux.xml", ".ovr", ".msk")  # GDAL's own sidecar files: never reported as skipped


def _series_files(files: str | Path | Sequence[str | Path], pattern: str | None = None) -> list[Path]:
    """A directory (every ``.tif``, ``.tiff``, ``.jp2`` or ``.vrt`` in it, any case, or a glob ``pattern`` such as
    "**/*.tif") or a list of files → sorted paths; other files in the directory are skipped with a warning that
    names them.

    Raises:
        FileNotFoundError: the directory does not exist, or holds no matching file.
    """
    if isinstance(files, (str, Path)):
        folder = Path(files)
        if folder.is_file():
            return [folder]
        if not folder.is_dir():
            raise FileNotFoundError(f"no file or directory at {folder}")
        if pattern is not None:
            found = sorted(p for p in folder.glob(pattern) if p.is_file())
            what = f"matching {pattern!r}"
        else:
            found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SERIES_SUFFIXES)
            what = f"with a raster suffix ({', '.join(SERIES_SUFFIXES)})"
            skipped = sorted(
                p.name
                for p in folder.iterdir()
                if p.is_file() and p not in found and not p.name.lower().endswith(_SIDECARS)
            )
            if skipped and found:
                shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
                warnings.warn(f"{folder}: skipped {len(skipped)} files that are not rasters: {shown}", stacklevel=2)
        if not found:
            raise FileNotFoundError(f"no file {what} in {folder}")
        return found
    return [Path(f) if isinstance(f, (str, Path)) else f for f in files]  # products (with .read) are kept


def _is_product(item: object) -> bool:
    """A product (e.g. :class:`skysense.data.products.S2Product`): one date read band by band, not one file."""
    return not isinstance(item, (str, Path)) and hasattr(item, "read") and hasattr(item, "date")


def read_time_series(
    files: str | Path | Sequence[str | Path],
    *,
    pattern: str | None = None,
    grid: Grid | None = None,
    bands: BandSelection | None = None,
    sensor: Sensor | None = None,
    dates: Sequence[dt.date | str] | None = None,
    resampling: str | Resampling = "bilinear",
    nodata: float | None = None,
    filename_regex: str | None = None,
    date_format: str | None = "%Y%m%d",
    sidecar: str | Path | Mapping[str, dt.date | str] | None = None,
    allow_empty_frames: bool = True,
    allow_duplicate_dates: bool = False,
) -> TimeSeries:
    """Per-date files of one place → a :class:`~skysense.data.collate.TimeSeries` on one grid, sorted by date.

    The files are one place and one modality, so each date should appear once: two files of one date (a tile
    delivered twice, a wrong date in a name or sidecar) are refused unless ``allow_duplicate_dates``, and so is a
    date after today (see :func:`~skysense.data.dates.check_series_dates`).

    Args:
        files: a list of files (or products), or a directory (see :func:`_series_files`).
        pattern: glob for a directory (default: every raster suffix, any case).
        grid: the target grid; default: the earliest file's grid. Files on other grids or CRSs are reprojected.
        bands: band selection (indexes and/or names) applied to every file.
        sensor: the sensor the files hold: picks its bands by description or count (:func:`sensor_bands`) and
            converts source formats to the model's (:data:`~skysense.data.sensors.S2_L1C` 13 bands → the model's
            10, :data:`~skysense.data.sensors.S1_GRD_LINEAR` → dB).
        dates: one date per file (in the order of ``files``); default: from each file
            (:func:`skysense.data.dates.acquisition_date` with ``filename_regex``, ``date_format``, ``sidecar``).
        resampling: for values when reprojecting (the mask always uses nearest).
        nodata: extra nodata value applied to every file.
        filename_regex, date_format, sidecar: where dates come from (see :mod:`skysense.data.dates`).
        allow_empty_frames: keep frames without any valid pixel (the collate masks them); False refuses them.
        allow_duplicate_dates: keep files that share a date as separate frames (sorted by path within the date),
            e.g. two acquisitions of one day from two orbits.

    Returns:
        TimeSeries with values (T, C, H, W) float32 (NaN where invalid), dates, valid (T, H, W) — a pixel of a frame
        is valid only where all its bands are.

    Raises:
        ValueError: band counts differ between files (naming both), unknown bands, unreadable files, missing or
            unparseable dates, a file without CRS that needs reprojection, an empty frame when not allowed.
        InputError: (a ValueError) a date after today, or files sharing a date without ``allow_duplicate_dates``,
            naming the files and dates.
    """
    paths = _series_files(files, pattern)
    if not paths:
        raise ValueError("no files given for the time series")
    infos = [p if _is_product(p) else raster_info(p) for p in paths]  # a product stands for its own info
    files_only = [i for i in infos if not _is_product(i)]
    for info in files_only[1:]:
        if info.count != files_only[0].count:
            raise ValueError(
                f"band counts differ within the time series: {files_only[0].path} has {files_only[0].count} bands, "
                f"{info.path} has {info.count}"
            )
    for product in (i for i in infos if _is_product(i)):
        if sensor is None and bands is None:
            raise ValueError(f"{product.source}: a product is read by band names: give the sensor or the bands")
        level = getattr(product, "level", "")
        if sensor is not None and product.sensor is not None and SENSORS.get(product.sensor) is not sensor:
            raise InputError(
                f"{product.source}: a Sentinel-2 {level} product cannot be read as {sensor.units} "
                f"({len(sensor.bands)} bands); use its own sensor ({product.sensor}, e.g. --s2-sensor {product.sensor})"
            )
    if dates is None:
        frame_dates = [
            i.date
            if _is_product(i)
            else acquisition_date(
                i.path, filename_regex=filename_regex, date_format=date_format, sidecar=sidecar, tags=i.tags
            )
            for i in infos
        ]
    else:
        if len(dates) != len(paths):
            raise ValueError(f"{len(paths)} files but {len(dates)} dates were given")
        frame_dates = [
            d if isinstance(d, dt.date) else parse_date(str(d), None, str(p)) for d, p in zip(dates, paths, strict=True)
        ]
    names = [str(i.source) if _is_product(i) else str(i.path) for i in infos]
    check_series_dates(frame_dates, names, allow_duplicates=allow_duplicate_dates)
    order = sorted(range(len(paths)), key=lambda i: (frame_dates[i], names[i]))
    infos = [infos[i] for i in order]
    frame_dates = [frame_dates[i] for i in order]
    if grid is None:
        grid = infos[0].grid() if _is_product(infos[0]) else infos[0].grid
    frames, masks = [], []
    for info in infos:
        if _is_product(info):
            raster = info.read(grid, list(bands) if bands is not None else list(sensor.bands), resampling)
            where = str(info.source)
        else:
            raster, where = _read_frame(info, grid, infos[0], bands, sensor, resampling, nodata), str(info.path)
        values, valid = raster.values, raster.valid
        if sensor is not None:
            values, valid = _to_model(values, valid, sensor, where)
        pixel_valid = valid.all(axis=0)
        if not allow_empty_frames and not pixel_valid.any():
            raise ValueError(f"{where}: no valid pixel on the series grid (nodata/NaN everywhere or no overlap)")
        frames.append(np.where(valid, values, np.nan).astype(np.float32))
        masks.append(pixel_valid)
    series = TimeSeries(torch.from_numpy(np.stack(frames)), frame_dates, torch.from_numpy(np.stack(masks)))
    return series


def _read_frame(
    info: RasterInfo,
    grid: Grid,
    first: RasterInfo,
    bands: BandSelection | None,
    sensor: Sensor | None,
    resampling: str | Resampling,
    nodata: float | None,
) -> Raster:
    """One stacked file of a series onto the series grid (bands by selection, by the sensor's names, or data bands)."""
    if bands is not None:
        indexes = resolve_bands(info, bands)
        if sensor is not None and len(indexes) != len(sensor.bands):
            raise ValueError(
                f"{info.path}: {len(indexes)} bands selected but {sensor.name} ({sensor.units}) has "
                f"{len(sensor.bands)}: {list(sensor.bands)}"
            )
    elif sensor is not None:
        indexes = sensor_bands(info, sensor)
    else:
        indexes = info.data_bands
    if grid.crs is not None:
        return reproject_to_grid(
            info.path, grid.crs, grid.transform, grid.shape, resampling, bands=indexes, nodata=nodata
        )
    if info.crs is None and info.grid.shape == grid.shape:
        return read_raster(info.path, indexes, nodata=nodata)  # non-georeferenced frames of one size
    first_name = getattr(first, "path", getattr(first, "source", ""))
    raise ValueError(
        f"{info.path}: cannot place this file on the series grid ({grid.height}×{grid.width}, no CRS, from "
        f"{first_name}): give georeferenced files, or non-georeferenced files of one size"
    )


def _to_model(values: np.ndarray, valid: np.ndarray, sensor: Sensor, source: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~skysense.data.sensors.to_model` on (C, H, W) values, with the validity mask following the band
    selection; values the conversion makes non-finite (0 linear power → -inf dB) become invalid."""
    converted, _ = to_model(values, sensor, source)
    if converted.shape[0] != valid.shape[0]:  # S2 L1C → the model's bands
        valid = s2_l1c_to_model_bands(valid, source)
    return converted, valid & np.isfinite(converted)
