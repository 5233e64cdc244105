"""Putting a raster onto another grid.

- :func:`reproject_to_grid` — any CRS onto a target grid; values resampled (bilinear by default, nearest for
  labels), the validity mask carried with nearest neighbour, and a number only where the source had one. A source
  already on the grid (same CRS, pixel size and pixel-aligned origin) is read as a window, without resampling.
- :func:`coregistered_grids` / :func:`read_coregistered` — the Sentinel grid whose pixel is ``ratio`` HR pixels
  (32 at the paper's 0.3 m / ~10 m), same origin and CRS as the HR image, and a Sentinel file read onto it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from skysense.containers import Grid
from skysense.data.raster.bands import BandSelection, resolve_bands
from skysense.data.raster.info import RasterInfo, _gdal_message, raster_info
from skysense.data.raster.read import Raster, RasterFile, window_from_bounds
from skysense.errors import InputError


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
    upsampling = _upsampling(source, target)
    return None if upsampling is None or upsampling[0] != 1 else upsampling[1:]


def _upsampling(source: Grid, target: Grid) -> tuple[int, int, int] | None:
    """(factor, row, col) when ``target`` subdivides ``source``'s pixels: same CRS, no rotation, each source pixel
    ``factor`` × ``factor`` target pixels (1: the same pixels), corners aligned to a hundredth of a target pixel
    across the target; target pixel (i, j) then lies in source pixel ((i + row) // factor, (j + col) // factor).
    None otherwise."""
    if source.crs is None or target.crs is None or source.crs != target.crs:
        return None
    s, t = source.transform, target.transform
    if s.b or s.d or t.b or t.d or not t.a or not t.e:
        return None
    factor = round(s.a / t.a)
    if factor < 1:
        return None
    span = max(target.width, target.height, 1)
    tolerance = 0.01 / factor  # of a source pixel
    if abs(s.a - factor * t.a) * span > tolerance * abs(s.a) or abs(s.e - factor * t.e) * span > tolerance * abs(s.e):
        return None
    col = factor * (t.c - s.c) / s.a  # in target pixels
    row = factor * (t.f - s.f) / s.e
    if abs(col - round(col)) > 0.01 or abs(row - round(row)) > 0.01:
        return None
    return factor, int(round(row)), int(round(col))


def reproject_to_grid(
    source: str | Path | Sequence[str | Path] | Raster,
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
        source: a file, files on one grid (a product's bands of one resolution: their bands stacked in order, put
            onto the target in one warp), or a :class:`Raster` already read.
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
        paths = [source] if isinstance(source, (str, Path)) else list(source)
        out = _read_files_onto(paths, target, method, bands, nodata)
    out = Raster(out.values, out.valid, out.band_names, target.crs, target.transform, out.path)
    return out.require_valid() if require_valid else out


def _read_files_onto(
    paths: list[str | Path], target: Grid, method: Resampling, bands: BandSelection | None, nodata: float | None
) -> Raster:
    """Files on one grid (per-band files of a product), their bands stacked and put onto ``target`` in one warp.

    GDAL's warper costs about 1.4 ms a call whatever the size: a Sentinel-2 product's 9 bands at 20 and 60 m, each
    warped (values and mask) alone onto a 32² tile, took 1.6 of 2.3 s per tile row of a 1932² scene.
    """
    with ExitStack() as stack:
        files = [stack.enter_context(RasterFile(path)) for path in paths]
        info = files[0].info
        _require_crs(info.crs, info.path, target)
        for other in files[1:]:
            if other.info.grid != info.grid:
                raise ValueError(f"{other.path}: not on the grid of {info.path}; read it on its own")
        selections = [resolve_bands(f.info, bands) for f in files]
        offset = _aligned_offset(info.grid, target)
        if offset is not None:  # a plain window of the files: no resampling
            window = Window(offset[1], offset[0], target.width, target.height)
            return _stacked(
                [f.read(i, window, boundless=True, nodata=nodata) for f, i in zip(files, selections, strict=True)]
            )
        window = _source_window(info, target)
        if window is None:  # the target lies outside the files: nothing valid
            shape = (sum(map(len, selections)), *target.shape)
            names = tuple(
                f.info.band_names[i - 1] for f, indexes in zip(files, selections, strict=True) for i in indexes
            )
            return Raster(np.full(shape, np.nan, np.float32), np.zeros(shape, bool), names, None, None, info.path)
        read = [f.read(i, window, nodata=nodata) for f, i in zip(files, selections, strict=True)]
        return _resample(_stacked(read), target, method, _warp_scale(info.grid, target))


def _stacked(rasters: list[Raster]) -> Raster:
    """Rasters of one window of one grid → one raster of all their bands (the first's path)."""
    if len(rasters) == 1:
        return rasters[0]
    first = rasters[0]
    values = np.concatenate([r.values for r in rasters])
    valid = np.concatenate([r.valid for r in rasters])
    names = tuple(name for r in rasters for name in r.band_names)
    return Raster(values, valid, names, first.crs, first.transform, first.path)


def _require_crs(crs: CRS | None, path: Path, target: Grid) -> None:
    if crs is None:
        raise ValueError(
            f"{path}: the raster has no CRS, so it cannot be reprojected onto the target grid in {target.crs}; "
            "assign its CRS first (e.g. `rio edit-info --crs EPSG:32630 FILE`)"
        )


def _nearest_upsampled(planes: np.ndarray, upsampling: tuple[int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour values of ``planes`` (C, h, w) on the subdividing target grid (C, *shape); target pixels
    outside the source get the fill of a zero plane (the caller marks them invalid). Exact: a target pixel's centre
    is never on a source pixel's edge."""
    factor, row, col = upsampling
    rows = (np.arange(shape[0]) + row) // factor
    cols = (np.arange(shape[1]) + col) // factor
    inside_rows = (rows >= 0) & (rows < planes.shape[1])
    inside_cols = (cols >= 0) & (cols < planes.shape[2])
    out = planes[:, np.clip(rows, 0, planes.shape[1] - 1)][:, :, np.clip(cols, 0, planes.shape[2] - 1)]
    out[:, ~inside_rows] = 0
    out[:, :, ~inside_cols] = 0
    return out


def _bilinear_axis(size: int, offset: int, factor: int, source: int) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis of a subdividing grid, GDAL's bilinear pair for each target pixel: the two source pixels its
    centre lies between and their weights, both ``(2, size)``. Indices are into the source padded by one pixel on
    each side (0: the pixel before the first; anything outside the source points at a pad). A centre before the
    first pixel's takes pixels 0 and 1 with weights 1 and 0, as GDAL does."""
    position = (np.arange(size) + offset + 0.5) / factor - 0.5  # in source pixel centres
    low = np.floor(position).astype(np.int64)
    upper = position - low
    before = low == -1
    low[before], upper[before] = 0, 0.0
    indices = np.stack([low, low + 1])
    weights = np.stack([1.0 - upper, upper])
    outside = (indices < 0) | (indices >= source)
    weights[outside] = 0.0
    return np.where(outside, np.where(indices < 0, 0, source + 1), indices + 1), weights


def _bilinear_upsampled(
    planes: np.ndarray, valid: np.ndarray, upsampling: tuple[int, int, int], shape: tuple[int, int]
) -> np.ndarray:
    """Bilinear values of ``planes`` (C, h, w) on the subdividing target grid (C, *shape), as GDAL's warper
    computes them with NaN as every band's nodata: the four source pixels around a target pixel's centre, weighted
    by distance; a source pixel invalid in every band is left out and the weights of the rest renormalised (as are
    those outside the source); a pixel invalid in some bands only brings its NaN into those bands (GDAL's pixel
    mask unifies the bands: UNIFIED_SRC_NODATA=PARTIAL). Separable, so two gathers per axis instead of a warper call
    (about 7 ms each whatever the size: the 20 and 60 m bands of three SAFE products took 1.1 of 2.2 s reading a
    510² scene's 25 tiles). In float32: within 1e-6 of GDAL's float64 sums, and the same bits for a pixel whatever
    window it is read with."""
    factor, row, col = upsampling
    rows, row_weights = _bilinear_axis(shape[0], row, factor, planes.shape[1])
    cols, col_weights = _bilinear_axis(shape[1], col, factor, planes.shape[2])
    row_weights, col_weights = row_weights.astype(np.float32), col_weights.astype(np.float32)
    mask = valid & np.isfinite(planes)
    left_out = ~mask.any(axis=0)  # (h, w): invalid in every band
    # values (0 where left out, NaN where invalid in that band only) and the weight each pixel brings, as
    # C + 1 planes padded with a zero pixel on each side (outside the source: no value, no weight)
    stacked = np.zeros((planes.shape[0] + 1, planes.shape[1] + 2, planes.shape[2] + 2), np.float32)
    stacked[:-1, 1:-1, 1:-1] = np.where(left_out, 0.0, np.where(mask, planes, np.nan))
    stacked[-1, 1:-1, 1:-1] = ~left_out
    stacked = row_weights[0][:, None] * stacked[:, rows[0]] + row_weights[1][:, None] * stacked[:, rows[1]]
    stacked = col_weights[0] * stacked[..., cols[0]] + col_weights[1] * stacked[..., cols[1]]  # (C + 1, H, W)
    weight = stacked[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = stacked[:-1] / weight
    out[:, weight == 0] = np.nan
    return out.astype(planes.dtype)


def _warp_scale(source: Grid, target: Grid) -> tuple[float, float] | None:
    """Target pixels per source pixel along x and y over the whole ``source`` raster (GDAL's XSCALE and YSCALE
    warp options); None when its bounds cannot be put into the target's CRS.

    GDAL otherwise derives them from each call's source window, clipped to the file: a tile at a file's edge, or a
    region past it, got another kernel width than its neighbours when downsampling (values 0.04 apart, in
    normalised units, on the real S1 chip read onto 32× HR tiles). Fixed per file, a pixel's value no longer
    depends on the window it is read with.
    """
    try:
        left, bottom, right, top = transform_bounds(source.crs, target.crs, *source.bounds, densify_pts=21)
    except RasterioError:
        return None
    if not all(map(math.isfinite, (left, bottom, right, top))) or right <= left or top <= bottom:
        return None
    across, down = (right - left) / abs(target.transform.a), (top - bottom) / abs(target.transform.e)  # target px
    return across / source.width, down / source.height


def _resample(raster: Raster, target: Grid, method: Resampling, scale: tuple[float, float] | None = None) -> Raster:
    """Warp values (from valid pixels only) and the validity mask (nearest) onto ``target``.

    Where ``target`` subdivides the source's pixels (a Sentinel-2 product's 20 and 60 m bands and masks onto a
    10 m grid), nearest neighbour is an exact index lookup and bilinear two weighted gathers per axis, both done
    without GDAL's warper (about 2–7 ms a call whatever the size: a SAFE scene's 18 warps per 128² tile) and
    tested equal to it (tests/data/test_upsampling.py); other methods and other grids go through GDAL.
    """
    upsampling = _upsampling(raster.grid, target)
    if upsampling is not None:
        carried = _nearest_upsampled(raster.valid.astype(np.uint8), upsampling, target.shape)
        if method == Resampling.nearest:
            values = _nearest_upsampled(raster.values, upsampling, target.shape)
        elif method == Resampling.bilinear and upsampling[0] % 2 == 0:  # odd: centres on source centres, where
            # GDAL's rounding picks either neighbour pair; even (S2's 2 and 6): never
            values = _bilinear_upsampled(raster.values, raster.valid, upsampling, target.shape)
        else:  # the same fixed scale as below (the kernel does not depend on the window)
            values = _warped(raster.values, raster, target, method, np.nan, scale or _warp_scale(raster.grid, target))
    else:
        scale = scale or _warp_scale(raster.grid, target)
        values = _warped(raster.values, raster, target, method, np.nan, scale)
        carried = _warped(raster.valid.astype(np.uint8), raster, target, Resampling.nearest, None, scale)
    valid = carried.astype(bool) & np.isfinite(values)
    values[~valid] = np.nan
    return Raster(values, valid, raster.band_names, target.crs, target.transform, raster.path)


def _warped(
    planes: np.ndarray,
    raster: Raster,
    target: Grid,
    method: Resampling,
    nodata: float | None,
    scale: tuple[float, float] | None = None,
) -> np.ndarray:
    """``planes`` (C, h, w) on ``raster``'s grid, warped by GDAL onto ``target`` (C, H, W); ``nodata`` on both
    sides (None: none, the destination starts at 0); ``scale``: see :func:`_warp_scale`. Exact coordinates
    (``tolerance=0``): GDAL's default approximates them per call to 0.125 source pixels."""
    destination = np.full((planes.shape[0], *target.shape), 0 if nodata is None else nodata, dtype=planes.dtype)
    options = {} if scale is None else {"XSCALE": repr(scale[0]), "YSCALE": repr(scale[1])}
    reproject(source=planes, destination=destination, src_transform=raster.transform, src_crs=raster.crs,
              src_nodata=nodata, dst_transform=target.transform, dst_crs=target.crs, dst_nodata=nodata,
              resampling=method, tolerance=0, **options)  # fmt: skip
    return destination


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
