"""One location's multi-modal sample, and the collate that turns a list of them into a model batch.

A :class:`Sample` holds tensors in their sensor's units (or normalised, after :class:`~skysense.data.transforms.Normalize`)
with explicit pixel-validity masks; dates are real dates. :func:`collate` pads time with masks, turns dates into
day-of-year indices, and refuses NaN values in frames it is asked to feed the model (fill or mask them explicitly
with :class:`~skysense.data.transforms.FillInvalid` first: nothing is silently filled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from skysense.batch import SkySenseInput
from skysense.containers import NO_DATE, Batch, Sample, day_of_year_index
from skysense.data.frames import frames_that_count


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
        raise ValueError(
            f"{name} frames differ in (C, H, W) within the batch: {sorted(channels)}; crop the samples to one size "
            "(a data module's crop_size), or give batch_size 1 (eval_batch_size for validation)"
        )
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
            sizes = ", ".join(f"{s.source} {tuple(s.hr.shape)}" for s in samples[:4] if s.hr is not None)
            raise ValueError(
                f"hr images differ in shape within the batch ({sizes}{', …' * (size > 4)}); crop them to one size "
                "(a data module's crop_size, image_size), or give batch_size 1 (eval_batch_size for validation)"
            )
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
