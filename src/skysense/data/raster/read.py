"""Reading pixels: bands (by 1-based index or by name) of a window (pixels, or bounds in the file's CRS) as a
:class:`Raster` of float32 values and a validity mask.

- :func:`read_raster` — one read; :class:`RasterFile` — a file opened once, for streaming many windows.
- :func:`iter_windows` — block-aligned windows for streaming over files of any size in constant memory.
- :func:`check_readable` — :func:`~skysense.data.raster.info.raster_info` after reading the first and the last block
  of every band (a truncated download keeps its header and loses its last blocks).

Validity is per band: False where the file's mask says so (nodata value, an internal per-dataset or per-band mask,
an alpha band), where the value is NaN/inf, and where an optional extra mask says so.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from skysense.containers import Bounds, Grid
from skysense.data.raster.bands import BandSelection, resolve_bands
from skysense.data.raster.info import (
    RasterInfo,
    UnreadableRaster,
    _checked_info,
    _open,
    _read_error,
    raster_info,
    raster_path,
)
from skysense.data.raster.jpeg2000 import codestream_gap, readable_here


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


_JPEG2000 = {"JP2OpenJPEG", "JP2KAK", "JP2ECW", "JPEG2000", "JP2MrSID"}  # GDAL's JPEG 2000 drivers


def _jpeg2000_error(driver: str, path: Path | str) -> UnreadableRaster | None:
    """The error for a JPEG 2000 file on disk or in a local zip whose markers announce bytes it does not hold (see
    :func:`~skysense.data.raster.jpeg2000.codestream_gap`); None for one that holds them all, or another file."""
    if driver not in _JPEG2000 or not readable_here(path):
        return None
    try:
        gap = codestream_gap(path)
    except OSError as err:
        gap = f"{err.strerror or err}"
    except (zipfile.BadZipFile, zlib.error) as err:  # a member whose compressed bytes or checksum are damaged
        gap = f"its bytes in the zip are damaged ({err})"
    if gap is None:
        return None
    problem = f"cannot read its JPEG 2000 codestream: {gap}"
    return UnreadableRaster(
        f"{path}: {problem}; the file is truncated or corrupt: re-download or re-export it",
        path=Path(path),
        problem=problem,
    )


class RasterFile:
    """A raster opened once for many reads (streaming window by window); a context manager.

    Attributes:
        path: the file.
        info: its :class:`RasterInfo`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = raster_path(path)
        self._src = _open(self.path)
        try:
            self.info = _checked_info(self._src, self.path)
            # GDAL decodes a truncated JPEG 2000 file's missing tiles as zeros on a whole-band read (it logs the
            # failure but returns success): the file is refused on opening instead, from its markers (0.1 ms)
            error = _jpeg2000_error(self._src.driver, self.path)
            if error is not None:
                raise error
        except BaseException:
            self._src.close()
            raise

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

        A JPEG 2000 file on disk or in a local zip is checked without decoding: every box, tile and tile-part its
        markers announce must be in the file (:func:`~skysense.data.raster.jpeg2000.codestream_gap`; about 0.1 ms a
        band, where decoding even the coarsest level took about 5 ms). Elsewhere (a URL) its blocks are read at its
        coarsest resolution level: its codestream holds every level of a tile, so a truncated file fails there too,
        and the check decodes a thirty-fifth of the pixels.
        """
        src = self._src
        if src.driver in _JPEG2000 and readable_here(self.path):
            return _jpeg2000_error(src.driver, self.path)  # (checked on opening already)
        coarsest = max(src.overviews(1) or [1]) if src.driver == "JP2OpenJPEG" else 1
        for band, (block_rows, block_cols) in enumerate(src.block_shapes, start=1):
            block_rows, block_cols = max(int(block_rows), 1), max(int(block_cols), 1)
            last_row = (src.height - 1) // block_rows * block_rows
            last_col = (src.width - 1) // block_cols * block_cols
            first = Window(0, 0, min(block_cols, src.width), min(block_rows, src.height))
            last = Window(last_col, last_row, src.width - last_col, src.height - last_row)
            for window in (first, last) if last != first else (first,):
                # band by band, so the error names the band (GDAL caches the blocks bands share)
                shape = (max(1, window.height // coarsest), max(1, window.width // coarsest))
                for read, part in ((src.read, ""), (src.read_masks, "the validity mask of ")):
                    try:
                        read(band, window=window, out_shape=shape)
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
