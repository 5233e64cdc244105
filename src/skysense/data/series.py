"""A Sentinel time series of one place, co-registered onto one grid: the same code for training
(:class:`~skysense.data.manifest.ManifestDataset`) and scene inference (:class:`skysense.inference.sources.TileReader`).

- :func:`read_time_series` — per-date inputs (files, or products: a Sentinel-2 SAFE/zip/per-band folder, a
  Sentinel-1 polarisation pair, a STAC item) → a :class:`~skysense.containers.TimeSeries` on the target grid, bands
  found by name in the model's order, values converted to the model's sensor (L1C → L2A bands, linear → dB), each
  frame's date from the product, the given dates, or the file name.
- :func:`frames_that_count` — which frames of a series count, one rule for both paths.

A frame counts for a sample or tile when it has at least one valid pixel **and** at least ``min_valid_fraction``
of the pixels that could be valid are (clouds, nodata, outside the file are not). "Could be valid" is the whole
frame in training, and the part of a tile inside the scene in inference (a tile at the scene's edge, or larger
than a small scene, reaches past it). Frames that do not count are masked like padded frames, never fed as filler.
Before this module the two paths disagreed: training kept a frame when its fraction was *above* the threshold,
inference when it was *at or above* it, so a frame exactly at the threshold counted in one and not the other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from rasterio.enums import Resampling

from skysense.containers import Grid, TimeSeries
from skysense.data.dates import acquisition_date, check_series_dates, parse_date
from skysense.data.frames import frames_that_count  # noqa: F401 - part of this module's API
from skysense.data.products.mosaic import mosaic_by_date
from skysense.data.products.sentinel2 import clear_pixels
from skysense.data.raster.bands import BandSelection, resolve_bands, sensor_bands
from skysense.data.raster.info import RasterInfo, raster_info
from skysense.data.raster.litter import is_litter
from skysense.data.raster.read import Raster, read_raster
from skysense.data.raster.warp import reproject_to_grid
from skysense.data.sensors import SENSORS, Sensor, s2_l1c_to_model_bands, to_model
from skysense.errors import InputError

SERIES_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")  # per-date rasters in a series folder (any case)
_SIDECARS = (".aux.xml", ".ovr", ".msk")  # GDAL's own sidecar files: never reported as skipped
# Cloud-mask bands a stacked Sentinel-2 file may carry beside its reflectances, by band description (any case, with
# or without a resolution suffix such as "_20m"), in order of preference → (clear_pixels kind, flag bits):
# - "SCL": the L2A scene classification (Google Earth Engine's COPERNICUS/S2_SR exports; an L2A's bands stacked
#   with gdalbuildvrt together with its SCL) — no data, saturated, cloud shadow, medium/high cloud, cirrus;
# - "QA60": Earth Engine's L1C/L2A cloud bits (10 opaque clouds, 11 cirrus; left empty by ESA since 2022);
# - "Fmask": HLS's cloud, adjacent-to-cloud and shadow bits.
CLOUD_BANDS = {"SCL": ("scl", 0), "QA60": ("bits", (1 << 10) | (1 << 11)), "FMASK": ("fmask", 0)}


def _rasters_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SERIES_SUFFIXES and not is_litter(p)
    )


def _series_files(files: str | Path | Sequence[str | Path], pattern: str | None = None) -> list[Path]:
    """A directory (every ``.tif``, ``.tiff``, ``.jp2`` or ``.vrt`` in it, any case — or, when it holds none, in each
    of its folders: one folder per date —, or a glob ``pattern`` such as "**/*.tif") or a list of files → sorted
    paths; other files in the directory are skipped with a warning that names them.

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
            found = sorted(p for p in folder.glob(pattern) if p.is_file() and not is_litter(p))
            what = f"matching {pattern!r}"
        else:
            found = _rasters_in(folder)
            if not found:  # a folder of per-date folders (20190918/vv.tif, 20190918/vh.tif, 20190930/…)
                subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not is_litter(p))
                found = [p for sub in subfolders for p in _rasters_in(sub)]
            what = f"with a raster suffix ({', '.join(SERIES_SUFFIXES)}), nor in its folders"
            skipped = sorted(
                p.name
                for p in folder.iterdir()
                if p.is_file() and p not in found and not p.name.lower().endswith(_SIDECARS) and not is_litter(p)
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
    """Per-date files of one place → a :class:`~skysense.containers.TimeSeries` on one grid, sorted by date.

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
    paths = mosaic_by_date(paths)  # Sentinel-2 products of one date from several tiles → one frame
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
    """One stacked file of a series onto the series grid (bands by selection, by the sensor's names, or data bands);
    for Sentinel-2, pixels its cloud-mask band flags (:data:`CLOUD_BANDS`) are invalid, as in a product."""
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

        def read(selection: list[int], method: str | Resampling, fill: float | None) -> Raster:
            return reproject_to_grid(info.path, grid.crs, grid.transform, grid.shape, method, bands=selection,
                                     nodata=fill)  # fmt: skip

    elif info.crs is None and info.grid.shape == grid.shape:

        def read(selection: list[int], method: str | Resampling, fill: float | None) -> Raster:
            return read_raster(info.path, selection, nodata=fill)  # non-georeferenced frames of one size

    else:
        first_name = getattr(first, "path", getattr(first, "source", ""))
        raise ValueError(
            f"{info.path}: cannot place this file on the series grid ({grid.height}×{grid.width}, no CRS, from "
            f"{first_name}): give georeferenced files, or non-georeferenced files of one size"
        )
    raster = read(indexes, resampling, nodata)
    cloud = cloud_band(info) if sensor is not None and sensor.name == "s2" else None
    if cloud is None:
        return raster
    index, kind, bits = cloud
    return mask_clouds(raster, read([index], "nearest", None), kind, bits)


def mask_clouds(raster: Raster, mask: Raster, kind: str, bits: int = 0) -> Raster:
    """``raster`` with the pixels that ``mask`` (its cloud band, read on the same grid) flags made invalid (NaN)."""
    valid = raster.valid & clear_pixels(mask, kind, bits)[None]
    return dataclasses.replace(raster, values=np.where(valid, raster.values, np.float32(np.nan)), valid=valid)


def cloud_band(info: RasterInfo) -> tuple[int, str, int] | None:
    """The file's cloud-mask band, by description (:data:`CLOUD_BANDS`): (1-based index, :func:`clear_pixels` kind,
    flag bits), or None."""
    names = [re.sub(r"[_-]?\d+M$", "", (d or "").strip().upper()) for d in info.descriptions]
    for name, (kind, bits) in CLOUD_BANDS.items():
        if name in names:
            return names.index(name) + 1, kind, bits
    return None


def _to_model(values: np.ndarray, valid: np.ndarray, sensor: Sensor, source: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~skysense.data.sensors.to_model` on (C, H, W) values, with the validity mask following the band
    selection; values the conversion makes non-finite (0 linear power → -inf dB) become invalid."""
    converted, _ = to_model(values, sensor, source)
    if converted.shape[0] != valid.shape[0]:  # S2 L1C → the model's bands
        valid = s2_l1c_to_model_bands(valid, source)
    return converted, valid & np.isfinite(converted)
