"""The data structures that every floor of skysense shares — data, models, inference and tasks import them from here,
so that none of them imports another for a type:

- :class:`Grid` — a pixel grid (CRS, affine transform, size);
- :class:`TimeSeries` — the frames of one Sentinel modality at one place, with dates and pixel validity;
- :class:`Sample` — everything known about one place (HR image, S2 and S1 series, location, target);
- :class:`Batch` — collated samples: the model's :class:`~skysense.batch.SkySenseInput` plus targets and masks;
- :func:`day_of_year_index` and :data:`NO_DATE` — the calendar-day index the date encoding is looked up with.

Only torch and numpy are imported here (rasterio is imported inside :meth:`Grid.center_lat_lon`), so a model can be
built and run where no GDAL is installed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from skysense.batch import SkySenseInput

if TYPE_CHECKING:  # rasterio only for the annotations: models import this module where GDAL may be absent
    from rasterio.crs import CRS
    from rasterio.transform import Affine

NUM_DAYS = 365


NO_DATE = -1  # index meaning "date unknown": no date encoding is added to that token


_CUMULATIVE_DAYS = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])  # non-leap month starts


def day_of_year_index(dates: Iterable[dt.date | dt.datetime | np.datetime64 | str]) -> torch.Tensor:
    """Calendar-day index in [0, 365) of each date, with 29 February mapped onto 28 February.

    Args:
        dates: ``datetime.date``/``datetime``, ``numpy.datetime64`` or ISO strings (``"2019-09-17"``).

    Returns:
        (N,) int64 tensor.

    Raises:
        ValueError: naming the first value that is not a date.
    """
    out = []
    for value in dates:
        try:
            day = np.datetime64(value, "D").astype(object)
        except (ValueError, TypeError) as err:
            raise ValueError(f"cannot parse {value!r} as a date (expected ISO 'YYYY-MM-DD' or a date object)") from err
        if not isinstance(day, dt.date):
            raise ValueError(f"cannot parse {value!r} as a date (NaT or out of range)")
        day_in_month = min(day.day, 28) if day.month == 2 else day.day
        out.append(int(_CUMULATIVE_DAYS[day.month - 1]) + day_in_month - 1)
    return torch.tensor(out, dtype=torch.long)


Bounds = tuple[float, float, float, float]  # (left, bottom, right, top) in a raster's CRS


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


@dataclass
class TimeSeries:
    """Frames of one Sentinel modality at one location, sorted by date.

    Attributes:
        values: (T, C, H, W) float32.
        dates: T acquisition dates (``datetime.date``), ascending.
        valid: (T, H, W) bool, False where a pixel is nodata, NaN or masked (e.g. cloud).
    """

    values: torch.Tensor
    dates: list[dt.date]
    valid: torch.Tensor

    def __post_init__(self) -> None:
        if self.values.ndim != 4:
            raise ValueError(f"time-series values must be (T, C, H, W), got shape {tuple(self.values.shape)}")
        steps = self.values.shape[0]
        if len(self.dates) != steps:
            raise ValueError(f"{steps} frames but {len(self.dates)} dates")
        expected = (steps, *self.values.shape[-2:])
        if tuple(self.valid.shape) != expected:
            raise ValueError(f"valid mask must be {expected}, got {tuple(self.valid.shape)}")
        if any(later < earlier for earlier, later in zip(self.dates, self.dates[1:], strict=False)):
            raise ValueError(f"frames must be sorted by date, got {[d.isoformat() for d in self.dates]}")

    def __len__(self) -> int:
        return self.values.shape[0]

    def select(self, indices: Sequence[int] | torch.Tensor) -> TimeSeries:
        """The frames at ``indices`` (kept in date order)."""
        order = sorted(int(i) for i in indices)
        return TimeSeries(self.values[order], [self.dates[i] for i in order], self.valid[order])


@dataclass
class Sample:
    """Everything known about one location.

    Attributes:
        hr: (C, H, W) float32 very-high-resolution image, or None.
        hr_valid: (H, W) bool pixel validity of ``hr`` (default: all valid).
        hr_date: acquisition date of ``hr`` if known.
        hr_t2: (C, H, W) second HR image of the same place at a later date (bi-temporal change detection), or None.
        s2: Sentinel-2 :class:`TimeSeries` (10 model bands), or None.
        s1: Sentinel-1 :class:`TimeSeries` (VV, VH), or None.
        lat: latitude in degrees (WGS 84) of the location's centre, if known.
        lon: longitude in degrees, if known.
        target: the label in the task's form (class index, (H, W) mask, boxes dict, regression value), or None.
        meta: provenance (source files, ids) for error messages and outputs.
    """

    hr: torch.Tensor | None = None
    hr_valid: torch.Tensor | None = None
    hr_date: dt.date | None = None
    hr_t2: torch.Tensor | None = None
    s2: TimeSeries | None = None
    s1: TimeSeries | None = None
    lat: float | None = None
    lon: float | None = None
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hr is not None:
            if self.hr.ndim != 3:
                raise ValueError(f"hr must be (C, H, W), got shape {tuple(self.hr.shape)} ({self.source})")
            if self.hr_valid is None:
                self.hr_valid = torch.isfinite(self.hr).all(dim=0)
            elif tuple(self.hr_valid.shape) != tuple(self.hr.shape[-2:]):
                raise ValueError(f"hr_valid must be {tuple(self.hr.shape[-2:])}, got {tuple(self.hr_valid.shape)}")
        if self.hr_t2 is not None and (self.hr is None or self.hr_t2.shape != self.hr.shape):
            raise ValueError(f"hr_t2 needs an hr image of the same shape ({self.source})")

    @property
    def source(self) -> str:
        """Where the sample came from, for messages."""
        return str(self.meta.get("source", self.meta.get("id", "sample")))


@dataclass
class Batch:
    """A collated batch: model inputs plus what training and evaluation need beside them.

    Attributes:
        inputs: the :class:`~skysense.batch.SkySenseInput` for the model.
        hr_t2: (B, C, H, W) second-date HR images (change detection), or None.
        target: stacked targets (tensor) when every sample has a tensor/number target of one shape; a list otherwise
            (e.g. boxes); None when no sample has one.
        hr_pixel_valid: (B, H, W) bool, or None.
        s2_pixel_valid: (B, T2, h, w) bool (padded frames all False), or None.
        s1_pixel_valid: (B, T1, h, w) bool, or None.
        meta: per-sample provenance.
    """

    inputs: SkySenseInput
    hr_t2: torch.Tensor | None
    target: torch.Tensor | list[Any] | None
    hr_pixel_valid: torch.Tensor | None
    s2_pixel_valid: torch.Tensor | None
    s1_pixel_valid: torch.Tensor | None
    meta: list[dict[str, Any]]

    def to(self, device: torch.device | str) -> Batch:
        def move(x: Any) -> Any:
            return x.to(device) if isinstance(x, torch.Tensor) else x

        target = move(self.target) if not isinstance(self.target, list) else self.target
        return Batch(
            self.inputs.to(device),
            move(self.hr_t2),
            target,
            move(self.hr_pixel_valid),
            move(self.s2_pixel_valid),
            move(self.s1_pixel_valid),
            self.meta,
        )

    def __len__(self) -> int:
        return len(self.meta)
