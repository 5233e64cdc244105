"""Transforms on :class:`~skysense.containers.Sample`: normalisation, explicit filling of invalid pixels, frame
sampling, date jitter, geometry applied identically to every modality (and to mask/box targets), and photometric
changes per modality.

Every transform is a callable ``Sample -> Sample`` taking its randomness from a ``torch.Generator`` (or the global
torch RNG), so that seeded runs are reproducible. Geometry keeps the modalities co-registered: a crop of ``size``
Sentinel pixels takes ``size · ratio`` HR pixels, where ratio = HR size / Sentinel size (32 at the paper's scales).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from skysense.containers import Sample, TimeSeries
from skysense.data.sensors import Sensor

Transform = Callable[[Sample], Sample]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (), generator=generator))


# ------------------------------------------------------------------------------------------------------------------
# Units and validity
# ------------------------------------------------------------------------------------------------------------------
class Normalize:
    """(values − mean) / std per band, with each sensor's unit check (values in wrong units are refused).

    Args:
        hr, s2, s1: the :class:`~skysense.data.sensors.Sensor` of each modality (None: leave it as it is).
    """

    def __init__(self, hr: Sensor | None = None, s2: Sensor | None = None, s1: Sensor | None = None) -> None:
        self.sensors = {"hr": hr, "s2": s2, "s1": s1}

    def __call__(self, sample: Sample) -> Sample:
        changes: dict[str, Any] = {}
        if sample.hr is not None and self.sensors["hr"] is not None:
            values = sample.hr.numpy()
            changes["hr"] = torch.from_numpy(self.sensors["hr"].normalize(values, f"hr of {sample.source}"))
            if sample.hr_t2 is not None:
                values = sample.hr_t2.numpy()
                changes["hr_t2"] = torch.from_numpy(self.sensors["hr"].normalize(values, f"hr_t2 of {sample.source}"))
        for name in ("s2", "s1"):
            series, sensor = getattr(sample, name), self.sensors[name]
            if series is None or sensor is None:
                continue
            frames = series.values.numpy().transpose(1, 0, 2, 3)  # (C, T, H, W): bands first for the sensor
            normalized = sensor.normalize(frames, f"{name} of {sample.source}").transpose(1, 0, 2, 3)
            changes[name] = dataclasses.replace(series, values=torch.from_numpy(normalized.copy()))
        return dataclasses.replace(sample, **changes)


class FillInvalid:
    """Set invalid pixels (nodata, NaN, masked) to ``value`` — after :class:`Normalize`, 0 is the band mean.

    This is the one, explicit place where values are filled; the validity masks are kept, so losses and metrics can
    still ignore those pixels.
    """

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def __call__(self, sample: Sample) -> Sample:
        changes: dict[str, Any] = {}
        if sample.hr is not None:
            for name in ("hr", "hr_t2"):
                image = getattr(sample, name)
                if image is not None:
                    keep = sample.hr_valid[None] & torch.isfinite(image)
                    changes[name] = torch.where(keep, image, torch.full_like(image, self.value))
        for name in ("s2", "s1"):
            series = getattr(sample, name)
            if series is None:
                continue
            keep = series.valid[:, None] & torch.isfinite(series.values)
            values = torch.where(keep, series.values, torch.full_like(series.values, self.value))
            changes[name] = dataclasses.replace(series, values=values)
        return dataclasses.replace(sample, **changes)


# ------------------------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------------------------
class SampleFrames:
    """Keep a fixed number of frames per series: a random subset (``mode="random"``, training), evenly spaced ones
    (``"even"``, evaluation), or all of them (``"all"``). Series shorter than the length are kept whole; the
    collate pads them with masks. Order is always by date. The paper samples 20 S2 and 10 S1 frames.
    """

    def __init__(
        self, s2: int | None = 20, s1: int | None = 10, mode: str = "random", generator: torch.Generator | None = None
    ) -> None:
        if mode not in ("random", "even", "all"):
            raise ValueError(f"mode must be 'random', 'even' or 'all', got {mode!r}")
        self.lengths = {"s2": s2, "s1": s1}
        self.mode = mode
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        changes = {}
        for name, length in self.lengths.items():
            series = getattr(sample, name)
            if series is None or length is None or self.mode == "all" or len(series) <= length:
                continue
            if self.mode == "random":
                keep = torch.randperm(len(series), generator=self.generator)[:length]
            else:
                keep = torch.linspace(0, len(series) - 1, length).round().long()
            changes[name] = series.select(keep)
        return dataclasses.replace(sample, **changes)


class JitterDates:
    """Shift each frame's date by a random whole number of days in [-max_days, max_days] (the paper's date
    perturbation), then re-sort frames by date."""

    def __init__(self, max_days: int = 7, generator: torch.Generator | None = None) -> None:
        self.max_days = max_days
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        changes = {}
        for name in ("s2", "s1"):
            series = getattr(sample, name)
            if series is None or self.max_days == 0:
                continue
            offsets = torch.randint(-self.max_days, self.max_days + 1, (len(series),), generator=self.generator)
            dates = [d + dt.timedelta(days=int(o)) for d, o in zip(series.dates, offsets, strict=True)]
            order = sorted(range(len(dates)), key=dates.__getitem__)
            changes[name] = TimeSeries(series.values[order], [dates[i] for i in order], series.valid[order])
        return dataclasses.replace(sample, **changes)


# ------------------------------------------------------------------------------------------------------------------
# Geometry: identical for every modality and for spatial targets
# ------------------------------------------------------------------------------------------------------------------
def _map_spatial(
    sample: Sample,
    fn: Callable[[torch.Tensor, int], torch.Tensor],
    boxes_fn: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None,
) -> Sample:
    """Apply ``fn(tensor, scale)`` to the last two dims of every spatial tensor; ``scale`` = that tensor's size
    relative to the coarsest modality. Box targets ({"boxes": (N, 4) xyxy in HR pixels}) go through ``boxes_fn``."""
    sizes = [t.shape[-1] for t in (sample.hr,) if t is not None]
    sizes += [getattr(sample, n).values.shape[-1] for n in ("s2", "s1") if getattr(sample, n) is not None]
    base = min(sizes)

    def scale_of(t: torch.Tensor) -> int:
        if t.shape[-1] % base:
            raise ValueError(f"{sample.source}: size {t.shape[-1]} is not a multiple of the coarsest grid {base}")
        return t.shape[-1] // base

    changes: dict[str, Any] = {}
    if sample.hr is not None:
        scale = scale_of(sample.hr)
        changes["hr"] = fn(sample.hr, scale)
        changes["hr_valid"] = fn(sample.hr_valid, scale)
        if sample.hr_t2 is not None:
            changes["hr_t2"] = fn(sample.hr_t2, scale)
    for name in ("s2", "s1"):
        series = getattr(sample, name)
        if series is not None:
            scale = scale_of(series.values)
            changes[name] = TimeSeries(fn(series.values, scale), series.dates, fn(series.valid, scale))
    target = sample.target
    if isinstance(target, torch.Tensor) and target.ndim >= 2:
        changes["target"] = fn(target, scale_of(target))
    elif isinstance(target, dict) and "boxes" in target and sample.hr is not None:
        if boxes_fn is None:
            raise ValueError(f"{sample.source}: this transform cannot move box targets")
        changes["target"] = {**target, "boxes": boxes_fn(target["boxes"], sample.hr.shape[-2], sample.hr.shape[-1])}
    return dataclasses.replace(sample, **changes)


class RandomFlipRotate:
    """Random horizontal flip, vertical flip and 90° rotation, the same for every modality and target."""

    def __init__(self, p_flip: float = 0.5, rotate: bool = True, generator: torch.Generator | None = None) -> None:
        self.p_flip = p_flip
        self.rotate = rotate
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        if _rand(self.generator) < self.p_flip:
            sample = _map_spatial(
                sample,
                lambda t, s: t.flip(-1),
                lambda b, h, w: torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1),
            )
        if _rand(self.generator) < self.p_flip:
            sample = _map_spatial(
                sample,
                lambda t, s: t.flip(-2),
                lambda b, h, w: torch.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], dim=1),
            )
        if self.rotate:
            turns = _randint(4, self.generator)
            for _ in range(turns):  # each turn: 90° counter-clockwise, (x, y) → (y, w - x)
                sample = _map_spatial(
                    sample,
                    lambda t, s: torch.rot90(t, 1, dims=(-2, -1)),
                    lambda b, h, w: torch.stack([b[:, 1], w - b[:, 2], b[:, 3], w - b[:, 0]], dim=1),
                )
        return sample


class RandomCrop:
    """Crop ``size`` pixels of the coarsest modality (and the matching, scaled window of every other one)."""

    def __init__(self, size: int, generator: torch.Generator | None = None) -> None:
        self.size = size
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        reference = [getattr(sample, n).values for n in ("s2", "s1") if getattr(sample, n) is not None]
        if sample.hr is not None:
            reference.append(sample.hr)
        height, width = min(t.shape[-2] for t in reference), min(t.shape[-1] for t in reference)
        if height < self.size or width < self.size:
            raise ValueError(f"{sample.source}: cannot crop {self.size} pixels from a {height}×{width} grid")
        top = _randint(height - self.size + 1, self.generator)
        left = _randint(width - self.size + 1, self.generator)

        def crop(t: torch.Tensor, s: int) -> torch.Tensor:
            return t[..., top * s : (top + self.size) * s, left * s : (left + self.size) * s]

        def crop_boxes(b: torch.Tensor, h: int, w: int) -> torch.Tensor:
            s = h // height
            shifted = b - torch.tensor([left * s, top * s, left * s, top * s], dtype=b.dtype)
            return shifted.clamp(min=0, max=self.size * s)

        return _map_spatial(sample, crop, crop_boxes)


class RandomResizedCrop:
    """A random box of the sample, resampled back to each modality's size: the same box (in fractions of the
    extent) for every modality, so HR and Sentinel grids stay co-registered — the paper's "crops consistent across
    modalities". Values are resampled bilinearly (apply after :class:`FillInvalid`), validity masks and mask targets
    by nearest neighbour; box targets are refused.

    The box, in fractions of the sample's original extent, is recorded in ``meta["crop_box"]`` as (top, left,
    height, width) (composed with an earlier crop's box): two views cropped differently can then be matched location
    by location (pretraining's pixel and object levels do).

    Args:
        scale: range of the box area as a fraction of the sample's area.
        ratio: range of the box aspect ratio (width / height).
        generator: random source.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.scale, self.ratio, self.generator = scale, ratio, generator

    def _box(self) -> tuple[float, float, float, float]:
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * _rand(self.generator)
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = math.exp(log_low + (log_high - log_low) * _rand(self.generator))
        height = min(1.0, math.sqrt(area / aspect))
        width = min(1.0, math.sqrt(area * aspect))
        top = (1 - height) * _rand(self.generator)
        left = (1 - width) * _rand(self.generator)
        return top, left, height, width

    def __call__(self, sample: Sample) -> Sample:
        if isinstance(sample.target, dict):
            raise ValueError(f"{sample.source}: RandomResizedCrop cannot move box targets")
        top, left, height, width = self._box()
        grids: dict[tuple[int, int], torch.Tensor] = {}

        def grid_for(rows: int, cols: int) -> torch.Tensor:
            """(1, rows, cols, 2) sampling grid of the box (normalised coordinates, align_corners=False): the
            affine map of ``F.affine_grid``, built from two 1-D ranges and shared by every tensor of that size."""
            if (rows, cols) not in grids:
                xs = (torch.arange(cols) * 2 + 1) / cols - 1
                ys = (torch.arange(rows) * 2 + 1) / rows - 1
                xs = width * xs + 2 * left + width - 1
                ys = height * ys + 2 * top + height - 1
                grids[rows, cols] = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
            return grids[rows, cols]

        def resample(t: torch.Tensor, scale: int) -> torch.Tensor:
            lead = t.shape[:-2]
            if t.dtype == torch.bool and bool(t.all()):
                return t  # the box lies inside the sample: an all-valid mask stays all valid
            flat = t.reshape(-1, 1, *t.shape[-2:])
            grid = grid_for(*t.shape[-2:]).expand(flat.shape[0], -1, -1, -1)
            if t.dtype == torch.bool or not t.is_floating_point():
                out = F.grid_sample(flat.float(), grid, mode="nearest", align_corners=False).to(t.dtype)
            else:
                out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
            return out.reshape(*lead, *t.shape[-2:])

        cropped = _map_spatial(sample, resample)
        previous = sample.meta.get("crop_box", (0.0, 0.0, 1.0, 1.0))
        box = (
            previous[0] + top * previous[2],
            previous[1] + left * previous[3],
            height * previous[2],
            width * previous[3],
        )
        return dataclasses.replace(cropped, meta={**sample.meta, "crop_box": box})


class LocalCrop:
    """A small view of the HR image for multi-crop self-distillation (DINO's local crops): a random box of
    ``scale`` × the image's area (aspect ratio in ``ratio``), resized to ``size`` × ``size`` (bilinear with
    antialiasing; validity by nearest neighbour). Only the HR image is kept: the Sentinel series and coordinates
    are dropped, because a local view is compared with the teacher's image-level HR features and nothing else.

    Args:
        size: side in HR pixels of the output (a multiple of the HR encoder's ``input_multiple``).
        scale: range of the box area as a fraction of the image.
        ratio: range of the box aspect ratio (width / height).
        generator: random source.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.05, 0.25),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"local crop size must be >= 1 pixel, got {size}")
        self.size = size
        self.box = RandomResizedCrop(scale, ratio, generator)  # the same box sampling as the global views

    def __call__(self, sample: Sample) -> Sample:
        if sample.hr is None:
            raise ValueError(f"{sample.source}: a local crop needs an HR image")
        top, left, height, width = self.box._box()
        rows, cols = sample.hr.shape[-2:]
        box = (round(top * rows), round(left * cols), max(1, round(height * rows)), max(1, round(width * cols)))
        hr = TF.resized_crop(sample.hr, *box, [self.size, self.size], antialias=True)
        hr = hr.clamp(sample.hr.min(), sample.hr.max())  # the filter's rounding leaves the input's range by ~1e-5
        valid = None
        if sample.hr_valid is not None:
            valid = TF.resized_crop(sample.hr_valid[None], *box, [self.size, self.size], TF.InterpolationMode.NEAREST)[
                0
            ]
        return Sample(hr=hr, hr_valid=valid, hr_date=sample.hr_date, meta={**sample.meta, "local_crop": box})


# ------------------------------------------------------------------------------------------------------------------
# Photometric: per modality
# ------------------------------------------------------------------------------------------------------------------
class RandomBrightnessContrast:
    """Multiply by a brightness factor and stretch around the per-band mean (contrast), for one modality.

    Works in any units where 0 means "no signal" (DN, reflectance); for SAR in dB use :class:`RandomGainDb`.
    """

    def __init__(
        self,
        modality: str = "hr",
        brightness: float = 0.2,
        contrast: float = 0.2,
        p: float = 0.8,
        generator: torch.Generator | None = None,
    ) -> None:
        self.modality, self.brightness, self.contrast, self.p = modality, brightness, contrast, p
        self.generator = generator

    def _factor(self, amount: float) -> float:
        return 1.0 + (2 * _rand(self.generator) - 1) * amount

    def __call__(self, sample: Sample) -> Sample:
        if _rand(self.generator) >= self.p:
            return sample
        b, c = self._factor(self.brightness), self._factor(self.contrast)
        if self.modality == "hr":
            if sample.hr is None:
                return sample
            x = sample.hr * b
            mean = x.nanmean(dim=(-2, -1), keepdim=True)
            return dataclasses.replace(sample, hr=(x - mean) * c + mean)
        series = getattr(sample, self.modality)
        if series is None:
            return sample
        x = series.values * b
        mean = x.nanmean(dim=(-2, -1), keepdim=True)
        return dataclasses.replace(sample, **{self.modality: dataclasses.replace(series, values=(x - mean) * c + mean)})


class RandomGainDb:
    """Add one random gain in [-max_db, max_db] dB to a SAR series (a calibration offset)."""

    def __init__(
        self, modality: str = "s1", max_db: float = 1.0, p: float = 0.5, generator: torch.Generator | None = None
    ) -> None:
        self.modality, self.max_db, self.p, self.generator = modality, max_db, p, generator

    def __call__(self, sample: Sample) -> Sample:
        series = getattr(sample, self.modality)
        if series is None or _rand(self.generator) >= self.p:
            return sample
        gain = (2 * _rand(self.generator) - 1) * self.max_db
        return dataclasses.replace(sample, **{self.modality: dataclasses.replace(series, values=series.values + gain)})


class RandomGaussianBlur:
    """Gaussian blur of the HR image (σ uniform in ``sigma``) with probability ``p``."""

    def __init__(
        self, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5, generator: torch.Generator | None = None
    ) -> None:
        self.sigma, self.p, self.generator = sigma, p, generator

    def __call__(self, sample: Sample) -> Sample:
        if sample.hr is None or _rand(self.generator) >= self.p:
            return sample
        sigma = self.sigma[0] + _rand(self.generator) * (self.sigma[1] - self.sigma[0])
        kernel = 2 * int(3 * sigma) + 1
        return dataclasses.replace(sample, hr=TF.gaussian_blur(sample.hr, [kernel, kernel], [sigma, sigma]))


class RandomSolarize:
    """Invert HR values above ``threshold`` (in the HR units, 0–255 by default) with probability ``p``."""

    def __init__(
        self, threshold: float = 128.0, maximum: float = 255.0, p: float = 0.2, generator: torch.Generator | None = None
    ) -> None:
        self.threshold, self.maximum, self.p, self.generator = threshold, maximum, p, generator

    def __call__(self, sample: Sample) -> Sample:
        if sample.hr is None or _rand(self.generator) >= self.p:
            return sample
        hr = torch.where(sample.hr >= self.threshold, self.maximum - sample.hr, sample.hr)
        return dataclasses.replace(sample, hr=hr)


class RandomSaturation:
    """Scale the HR image's departure from its per-pixel band mean by a factor in [1 - ``saturation``, 1 +
    ``saturation``] (with probability ``p``), or set it to 0 (grayscale: every band the mean) with probability
    ``grayscale_p``. (C, H, W) in any units; in normalised units the band mean stands in for luminance.

    SimCLR's colour distortion for multi-band images: hue has no meaning beyond RGB, saturation and grayscale do. It
    keeps a self-distilled encoder from matching two views by their colours alone."""

    def __init__(
        self,
        saturation: float = 0.4,
        p: float = 0.8,
        grayscale_p: float = 0.2,
        generator: torch.Generator | None = None,
    ) -> None:
        self.saturation, self.p, self.grayscale_p, self.generator = saturation, p, grayscale_p, generator

    def __call__(self, sample: Sample) -> Sample:
        if sample.hr is None:
            return sample
        factor = 1.0
        if _rand(self.generator) < self.p:
            factor = 1.0 + (2 * _rand(self.generator) - 1) * self.saturation
        if _rand(self.generator) < self.grayscale_p:
            factor = 0.0
        if factor == 1.0:
            return sample
        mean = sample.hr.mean(dim=-3, keepdim=True)
        return dataclasses.replace(sample, hr=mean + factor * (sample.hr - mean))
