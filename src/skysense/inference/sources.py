"""The inputs of a scene prediction: an HR image and/or Sentinel-2/-1 time series, read tile by tile.

The scene's *reference grid* is the HR image's grid when there is one; the Sentinel series are then read onto the
grid co-registered with each HR tile (one Sentinel pixel = ``ratio`` HR pixels, 32 as in the paper), reprojected
from whatever CRS and resolution their files have. Without an HR image the reference grid is the first Sentinel file's.

Each tile is read with its validity: HR pixels are invalid where any band is nodata/NaN/masked; a Sentinel frame
counts for a tile only when at least ``min_valid_fraction`` of its pixels inside the scene are valid (the rest,
cloudy or outside the file, are masked as padded frames); a Sentinel pixel is valid where some kept frame is.
Invalid values are filled with the band mean (0 after normalisation) for the forward only; the output is nodata
there.

Units are checked, never guessed: the HR image must hold 0–255 values (a scene-wide sample is also checked for
plausibility, e.g. a 0–1 image), Sentinel files go through :func:`skysense.data.sensors.to_model` and the
sensor's range check (see :mod:`skysense.data.sensors`). Errors name the file and the band or window.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.windows import Window

from skysense.batch import SkySenseInput
from skysense.containers import Grid, day_of_year_index
from skysense.data.dates import acquisition_date, check_series_dates, parse_date
from skysense.data.products import (
    S2Product,
    find_s2_products,
    is_s2_product_path,
    mosaic_by_date,
    refuse_unnamed_band_files,
)
from skysense.data.products.sentinel1 import (
    S1Pair,
    check_geocoded,
    check_hyp3_scale,
    group_polarisations,
    s1_units,
)
from skysense.data.products.stac import StacItem, is_stac_path, read_stac
from skysense.data.raster import RasterFile, check_readable, hr_bands_from_tags, raster_info, resolve_bands
from skysense.data.raster.archive import on_disk, zip_rasters
from skysense.data.raster.pool import RasterPool
from skysense.data.sensors import HR_RGB, HR_RGBN, Sensor, check_units, get_sensor
from skysense.data.series import SERIES_SUFFIXES, _series_files, frames_that_count, read_time_series
from skysense.data.stretch import HRStretch, checked_range
from skysense.errors import InputError, UsageError

_REMOTE_ZARR = re.compile(r"^(?:https?|s3)://.+\.zarr/?$", re.IGNORECASE)  # an EOPF product's URL

SENTINEL = ("s2", "s1")


@dataclass
class SeriesSource:
    """One Sentinel time series: per-date files or products (or one of them for one date), their sensor and dates.

    Attributes:
        files: per-date stacked files and/or products — Sentinel-2 (:class:`~skysense.data.products.S2Product`),
            STAC Items, Sentinel-1 polarisation pairs —, any order (sorted by date when read).
        sensor: a key of :data:`skysense.data.sensors.SENSORS` ("s2_l2a", "s2_l1c", "s1_grd", "s1_grd_linear").
        dates: one date per item, or None to read them from the files (names, tags; see :mod:`skysense.data.dates`).
        allow_duplicate_dates: keep items that share a date.
    """

    files: list[Path | S2Product | S1Pair | StacItem]
    sensor: str
    dates: list[dt.date] | None = None
    allow_duplicate_dates: bool = False

    @property
    def paths(self) -> list[Path]:
        """The files on disk the series reads (a product's band files, metadata and mask, or its zip)."""
        return list(
            dict.fromkeys(
                on_disk(p) for item in self.files for p in ((item,) if isinstance(item, Path) else item.files)
            )
        )

    @property
    def rasters(self) -> list[str | Path]:
        """Every raster the series reads (GDAL paths: a zipped product's bands are ``/vsizip/`` paths)."""
        return [p for item in self.files for p in ((item,) if isinstance(item, Path) else item.rasters)]

    @classmethod
    def from_arg(
        cls,
        files: str | Path | Sequence[str | Path],
        sensor: str,
        dates: Sequence[str] | None = None,
        *,
        allow_duplicate_dates: bool = False,
        filename_regex: str | None = None,
        date_format: str | None = "%Y%m%d",
        sidecar: str | Path | None = None,
    ) -> SeriesSource:
        """Per-date files and Sentinel-2 products from what a user gives: a file, a list of files, a folder of
        per-date GeoTIFFs (every ``*.tif`` in it), or Sentinel-2 products as downloaded — a ``.SAFE`` folder or
        ``.SAFE.zip``, a folder of them, a granule's ``IMG_DATA`` folder, loose per-band files (see
        :mod:`skysense.data.products.sentinel2`), STAC Item/ItemCollection JSONs or a folder of them
        (:mod:`skysense.data.products.stac`), Sentinel-1 as one file per polarisation
        (:mod:`skysense.data.products.sentinel1`). ``dates`` as ISO strings (default: from the files; products carry
        theirs; ``filename_regex``/``date_format``/``sidecar`` as in :func:`~skysense.data.dates.acquisition_date`).
        ``sensor`` "auto": the products' level (L1C → "s2_l1c", L2A → "s2_l2a"), else "s2_l2a"; "s1_auto": decibels
        or linear power ("s1_grd" / "s1_grd_linear", see :func:`~skysense.data.products.sentinel1.s1_units`), said
        in one warning line. Dates are
        resolved and checked here, before any work: a date in the future, or two items of one date (unless
        ``allow_duplicate_dates``), is refused naming them. What a product's reading assumes (missing metadata or
        cloud mask) is said once, as a warning.

        Raises:
            FileNotFoundError: a file is missing. UsageError: the number of dates does not match the files, or dates
            given for products. InputError: a date cannot be found or parsed, lies in the future, or is shared by
            two items; products of both levels, or of a level other than ``sensor``.
        """
        items: list[Path | S2Product | StacItem] = []
        for given in [files] if isinstance(files, (str, Path)) else list(files):
            if isinstance(given, str) and _REMOTE_ZARR.match(given):  # an EOPF product where it is stored
                from skysense.data.products.eopf import read_eopf_s2

                items.append(read_eopf_s2(given))
                continue
            path = Path(given)
            if is_stac_path(path):
                items += read_stac(path)
            elif is_s2_product_path(path):
                items += find_s2_products(path)
            elif path.is_dir():
                found = _series_files(path)
                refuse_unnamed_band_files(path, found)
                items += found
            elif not path.is_file():
                raise FileNotFoundError(f"no Sentinel file at {path}")
            elif path.suffix.lower() == ".zip":  # a zipped product of GeoTIFFs (ASF HyP3 RTC), read in place
                items += zip_rasters(path, SERIES_SUFFIXES)
            else:
                items.append(path)
        items = mosaic_by_date(items)  # one date's tiles (MGRS) → one frame
        products = [item for item in items if not isinstance(item, Path)]
        levels = sorted({product.sensor for product in products if product.sensor})
        if len(levels) > 1:
            raise InputError(
                f"{products[0].source} and others: Sentinel-2 products of both levels (L1C and L2A) in one series; "
                "give the products of one level"
            )
        if sensor == "s1_auto":  # decibels or linear power: from an ASF HyP3 name, else the values
            rasters = [r for item in items for r in ((str(item),) if isinstance(item, Path) else item.rasters)]
            if not rasters:
                raise InputError(f"{files}: no Sentinel-1 file found")
            sensor, reason = s1_units(rasters)
            warnings.warn(f"{rasters[0]}: Sentinel-1 read as {get_sensor(sensor).units} ({reason}); give "
                          "--s1-sensor s1_grd (dB) or s1_grd_linear (power) to choose", stacklevel=2)  # fmt: skip
        elif sensor == "auto":
            sensor = levels[0] if levels else "s2_l2a"
        elif levels and levels[0] != sensor:
            leveled = next(p for p in products if p.sensor)
            raise InputError(
                f"{leveled.source}: a Sentinel-2 {leveled.level} product given as {sensor}; use --s2-sensor "
                f"{levels[0]} (or auto)"
            )
        get_sensor(sensor)
        for product in products:
            for assumption in product.assumptions:
                warnings.warn(f"{product.source}: {assumption}", stacklevel=2)
        names = [str(item) if isinstance(item, Path) else f"{item.source} ({item.name}, {item.date})" for item in items]
        if dates is not None:
            if products:
                raise UsageError(
                    f"--{sensor[:2]}-dates: Sentinel-2 products carry their sensing dates; leave out the dates"
                )
            if len(dates) != len(items):
                raise UsageError(
                    f"--{sensor[:2]}-dates: {len(dates)} dates for {len(items)} {sensor} files "
                    f"({', '.join(names)}); give one date per file, in the files' order"
                )
            parsed = [parse_date(str(d), None, str(p)) for d, p in zip(dates, items, strict=True)]
        else:
            parsed = []
            for item in items:
                if not isinstance(item, Path):  # products and STAC Items carry their dates
                    parsed.append(item.date)
                    continue
                try:
                    found = acquisition_date(
                        item, filename_regex=filename_regex, date_format=date_format, sidecar=sidecar
                    )
                except ValueError as err:
                    if "no acquisition date found" not in str(err):
                        raise
                    raise InputError(
                        f"{err}; give the dates with --{sensor[:2]}-dates (one per file, in order), or "
                        "--filename-regex with a (?P<date>...) group, or --sidecar with a file name → date table"
                    ) from None
                parsed.append(found)
        for item in items:
            if isinstance(item, Path):
                check_geocoded(item)
        if sensor.startswith("s1"):  # one file per polarisation → one acquisition
            items, parsed = group_polarisations(items, parsed)
            for item in items:
                files_of_item = item.files if isinstance(item, S1Pair) else (item,) if isinstance(item, Path) else ()
                for file in files_of_item:
                    check_hyp3_scale(file, sensor)
            names = [str(item) if isinstance(item, Path) else str(item.source) for item in items]
        check_series_dates(parsed, names, allow_duplicates=allow_duplicate_dates, what=f"{sensor} series")
        return cls(items, sensor, parsed, allow_duplicate_dates)


@dataclass
class SceneSources:
    """What a scene prediction reads.

    Attributes:
        hr: the HR image (GeoTIFF/COG of any size), or None.
        hr_bands: 1-based band indexes or names of the HR image, in the model's order (default: the bands its
            colour interpretation or band descriptions name red, green, blue[, nir] — a BGR file is read as RGB,
            contradicting tags are refused, see :mod:`skysense.data.raster.bands` —, else its first 3 or 4 data bands).
        s2, s1: Sentinel time series, or None.
        ratio: HR pixels per Sentinel pixel along each axis.
        min_valid_fraction: a Sentinel frame counts for a tile when at least this share of its pixels inside the
            scene is valid.
        hr_range: HR values that become 0 and 255 (a linear stretch, clipped), for imagery that is not 8-bit (11-,
            12- or 16-bit DN of WorldView, Pléiades, SPOT …; the HR encoder's statistics are those of 0–255 RGB):
            (low, high) for every band, or "auto" for each band's 2nd and 98th percentiles over a scene-wide sample
            (QGIS's cumulative count cut). None: the values are taken as 0–255 DN, and others are refused.
    """

    hr: Path | None = None
    hr_bands: list[int | str] | None = None
    hr_range: tuple[float, float] | str | None = None
    s2: SeriesSource | None = None
    s1: SeriesSource | None = None
    ratio: int = 32
    min_valid_fraction: float = 0.5
    _grid: Grid | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.hr is None and self.s2 is None and self.s1 is None:
            raise UsageError("a scene needs at least one input: give --hr, --s2 or --s1")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, int) or self.ratio < 1:
            raise UsageError(
                f"--ratio: {self.ratio!r} is out of range; give an integer >= 1 (HR pixels per Sentinel pixel)"
            )
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise UsageError(
                f"min_valid_fraction: {self.min_valid_fraction!r} is out of range; give a number in [0, 1]"
            )
        if self.hr_range is not None and self.hr_range != "auto":
            self.hr_range = checked_range(self.hr_range, "--hr-range", "LOW,HIGH", "auto")
        if self.hr is not None:
            self.hr = Path(self.hr)
            if not self.hr.is_file():
                raise FileNotFoundError(f"no HR image at {self.hr}")

    @property
    def modalities(self) -> list[str]:
        return [name for name in ("hr", "s2", "s1") if getattr(self, name) is not None]

    @property
    def reference(self) -> Path | S2Product | S1Pair | StacItem:
        """What defines the reference grid: the HR image, else the first Sentinel item (a file or a product)."""
        if self.hr is not None:
            return self.hr
        series = self.s2 if self.s2 is not None else self.s1
        return series.files[0]

    @property
    def reference_file(self) -> Path:
        """The file (or product) named in messages about the reference grid."""
        reference = self.reference
        return reference if isinstance(reference, Path) else reference.source

    @property
    def grid(self) -> Grid:
        """The reference grid (CRS, transform, size): a product's is its 10 m grid."""
        if self._grid is None:
            reference = self.reference
            self._grid = raster_info(reference).grid if isinstance(reference, Path) else reference.grid()
        return self._grid

    @property
    def sentinel_scale(self) -> int:
        """Reference pixels per Sentinel pixel: ``ratio`` with an HR image, else 1."""
        return self.ratio if self.hr is not None else 1


