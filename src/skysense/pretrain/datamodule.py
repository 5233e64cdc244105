"""Pretraining data: unlabelled samples from several sources, two views each, one homogeneous batch per source.

Sources differ in modalities and grid sizes (EuroSAT HR images, Sen1Floods11 S1 tiles, Presto S1+S2 series), so
each gets its own loader and a training step receives ``{source: (view-1 batch, view-2 batch)}`` (Lightning's
``CombinedLoader``, ``max_size_cycle``: an epoch is the longest source, shorter ones cycle).

Exact resume: each source's loader is a :class:`~skysense.data.resumable.ResumableLoader` — its order depends only
on ``(seed, source, epoch, pass)``, every sample's augmentations only on its own seed, and the count of batches the
training step consumed is saved in checkpoints — so a run resumed mid-epoch sees the same batches, with the same
augmentations, as the run that was never stopped.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import Dataset, Subset

from skysense.data.datamodules import resolve_dataset_class, seed_worker
from skysense.data.datasets.base import SkySenseDataset
from skysense.data.resumable import ResumableLoader, derive_seed
from skysense.data.transforms import (
    Compose,
    FillInvalid,
    JitterDates,
    LocalCrop,
    Normalize,
    RandomBrightnessContrast,
    RandomFlipRotate,
    RandomGainDb,
    RandomGaussianBlur,
    RandomResizedCrop,
    RandomSaturation,
    RandomSolarize,
    SampleFrames,
)
from skysense.pretrain.views import TwoViews, collate_views


@dataclass(frozen=True)
class ViewOptions:
    """How the views of :func:`pretraining_views` differ (the :class:`PretrainDataModule` arguments of the same
    names)."""

    crop_scale: tuple[float, float] = (0.25, 1.0)
    saturation: float = 0.0
    grayscale_p: float = 0.0
    local_crops: int = 0
    local_crop_size: int = 32
    local_crop_scale: tuple[float, float] = (0.05, 0.25)
    brightness: float = 0.4
    contrast: float = 0.4
    solarize_p: float = 0.2
    blur_p: float = 0.5


def pretraining_views(
    dataset: SkySenseDataset,
    s2_frames: int,
    s1_frames: int,
    max_date_jitter: int,
    generator: torch.Generator,
    options: ViewOptions = ViewOptions(),
) -> TwoViews:
    """The paper's augmentations: shared frame sampling and flips; per view HR solarisation (on 0–255 values), then
    normalisation, explicit filling, a random resized crop (the same box for every modality of the view; its box is
    recorded so that the two views' locations can be matched), brightness/contrast (in normalised units), blur, an
    S1 gain and date jitter. ``crop_scale=(1, 1)`` gives both views the same geometry. ``saturation`` and
    ``grayscale_p`` add SimCLR's colour distortion to the HR image (:class:`RandomSaturation`; off at 0).
    ``local_crops`` HR-only local views of ``local_crop_size`` pixels from ``local_crop_scale`` of the image get
    the same photometric changes (DINO's multi-crop). ``brightness``, ``contrast`` (HR, with probability 0.8),
    ``solarize_p`` and ``blur_p`` set the HR photometric changes (0 switches each off)."""
    o = options
    photometric = [
        *([RandomSolarize(p=o.solarize_p, generator=generator)] if o.solarize_p > 0 else []),
        Normalize(**dataset.sensors),
        FillInvalid(),
    ]
    hr_colour = [
        *(
            [RandomBrightnessContrast("hr", brightness=o.brightness, contrast=o.contrast, p=0.8, generator=generator)]
            if o.brightness > 0 or o.contrast > 0
            else []
        ),
        *(
            [RandomSaturation(o.saturation, p=0.8, grayscale_p=o.grayscale_p, generator=generator)]
            if o.saturation > 0 or o.grayscale_p > 0
            else []
        ),
        *([RandomGaussianBlur(p=o.blur_p, generator=generator)] if o.blur_p > 0 else []),
    ]
    shared = Compose([SampleFrames(s2_frames, s1_frames, generator=generator), RandomFlipRotate(generator=generator)])
    per_view = Compose(
        [
            *photometric,
            *([RandomResizedCrop(scale=o.crop_scale, generator=generator)] if tuple(o.crop_scale) != (1, 1) else []),
            *hr_colour,
            RandomBrightnessContrast("s2", brightness=0.1, contrast=0.1, p=0.5, generator=generator),
            RandomGainDb("s1", max_db=0.2, p=0.5, generator=generator),
            JitterDates(max_date_jitter, generator=generator),
        ]
    )
    local = None
    if o.local_crops:
        local = Compose(
            [LocalCrop(o.local_crop_size, o.local_crop_scale, generator=generator), *photometric, *hr_colour]
        )
    return TwoViews(shared, per_view, local, o.local_crops)


class PretrainDataModule(pl.LightningDataModule):
    """Two-view batches from several unlabelled sources.

    Args:
        sources: source name → {"dataset": class name in skysense.data.datasets (or dotted path),
            "init_args": constructor arguments (``root``, ``split``, ...), optionally "max_samples": use only the
            first n samples (quick runs, tests), and "batch_size": this source's batch size (sources differ
            widely in cost per sample)}.
        batch_size: samples per source per step (unless the source sets its own).
        num_workers: loader workers per source.
        s2_frames, s1_frames: frames kept per series (the paper: 20 and 10).
        max_date_jitter: days of date perturbation per view.
        crop_scale: area range (fraction of the sample) of each view's random resized crop; (1, 1) = no crop.
        saturation, grayscale_p: the HR colour distortion (:class:`~skysense.data.transforms.RandomSaturation`).
        local_crops: small HR-only views per sample that has an HR image, seen by the student only (DINO's
            multi-crop; 0 = off); ``local_crop_size`` pixels square, from ``local_crop_scale`` of the image's area.
        brightness, contrast, solarize_p, blur_p: the HR photometric changes of every view (0 = off).
        seed: seeds shuffling and augmentation.
    """

    def __init__(
        self,
        sources: dict[str, dict[str, Any]],
        batch_size: int = 8,
        num_workers: int = 0,
        s2_frames: int = 20,
        s1_frames: int = 10,
        max_date_jitter: int = 7,
        crop_scale: tuple[float, float] = (0.25, 1.0),
        saturation: float = 0.0,
        grayscale_p: float = 0.0,
        local_crops: int = 0,
        local_crop_size: int = 32,
        local_crop_scale: tuple[float, float] = (0.05, 0.25),
        brightness: float = 0.4,
        contrast: float = 0.4,
        solarize_p: float = 0.2,
        blur_p: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("give at least one pretraining source")
        self.sources = sources
        self.batch_size, self.num_workers = batch_size, num_workers
        self.s2_frames, self.s1_frames, self.max_date_jitter, self.seed = s2_frames, s1_frames, max_date_jitter, seed
        self.views = ViewOptions(
            crop_scale=tuple(crop_scale),
            saturation=saturation,
            grayscale_p=grayscale_p,
            local_crops=local_crops,
            local_crop_size=local_crop_size,
            local_crop_scale=tuple(local_crop_scale),
            brightness=brightness,
            contrast=contrast,
            solarize_p=solarize_p,
            blur_p=blur_p,
        )
        self.datasets: dict[str, Dataset] = {}
        self.generators: dict[str, torch.Generator] = {}
        self.loaders: dict[str, ResumableLoader] = {}

    def setup(self, stage: str | None = None) -> None:
        for name, spec in self.sources.items():
            if name in self.datasets:
                continue
            unknown = set(spec) - {"dataset", "init_args", "max_samples", "batch_size"}
            if unknown or "dataset" not in spec:
                raise ValueError(
                    f"source {name!r}: expected keys 'dataset', 'init_args' and optionally 'max_samples' and 'batch_size', got {sorted(spec)}"
                )
            dataset = resolve_dataset_class(spec["dataset"])(**spec.get("init_args", {}))
            generator = torch.Generator()  # re-seeded for every sample by the loader
            dataset.transforms = pretraining_views(
                dataset, self.s2_frames, self.s1_frames, self.max_date_jitter, generator, self.views
            )
            if spec.get("max_samples") is not None:
                dataset = Subset(dataset, range(min(int(spec["max_samples"]), len(dataset))))
            self.datasets[name], self.generators[name] = dataset, generator

    def train_dataloader(self) -> CombinedLoader:
        sizes = {name: int(self.sources[name].get("batch_size") or self.batch_size) for name in self.datasets}
        self.loaders = {
            name: ResumableLoader(
                dataset,
                [self.generators[name]],
                batch_size=sizes[name],
                seed=derive_seed(self.seed, zlib.crc32(name.encode())),
                drop_last=len(dataset) >= sizes[name],
                num_workers=self.num_workers,
                collate_fn=collate_views,
                worker_init_fn=seed_worker,
                persistent_workers=self.num_workers > 0,
            )
            for name, dataset in self.datasets.items()
        }
        epoch_batches = max(len(loader) for loader in self.loaders.values())
        for loader in self.loaders.values():
            loader.epoch_batches = epoch_batches
        return CombinedLoader(self.loaders, mode="max_size_cycle")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning calls this once per batch that enters a training step (not for batches fetched ahead): count
        it, so that a checkpoint records exactly what was consumed."""
        if self.trainer is not None and self.trainer.training:
            for loader in self.loaders.values():
                loader.mark_consumed()
        return batch
