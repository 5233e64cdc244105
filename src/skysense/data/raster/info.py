"""A raster file's metadata without reading pixels (:func:`raster_info`, :class:`RasterInfo`), and the error for a
file that cannot be opened or read.

A file that cannot be opened, or whose pixels cannot be read (truncated, corrupt), raises :class:`UnreadableRaster`
(an :class:`~skysense.errors.InputError`, so a ``ValueError``) whose message names the file and, for a failed read,
the bands and pixels; GDAL's own message ("Read failed. See previous exception for details.") names neither.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from skysense.containers import Bounds, Grid
from skysense.data.raster.pool import active_pool
from skysense.errors import InputError


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


# a GDAL connection string rather than a file name: vrt://…, ZARR:"…":/array (a Path would collapse its "//")
_CONNECTION = re.compile(r"^(?:vrt://|[A-Z][A-Z0-9_]+:)")


def raster_path(path: str | Path) -> Path | str:
    """``path`` as a :class:`~pathlib.Path`, or as the string when it is a GDAL connection string (``vrt://…``,
    ``ZARR:"…":/array``: the EOPF Zarr bands, see :mod:`skysense.data.products.eopf`), which a Path would mangle."""
    text = str(path)
    return text if _CONNECTION.match(text) else Path(path)


def _check_exists(path: Path | str) -> None:
    # a connection string, or a GDAL virtual file (inside a zip, on a URL): GDAL says if it is missing
    if isinstance(path, str) or str(path).startswith("/vsi"):
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
    """Open ``path`` (through the thread's :class:`~skysense.data.raster.pool.RasterPool` when one is active)."""
    pool = active_pool()
    if pool is not None:
        return pool.dataset(path, lambda: _open_new(path))
    return _open_new(path)


def _open_new(path: Path) -> rasterio.io.DatasetReader:
    _check_exists(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        raise _open_error(path, err) from err


def _checked_info(src: rasterio.io.DatasetReader, path: Path) -> RasterInfo:
    pool = active_pool()
    if pool is not None:
        return pool.info(path, lambda: _checked_new_info(src, path))
    return _checked_new_info(src, path)


def _checked_new_info(src: rasterio.io.DatasetReader, path: Path) -> RasterInfo:
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
    path = raster_path(path)
    with _open(path) as src:
        return _checked_info(src, path)