def _hr_sensor(channels: int) -> Sensor:
    if channels == 3:
        return HR_RGB
    if channels == 4:
        return HR_RGBN
    raise ValueError(f"the HR encoder takes {channels} channels; only RGB (3) and RGB+NIR (4) have statistics")


def check_hr_scene(
    path: Path,
    bands: list[int],
    sensor: Sensor,
    stretch: HRStretch | None = None,
    values: np.ndarray | None = None,
) -> None:
    """Check a scene-wide sample of the HR image (``values``, else read by :func:`hr_scene_sample`), stretched by
    ``stretch`` when given, against the sensor's units, with the plausibility checks that single dark tiles could
    fail (e.g. a 0–1 image). Each tile's values are range-checked again as it is read.

    Raises:
        ValueError: naming the file, the bands and the values' span, and ``--hr-range`` for values above 255.
    """
    if values is None:
        values = hr_scene_sample(path, bands)
    if stretch is not None:
        values = stretch(values)
    try:
        check_units(values, sensor, f"{path} (bands {bands})")
    except ValueError as err:
        if stretch is None and np.nanmax(values, initial=0.0) > sensor.valid_range[1]:
            raise InputError(
                f"{err}; for imagery that is not 8-bit give --hr-range LOW,HIGH (the values that become 0 and 255, "
                "e.g. 0,2047 for 11-bit DN) or --hr-range auto (each band's 2-98 % percentiles)"
            ) from None
        raise


