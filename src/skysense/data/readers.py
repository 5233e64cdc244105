"""Reading rasters with rasterio: values as float32 plus an explicit validity mask (nodata and NaN are never
silently turned into numbers). This is the simplest reader; windowed, reprojecting and time-series readers build
on it in :mod:`skysense.data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window


@dataclass
class Raster:
    """Values and metadata of one read.

    Attributes:
        values: (C, H, W) float32; entries where ``valid`` is False are NaN.
        valid: (C, H, W) bool, False where the file says nodata or holds NaN.
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

    def center_lat_lon(self) -> tuple[float, float]:
        """Latitude and longitude (degrees, WGS 84) of the read window's centre."""
        from rasterio.warp import transform as warp_transform

        height, width = self.values.shape[-2:]
        x, y = self.transform @ (width / 2, height / 2)
        if self.crs is None:
            raise ValueError(f"{self.path}: no CRS, cannot compute latitude/longitude")
        lon, lat = warp_transform(self.crs, "EPSG:4326", [x], [y])
        return float(lat[0]), float(lon[0])


def read_raster(path: str | Path, bands: list[int] | None = None, window: Window | None = None) -> Raster:
    """Read bands (1-based indices, default all) of a raster, optionally a window.

    Raises:
        FileNotFoundError / ValueError: naming the file when it is missing or unreadable, or a band is out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no raster at {path}")
    try:
        with rasterio.open(path) as src:
            indexes = bands or list(range(1, src.count + 1))
            if min(indexes) < 1 or max(indexes) > src.count:
                raise ValueError(f"{path}: bands {indexes} requested but the file has {src.count}")
            masked = src.read(indexes, window=window, masked=True)
            names = tuple(src.descriptions[i - 1] or f"band_{i}" for i in indexes)
            transform = src.window_transform(window) if window is not None else src.transform
            crs = src.crs
    except rasterio.errors.RasterioIOError as err:
        raise ValueError(f"cannot read raster {path}: {err}") from err
    values = masked.filled(np.nan).astype(np.float32) if np.ma.is_masked(masked) else np.asarray(masked, np.float32)
    valid = ~np.ma.getmaskarray(masked) & np.isfinite(values)
    values = np.where(valid, values, np.nan).astype(np.float32)
    return Raster(values, valid, names, crs, transform, path)
