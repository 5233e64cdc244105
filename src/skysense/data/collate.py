"""One location's multi-modal sample, and the collate that turns a list of them into a model batch.

A :class:`Sample` holds tensors in their sensor's units (or normalised, after :class:`~skysense.data.transforms.Normalize`)
with explicit pixel-validity masks; dates are real dates. :func:`collate` pads time with masks, turns dates into
day-of-year indices, and refuses NaN values in frames it is asked to feed the model (fill or mask them explicitly
with :class:`~skysense.data.transforms.FillInvalid` first: nothing is silently filled).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from skysense.batch import SkySenseInput
from skysense.data.series import frames_that_count
from skysense.layers.date_encoding import NO_DATE, day_of_year_index


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


def _refuse_nan(values: torch.Tensor, usable: torch.Tensor, what: str) -> None:
    """Raise if a usable frame holds a non-finite value."""
    if usable.any() and not torch.isfinite(values[usable]).all():
        raise ValueError(
            f"{what} holds NaN/inf values in frames the model would read; mask them (FillInvalid) or drop the "
            "frames first — values are never filled silently"
        )


def _collate_series(samples: Sequence[Sample], name: str, min_valid_fraction: float):
    present = [getattr(s, name) is not None for s in samples]
    if not any(present):
        return None, None, None, None
    series = [getattr(s, name) for s in samples if getattr(s, name) is not None]
    channels = {tuple(ts.values.shape[1:]) for ts in series}
    if len(channels) > 1:
        raise ValueError(f"{name} frames differ in (C, H, W) within the batch: {sorted(channels)}")
    steps = max(len(ts) for ts in series)
    shape = next(iter(channels))
    size = len(samples)
    values = torch.zeros(size, steps, *shape)
    pixel_valid = torch.zeros(size, steps, *shape[-2:], dtype=torch.bool)
    days = torch.full((size, steps), NO_DATE, dtype=torch.long)
    frame_valid = torch.zeros(size, steps, dtype=torch.bool)
    for i, sample in enumerate(samples):
        ts = getattr(sample, name)
        if ts is None:
            continue
        count = len(ts)
        values[i, :count] = ts.values
        pixel_valid[i, :count] = ts.valid
        days[i, :count] = day_of_year_index(ts.dates)
        # a frame with (almost) no valid pixel carries no information: it is masked, not fed as filler
        frame_valid[i, :count] = frames_that_count(ts.valid, min_valid_fraction)
        _refuse_nan(ts.values, frame_valid[i, :count], f"{name} of {sample.source}")
    return values, days, frame_valid, pixel_valid


def collate(samples: Sequence[Sample], min_valid_fraction: float = 0.0) -> Batch:
    """Stack samples into a :class:`Batch`, padding time with masks.

    Args:
        samples: samples whose present modalities share (C, H, W) per modality; time lengths may differ and any
            modality may be missing in some samples (then it is masked for them).
        min_valid_fraction: frames with a smaller fraction of valid pixels, or with none, are masked out (0: only
            frames with no valid pixel at all); the rule of :func:`skysense.data.series.frames_that_count`, shared
            with scene inference.

    Raises:
        ValueError: NaN in a frame the model would read, or mismatched shapes, naming the sample.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    size = len(samples)
    inputs = SkySenseInput()
    hr_pixel_valid = None
    if any(s.hr is not None for s in samples):
        shapes = {tuple(s.hr.shape) for s in samples if s.hr is not None}
        if len(shapes) > 1:
            raise ValueError(f"hr images differ in shape within the batch: {sorted(shapes)}")
        shape = next(iter(shapes))
        inputs.hr = torch.zeros(size, *shape)
        hr_pixel_valid = torch.zeros(size, *shape[-2:], dtype=torch.bool)
        inputs.hr_valid = torch.zeros(size, dtype=torch.bool)
        inputs.hr_day_of_year = torch.full((size,), NO_DATE, dtype=torch.long)
        for i, sample in enumerate(samples):
            if sample.hr is None:
                continue
            inputs.hr[i] = sample.hr
            hr_pixel_valid[i] = sample.hr_valid
            inputs.hr_valid[i] = bool(sample.hr_valid.any())
            if inputs.hr_valid[i]:
                _refuse_nan(sample.hr[None], torch.ones(1, dtype=torch.bool), f"hr of {sample.source}")
            if sample.hr_date is not None:
                inputs.hr_day_of_year[i] = day_of_year_index([sample.hr_date])[0]
    hr_t2 = None
    if any(s.hr_t2 is not None for s in samples):
        if not all(s.hr_t2 is not None for s in samples):
            raise ValueError("hr_t2 (second-date image) is given for some samples of the batch but not all")
        hr_t2 = torch.stack([s.hr_t2 for s in samples])
        _refuse_nan(hr_t2, torch.ones(size, dtype=torch.bool), "hr_t2")
    s2 = _collate_series(samples, "s2", min_valid_fraction)
    s1 = _collate_series(samples, "s1", min_valid_fraction)
    inputs.s2, inputs.s2_day_of_year, inputs.s2_valid, s2_pixel_valid = s2
    inputs.s1, inputs.s1_day_of_year, inputs.s1_valid, s1_pixel_valid = s1

    coordinates = [(s.lat, s.lon) for s in samples]
    known = [lat is not None and lon is not None for lat, lon in coordinates]
    if all(known):
        inputs.lat = torch.tensor([lat for lat, _ in coordinates], dtype=torch.float32)
        inputs.lon = torch.tensor([lon for _, lon in coordinates], dtype=torch.float32)
    elif any(known):
        missing = [samples[i].source for i, k in enumerate(known) if not k]
        raise ValueError(f"latitude/longitude missing for some samples of the batch: {missing}")
    return Batch(
        inputs,
        hr_t2,
        _collate_targets([s.target for s in samples]),
        hr_pixel_valid,
        s2_pixel_valid,
        s1_pixel_valid,
        [s.meta for s in samples],
    )


def _collate_targets(targets: list[Any]) -> torch.Tensor | list[Any] | None:
    if all(t is None for t in targets):
        return None
    if any(t is None for t in targets):
        return targets
    if all(isinstance(t, (int, float, np.integer, np.floating)) for t in targets):
        return torch.tensor(targets)
    if all(isinstance(t, torch.Tensor) for t in targets) and len({tuple(t.shape) for t in targets}) == 1:
        return torch.stack(targets)
    return targets