def hr_stretch(
    hr_range: tuple[float, float] | str, path: Path, bands: list[int], values: np.ndarray | None = None
) -> HRStretch:
    """The stretch ``hr_range`` asks for: fixed, or "auto" from the 2nd and 98th percentiles of a scene-wide sample
    (``values``, else read by :func:`hr_scene_sample`).

    Raises:
        InputError: "auto" on a band that holds one value over the sample (nothing to stretch).
    """
    if hr_range != "auto":
        return HRStretch(*hr_range)
    if values is None:
        values = hr_scene_sample(path, bands)
    low, high = np.nanpercentile(values, 2, axis=1), np.nanpercentile(values, 98, axis=1)
    flat = ~(high > low)
    if flat.any():
        raise InputError(
            f"{path}: --hr-range auto: bands {[b for b, f in zip(bands, flat, strict=True) if f]} hold one value "
            "over the scene's sample (nothing to stretch); give --hr-range LOW,HIGH"
        )
    return HRStretch(low, high)


def hr_scene_sample(path: Path, bands: list[int], sample: int = 1024, max_blocks: int = 8) -> np.ndarray:
    """A scene-wide sample of the HR image's values: (C, N) float32, NaN where masked.

    A decimated read of the whole image when the file has overviews (GDAL reads them), otherwise up to
    ``max_blocks`` × ``max_blocks`` of its blocks spread evenly over the scene (first and last rows and columns
    included), each decimated: a decimated read of a file without overviews decodes every block, which for an 8k²
    scene cost more than the model on a GPU.
    """
    with rasterio.open(path) as src:
        if src.overviews(bands[0]):
            scale = max(1, max(src.height, src.width) // sample)
            shape = (len(bands), max(1, src.height // scale), max(1, src.width // scale))
            masked = src.read(bands, out_shape=shape, masked=True, resampling=Resampling.nearest)
            parts = [masked]
        else:
            block_h, block_w = src.block_shapes[bands[0] - 1]
            n_rows, n_cols = -(-src.height // block_h), -(-src.width // block_w)
            rows = np.unique(np.linspace(0, n_rows - 1, min(n_rows, max_blocks)).round().astype(int))
            cols = np.unique(np.linspace(0, n_cols - 1, min(n_cols, max_blocks)).round().astype(int))
            step = max(1, max(src.height, src.width) // sample)  # about sample² values in all
            parts = []
            for r in rows:
                for c in cols:
                    window = Window(c * block_w, r * block_h, block_w, block_h).intersection(
                        Window(0, 0, src.width, src.height)
                    )
                    parts.append(src.read(bands, window=window, masked=True)[:, ::step, ::step])
    return np.concatenate(
        [
            np.where(np.ma.getmaskarray(p), np.nan, np.asarray(p.data, dtype=np.float32)).reshape(len(bands), -1)
            for p in parts
        ],
        axis=1,
    )


class TileReader:
    """Reads tiles of a scene as model inputs; open files are held until :meth:`close` (use one reader per thread).

    Args:
        sources: the scene's inputs.
        hr_channels: channels of the model's HR encoder (3 or 4), when it reads the HR image.
        modalities: the inputs the model reads (a subset of ``sources.modalities``).
        check_scene: on opening, read the first and last block of every band of every input file
            (:func:`~skysense.data.raster.check_readable`: a truncated file is refused before any work) and check
            the whole HR image's units once (:func:`check_hr_scene`).
        hr_stretch_of: the HR stretch another reader of the scene already resolved from ``sources.hr_range`` (an
            "auto" one is computed from a scene-wide sample, which one reader reads, not each).
    """

    def __init__(
        self,
        sources: SceneSources,
        modalities: Sequence[str],
        hr_channels: int | None = None,
        check_scene: bool = True,
        hr_stretch_of: HRStretch | None = None,
    ) -> None:
        self.sources = sources
        self.modalities = list(modalities)
        missing = [m for m in self.modalities if m not in sources.modalities]
        if missing:
            raise ValueError(f"the model reads {missing} but the scene has only {sources.modalities}")
        self.grid = sources.grid
        self.input_valid = False  # set by read()
        # the series' files stay open from tile to tile, so that GDAL's block cache serves neighbouring tiles
        self._pool = RasterPool()
        # the last region read per series: (region, normalised values, validity, dates), see _region_series
        self._regions: dict[str, tuple[tuple[int, int, int, int], np.ndarray, np.ndarray, list]] = {}
        self._hr: RasterFile | None = None
        self.hr_sensor: Sensor | None = None
        self.hr_stretch: HRStretch | None = None
        if "hr" in self.modalities:
            self._hr = RasterFile(sources.hr)
            info = self._hr.info
            channels = hr_channels or 3
            self.hr_sensor = _hr_sensor(channels)
            if sources.hr_bands is not None:
                self.hr_bands = resolve_bands(info, sources.hr_bands)
            elif (tagged := hr_bands_from_tags(info, channels)) is not None:  # colour interpretation / band names
                self.hr_bands = tagged
            else:
                data = info.data_bands
                if len(data) < channels:
                    repeat = ",".join(str(data[0]) for _ in range(channels)) if data else "1,1,1"
                    raise InputError(
                        f"{sources.hr}: the model's HR encoder takes {channels} bands "
                        f"{list(self.hr_sensor.bands)} but the file has {len(data)} data bands; give an image with "
                        f"them, or --hr-bands {repeat} to feed a single band as every channel (a panchromatic image)"
                    )
                self.hr_bands = data[:channels]
            if len(self.hr_bands) != channels:
                raise ValueError(f"{sources.hr}: {len(self.hr_bands)} HR bands selected, the model takes {channels}")
            if check_scene:
                unreadable = self._hr.unreadable_block()  # a truncated scene is refused before any work
                if unreadable is not None:
                    raise unreadable
            sampled = check_scene or (hr_stretch_of is None and sources.hr_range == "auto")
            sample = hr_scene_sample(sources.hr, self.hr_bands) if sampled else None  # read once for both uses
            self.hr_stretch = hr_stretch_of
            if self.hr_stretch is None and sources.hr_range is not None:
                self.hr_stretch = hr_stretch(sources.hr_range, sources.hr, self.hr_bands, sample)
            if check_scene:
                check_hr_scene(sources.hr, self.hr_bands, self.hr_sensor, self.hr_stretch, sample)
        if check_scene:
            try:
                for name in SENTINEL:
                    if name in self.modalities:
                        if self.grid.crs is not None:
                            _check_overlap(getattr(sources, name), name, self.grid, sources.reference_file)
                        with self._pool.active():  # the blocks decoded by the checks stay in GDAL's cache
                            for path in getattr(sources, name).rasters:
                                check_readable(path)
                            # one Sentinel pixel through the whole read: a file without the sensor's bands (a
                            # 4-band stack given as S2, a product of the other level) is refused now, not at the
                            # first tile of the run
                            self._read_series(name, 0, 0, self.sources.sentinel_scale)
            except BaseException:
                self.close()
                raise
            self.input_valid = False

    def close(self) -> None:
        self._regions.clear()
        if self._hr is not None:
            self._hr.close()
        self._pool.close()

    # ------------------------------------------------------------------------------------------------------------
    def _sentinel_grid(self, row: int, col: int, height: int, width: int) -> Grid:
        scale = self.sources.sentinel_scale
        transform = self.grid.transform @ Affine.translation(col, row) @ Affine.scale(scale)
        return Grid(self.grid.crs, transform, height // scale, width // scale)

    def _region_series(self, name: str, region: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, list]:
        """The ``name`` series read onto the Sentinel grid of ``region`` (row, col, height, width in reference
        pixels) and normalised for the model: (values (T, C, h, w) float32, 0 where invalid; valid (T, h, w) bool;
        dates). The last region read is kept, so the tiles that share it are cut from memory.

        The units are checked and the values normalised once per region, not per tile: a chunk's tiles overlap
        (by 1.8 times their area at the default tile and overlap), and the tiles' values are the same, element by
        element. A value outside the sensor's range is refused at the region's read, naming the files.
        """
        cached = self._regions.get(name)
        if cached is not None and cached[0] == region:
            return cached[1:]
        self._regions.pop(name, None)  # the previous region's memory, before reading the next
        source: SeriesSource = getattr(self.sources, name)
        grid = self._sentinel_grid(*region)
        if grid.crs is None and self.sources.hr is not None:
            raise ValueError(f"{self.sources.hr}: the HR image has no CRS, so the {name} files cannot be placed on it")
        sensor = get_sensor(source.sensor)
        series = read_time_series(source.files, grid=grid, sensor=sensor, dates=source.dates,
                                  allow_duplicate_dates=source.allow_duplicate_dates)  # fmt: skip
        model_sensor = get_sensor(sensor.model_sensor) if sensor.model_sensor else sensor
        values = series.values.numpy()  # (T, C, h, w)
        normalised = model_sensor.normalize(
            values.transpose(1, 0, 2, 3), f"{name} files {[str(f) for f in source.paths]}"
        )
        valid, dates = series.valid.numpy(), series.dates
        del series, values
        normalised = normalised.transpose(1, 0, 2, 3)  # (T, C, h, w), a view
        normalised = np.where(valid[:, None], normalised, np.float32(0.0))  # one new float32 array
        self._regions[name] = (region, normalised, valid, dates)
        return normalised, valid, dates

    def _inside_scene(self, row: int, col: int, size: int, scale: int) -> int:
        """Sentinel pixels of a tile that lie inside the reference grid (a tile at the scene's edge, or larger than
        a small scene, reaches past it: its frames' valid fraction counts the inside only)."""
        height = max(0, min(row + size, self.grid.height) - row) // scale
        width = max(0, min(col + size, self.grid.width) - col) // scale
        return height * width

    def _read_series(
        self, name: str, row: int, col: int, size: int, region: tuple[int, int, int, int] | None = None
    ) -> tuple[torch.Tensor, ...]:
        region = region or (row, col, size, size)
        scale = self.sources.sentinel_scale
        values, valid, dates = self._region_series(name, region)
        top, left, side = (row - region[0]) // scale, (col - region[1]) // scale, size // scale
        rows, cols = slice(top, top + side), slice(left, left + side)
        normalised = np.ascontiguousarray(values[:, :, rows, cols])  # (T, C, h, w), 0 where invalid
        valid = np.ascontiguousarray(valid[:, rows, cols])  # (T, h, w)
        inside = self._inside_scene(row, col, size, scale)  # Sentinel pixels in the scene
        frame_ok = frames_that_count(torch.from_numpy(valid), self.sources.min_valid_fraction, inside).numpy()
        pixel_valid = (valid & frame_ok[:, None, None]).any(axis=0)
        days = day_of_year_index(dates)
        self.input_valid = self.input_valid or bool(valid.any())
        return torch.from_numpy(normalised), days, torch.from_numpy(frame_ok), pixel_valid

    def read(
        self, row: int, col: int, size: int, region: tuple[int, int, int, int] | None = None
    ) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """One tile whose top-left reference pixel is (row, col), ``size`` reference pixels wide (parts outside the
        scene read as invalid).

        ``region`` (row, col, height, width in reference pixels, holding the tile, on the Sentinel lattice): the
        Sentinel series are read for the whole region at once and the tile is cut from it; the next tiles of the
        same region are cut from memory. A chunk's tiles as a region (predict_scene) read each product's bands once
        per chunk instead of once per tile (per-window overheads: a SAFE scene's 13 JPEG 2000 bands per date, its 20
        and 60 m bands resampled). A tile cut from a region is the tile read alone, value for value
        (tests/inference/test_read_regions.py), also where GDAL warps: its kernel width and coordinates do not
        depend on the window (see :func:`skysense.data.raster.warp._warp_scale`).

        Returns:
            (fields of one :class:`SkySenseInput` sample without the batch axis — hr (C, size, size), s2/s1
            (T, C, h, w) with their day_of_year (T,) and valid (T,) —, pixel validity (size, size) bool on the
            reference grid). After the call, :attr:`input_valid` says whether any input pixel of the tile was valid
            before the frames below ``min_valid_fraction`` were dropped (a tile can have valid input and still no
            valid pixel).
        """
        fields: dict[str, torch.Tensor] = {}
        pixel_valid: np.ndarray | None = None
        self.input_valid = False
        if "hr" in self.modalities:
            raster = self._hr.read(self.hr_bands, Window(col, row, size, size), boundless=True)
            valid = raster.valid.all(axis=0)  # a pixel counts when every band is valid
            values = np.where(valid[None], raster.values, np.nan)
            if self.hr_stretch is not None:
                values = self.hr_stretch(values)
            normalised = self.hr_sensor.normalize(values, f"{self.sources.hr} window ({row}, {col})", False)
            fields["hr"] = torch.from_numpy(np.where(valid[None], normalised, 0.0).astype(np.float32))
            pixel_valid = valid
            self.input_valid = bool(valid.any())
        for name in SENTINEL:
            if name not in self.modalities:
                continue
            with self._pool.active():
                frames, days, frame_ok, sentinel_valid = self._read_series(name, row, col, size, region)
            fields[name] = frames
            fields[f"{name}_day_of_year"] = days
            fields[f"{name}_valid"] = frame_ok
            if "hr" not in self.modalities:  # Sentinel reference grid: a pixel counts where any series sees it (S1
                # through an S2 cloud), as the fusion uses every kept frame
                seen = np.kron(sentinel_valid, np.ones((self.sources.sentinel_scale,) * 2, dtype=bool))
                pixel_valid = seen if pixel_valid is None else pixel_valid | seen
        if self.grid.crs is not None:
            tile = Grid(self.grid.crs, self.grid.transform @ Affine.translation(col, row), size, size)
            lat, lon = tile.center_lat_lon()
            fields["lat"], fields["lon"] = torch.tensor(lat), torch.tensor(lon)
        return fields, pixel_valid


def _check_overlap(series: SeriesSource, name: str, grid: Grid, reference: Path | str | None) -> None:
    """Refuse a Sentinel series none of whose files overlaps the scene (an S1 file of another place beside an S2 or
    HR scene): every tile would run without it, and the output would not say so.

    Raises:
        InputError: naming the files, the scene and the option.
    """
    from rasterio.warp import transform_bounds

    left, bottom, right, top = grid.bounds
    for item in series.files:
        path = str(item) if isinstance(item, Path) else item.rasters[0]
        info = raster_info(path)
        if info.crs is None:
            return  # placed by the reference's grid alone: nothing to compare
        bounds = info.bounds if info.crs == grid.crs else transform_bounds(info.crs, grid.crs, *info.bounds)
        if bounds[0] < right and bounds[2] > left and bounds[1] < top and bounds[3] > bottom:
            return
    shown = ", ".join(str(p) for p in series.paths[:3]) + (", …" if len(series.paths) > 3 else "")
    raise InputError(
        f"the --{name} files ({shown}) do not overlap the scene of {reference}; give files of the same place, or "
        f"leave --{name} out"
    )


def stack_inputs(samples: Sequence[dict[str, torch.Tensor]]) -> SkySenseInput:
    """Tiles read by :meth:`TileReader.read` → one batch (every tile of a scene has the same frames).

    A Sentinel series with no kept frame in any tile of the batch (an S1 file that covers part of the S2 scene) is
    left out of the batch, which then runs on the other inputs, as the fusion takes any of them; one warning says
    so."""
    keys = list(samples[0].keys())
    for name in SENTINEL:
        valid = f"{name}_valid"
        if valid in keys and not any(bool(s[valid].any()) for s in samples):
            others = [k for k in SENTINEL if k != name and f"{k}_valid" in keys] + (["hr"] if "hr" in keys else [])
            if others:
                keys = [k for k in keys if k not in (name, f"{name}_day_of_year", valid)]
                warnings.warn(f"{name}: no kept frame over some tiles of the scene (outside the {name} files, or "
                              f"below the valid fraction); those tiles use {' and '.join(others)} alone",
                              stacklevel=2)  # fmt: skip
    return SkySenseInput(**{key: torch.stack([s[key] for s in samples]) for key in keys})
