"""Raster I/O with rasterio: values as float32 plus an explicit validity mask (nodata and NaN are never silently
turned into numbers). One room a job:

- :mod:`~skysense.data.raster.info` — a file's metadata without reading pixels (:func:`raster_info`), and the
  one-line error for a file that cannot be opened or read (:class:`UnreadableRaster`).
- :mod:`~skysense.data.raster.bands` — which bands of a file are which: by 1-based index or by name
  (:func:`resolve_bands`), a sensor's bands by B-code, STAC common name or polarisation (:func:`sensor_bands`), and
  the red/green/blue(/nir) of an HR image from its colour interpretation and descriptions (:func:`hr_bands_from_tags`).
- :mod:`~skysense.data.raster.read` — bands of a window (:func:`read_raster`; :class:`RasterFile` for a file
  opened once and read many times), block-aligned windows (:func:`iter_windows`), and :func:`check_readable` (the
  first and last block of every band actually read: a truncated download keeps its header and loses its end).
- :mod:`~skysense.data.raster.warp` — any CRS onto a target grid (:func:`reproject_to_grid`: values bilinear by
  default, nearest for labels, the validity mask carried with nearest neighbour), and the Sentinel grid
  co-registered with an HR image (:func:`coregistered_grids`, :func:`read_coregistered`).
- :mod:`~skysense.data.raster.archive` — rasters inside a zip as downloaded, read in place through ``/vsizip/``
  (:func:`~skysense.data.raster.archive.zip_rasters`), and the archive on disk behind such a path (``on_disk``).

Validity is per band: False where the file's mask says so (nodata value, an internal per-dataset or per-band mask,
an alpha band), where the value is NaN/inf, and where an optional extra mask says so. The grid type
(:class:`~skysense.containers.Grid`) lives in the neutral :mod:`skysense.containers`, which models and inference
import without rasterio.
"""

from skysense.data.raster.bands import BandSelection, hr_bands_from_tags, resolve_bands, sensor_bands
from skysense.data.raster.info import RasterInfo, UnreadableRaster, raster_info
from skysense.data.raster.read import Raster, RasterFile, check_readable, iter_windows, read_raster, window_from_bounds
from skysense.data.raster.warp import coregistered_grids, read_coregistered, reproject_to_grid

__all__ = [
    "BandSelection",
    "Raster",
    "RasterFile",
    "RasterInfo",
    "UnreadableRaster",
    "check_readable",
    "coregistered_grids",
    "hr_bands_from_tags",
    "iter_windows",
    "raster_info",
    "read_coregistered",
    "read_raster",
    "reproject_to_grid",
    "resolve_bands",
    "sensor_bands",
    "window_from_bounds",
]
