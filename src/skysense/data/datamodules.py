"""Lightning data modules over the :mod:`skysense.data.datasets`: one generic module and one small subclass per
dataset family, so that a LightningCLI config can name them with ``class_path``/``init_args``::

    data:
      class_path: skysense.data.datamodules.EuroSATDataModule
      init_args: {root: ../shared/data/eurosat_rgb_dev, batch_size: 64, num_workers: 4}

Defaults: evaluation transforms are :class:`~skysense.data.transforms.Normalize` with the dataset's ``sensors``
(which refuses values in the wrong units) then :class:`~skysense.data.transforms.FillInvalid` (the one explicit fill
of no-data pixels, masks kept); training adds :class:`~skysense.data.transforms.RandomFlipRotate` (the same flip and
90° rotation for every modality, mask and box target). Batches are :class:`~skysense.containers.Batch` objects
from :func:`~skysense.data.collate.collate`.

Reproducibility: shuffling draws from a ``torch.Generator`` seeded with ``seed`` (and so does the DataLoader's
per-worker seed); the default augmentation draws from its own generator seeded with ``seed``, and in each worker the
generator of every transform (the ``generator`` attribute of each step of a :class:`~skysense.data.transforms.Compose`)
is re-seeded from that worker's seed: distinct streams per worker, the same on every run. Python's ``random`` and
NumPy are seeded in workers too.
"""

from __future__ import annotations

import functools
import importlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader

from skysense.containers import Batch
from skysense.data import datasets
from skysense.data.collate import collate
from skysense.data.datasets.base import SkySenseDataset, Transform
from skysense.data.manifest import ManifestDataset
from skysense.data.transforms import Compose, FillInvalid, Normalize, RandomCrop, RandomFlipRotate
from skysense.errors import UsageError

DEFAULT = "default"


def default_transforms(dataset: SkySenseDataset, train: bool, generator: torch.Generator | None = None) -> Compose:
    """Normalize (the dataset's sensors) + FillInvalid, and RandomFlipRotate for training."""
    steps: list[Transform] = [Normalize(**dataset.sensors), FillInvalid()]
    if train:
        steps.append(RandomFlipRotate(generator=generator))
    return Compose(steps)


def _generators(transform: Any) -> Iterator[torch.Generator]:
    """The ``generator`` attributes (torch.Generator) of a transform, or of each transform of a Compose."""
    if isinstance(transform, Compose):
        for step in transform.transforms:
            yield from _generators(step)
    generator = getattr(transform, "generator", None)
    if isinstance(generator, torch.Generator):
        yield generator


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python, NumPy and the transforms' generators from the worker's torch seed
    (which the DataLoader derives from its seeded generator and the worker id)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        for generator in _generators(getattr(info.dataset, "transforms", None)):
            generator.manual_seed(seed)


def resolve_dataset_class(dataset_class: type[SkySenseDataset] | str) -> type[SkySenseDataset]:
    """A dataset class, or its name in :mod:`skysense.data.datasets`, or a dotted import path."""
    if not isinstance(dataset_class, str):
        return dataset_class
    if hasattr(datasets, dataset_class):
        return getattr(datasets, dataset_class)
    module, _, name = dataset_class.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(
            f"unknown dataset class {dataset_class!r}: give a class of skysense.data.datasets "
            f"({', '.join(datasets.__all__)}) or a dotted path"
        ) from err


class SkySenseDataModule(pl.LightningDataModule):
    """Any :class:`~skysense.data.datasets.SkySenseDataset` as train/val/test/predict loaders of collated batches.

    Args:
        dataset_class: the dataset class (or its name, or a dotted path).
        dataset_kwargs: constructor arguments other than ``split`` and ``transforms`` (``root`` at least).
        train_split, val_split, test_split: split names passed to the dataset (None: no such loader).
        predict_split: split for ``predict_dataloader`` (default: ``test_split``).
        batch_size: training batch size.
        eval_batch_size: validation/test/predict batch size (default ``batch_size``).
        num_workers: DataLoader worker processes (persistent when > 0).
        train_transforms: ``Sample -> Sample`` for training, "default" (see the module docstring) or None (raw
            sensor units: the model needs normalised inputs, so only for inspection).
        eval_transforms: the same for validation, test and prediction.
        seed: seeds the shuffling, the workers and the default augmentation.
        pin_memory: DataLoader ``pin_memory``.
        drop_last: drop the last incomplete training batch.
        min_valid_fraction: passed to :func:`~skysense.data.collate.collate` (frames with no more than this fraction
            of valid pixels are masked out).
    """

    def __init__(
        self,
        dataset_class: type[SkySenseDataset] | str,
        dataset_kwargs: dict[str, Any] | None = None,
        train_split: str | None = "train",
        val_split: str | None = "val",
        test_split: str | None = "test",
        predict_split: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_transforms: Transform | str | None = DEFAULT,
        eval_transforms: Transform | str | None = DEFAULT,
        seed: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        min_valid_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        self.dataset_class = resolve_dataset_class(dataset_class)
        self.dataset_kwargs = dict(dataset_kwargs or {})
        for reserved in ("split", "transforms"):
            if reserved in self.dataset_kwargs:
                raise ValueError(f"pass {reserved!r} through the data module's own arguments, not dataset_kwargs")
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.split_names["predict"] = predict_split or test_split
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        for name, value in (("train_transforms", train_transforms), ("eval_transforms", eval_transforms)):
            if isinstance(value, str) and value != DEFAULT:
                raise ValueError(f"{name} must be a callable, {DEFAULT!r} or None, got {value!r}")
        self.train_transforms, self.eval_transforms = train_transforms, eval_transforms
        self.seed = seed
        self.pin_memory, self.drop_last = pin_memory, drop_last
        self.collate_fn = functools.partial(collate, min_valid_fraction=min_valid_fraction)
        self.augment_generator = torch.Generator().manual_seed(seed)
        self.datasets: dict[str, SkySenseDataset] = {}

    # ------------------------------------------------------------------------------------------------------------
    def build_dataset(self, stage: str) -> SkySenseDataset:
        """The dataset of ``stage`` ("train", "val", "test", "predict") with its transforms (built once)."""
        if stage not in self.datasets:
            split = self.split_names[stage]
            if split is None:
                raise ValueError(f"{type(self).__name__} has no {stage} split (its {stage}_split is None)")
            dataset = self.dataset_class(split=split, **self.dataset_kwargs)
            train = stage == "train"
            chosen = self.train_transforms if train else self.eval_transforms
            if chosen == DEFAULT:
                generator = self.augment_generator if train else None
                chosen = default_transforms(dataset, train=train, generator=generator)
            dataset.transforms = chosen
            self.datasets[stage] = dataset
        return self.datasets[stage]

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
            None: ("train", "val", "test"),
        }[stage]
        for name in wanted:
            if self.split_names[name] is not None:
                self.build_dataset(name)

    def _loader(self, stage: str) -> DataLoader:
        dataset = self.build_dataset(stage)
        train = stage == "train"
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
            drop_last=self.drop_last and train,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=seed_worker if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names of the data (index = class), from the first dataset built; () when it has none."""
        for dataset in self.datasets.values():
            return tuple(getattr(dataset, "classes", ()))
        return ()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a :class:`~skysense.containers.Batch`, including list targets (boxes) that ``Batch.to`` keeps."""
        if isinstance(batch, Batch):
            moved = batch.to(device)
            if isinstance(moved.target, list):
                moved.target = [move_data_to_device(t, device) for t in moved.target]
            return moved
        return super().transfer_batch_to_device(batch, device, dataloader_idx)


# ----------------------------------------------------------------------------------------------------------------
# One per dataset family (names for LightningCLI configs)
# ----------------------------------------------------------------------------------------------------------------
class EuroSATDataModule(SkySenseDataModule):
    """:class:`~skysense.data.datasets.EuroSAT` (seeded stratified train/val/test, default 0.6/0.2/0.2)."""

    def __init__(
        self,
        root: str | Path,
        split_fractions: tuple[float, float, float] | None = None,
        image_size: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        dataset_kwargs = dict(root=root, split_fractions=split_fractions, seed=seed, image_size=image_size)
        super().__init__(
            datasets.EuroSAT, dataset_kwargs, batch_size=batch_size, num_workers=num_workers, seed=seed, **kwargs
        )


class SceneFolderDataModule(SkySenseDataModule):
    """Your own scene classes: :class:`~skysense.data.datasets.SceneFolder` (``root/<ClassName>/*.jpg``, or
    ``root/train/<ClassName>/…`` split folders; seeded stratified 0.6/0.2/0.2 split otherwise), e.g.::

        skysense fit --config configs/classification/eurosat.yaml --data skysense.data.datamodules.SceneFolderDataModule \\
            --data.root my_scenes/ --data.image_size 128 --model.init_args.num_classes 21 \\
            --model.init_args.class_names null

    A classification task checks its ``num_classes`` and ``class_names`` against :attr:`classes` when it starts, and
    takes the data's names when it has none.
    """

    scene_dataset: type[SkySenseDataset] = datasets.SceneFolder

    def __init__(
        self,
        root: str | Path,
        classes: list[str] | None = None,
        image_size: int | None = None,
        resize: str = "resize",
        split_fractions: tuple[float, float, float] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        dataset_kwargs = dict(root=root, classes=classes, image_size=image_size, resize=resize,
                              split_fractions=split_fractions, seed=seed)  # fmt: skip
        super().__init__(
            self.scene_dataset, dataset_kwargs, batch_size=batch_size, num_workers=num_workers, seed=seed, **kwargs
        )


class AIDDataModule(SceneFolderDataModule):
    """:class:`~skysense.data.datasets.AID` (resized to 128² by default; seeded stratified 0.4/0.1/0.5 split); the
    arguments are :class:`SceneFolderDataModule`'s."""

    scene_dataset = datasets.AID

    def __init__(self, root: str | Path, image_size: int | None = 128, **kwargs: Any) -> None:
        super().__init__(root, image_size=image_size, **kwargs)


class Sen1Floods11DataModule(SkySenseDataModule):
    """:class:`~skysense.data.datasets.Sen1Floods11` (official split lists "train"/"valid"/"test"; the shared
    sample has only "test" and "all", so pass ``train_split="all"`` etc. there)."""

    def __init__(
        self,
        root: str | Path,
        mode: str = "s1s2",
        tile_size: int | None = 128,
        chip_dir: str | None = None,
        splits_dir: str | None = None,
        metadata: str | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        dataset_kwargs = dict(
            root=root, mode=mode, tile_size=tile_size, chip_dir=chip_dir, splits_dir=splits_dir, metadata=metadata
        )
        super().__init__(
            datasets.Sen1Floods11, dataset_kwargs, batch_size=batch_size, num_workers=num_workers, **kwargs
        )


class PrestoDataModule(SkySenseDataModule):
    """Presto's pixel time series: ``task`` "algae_blooms" (:class:`~skysense.data.datasets.PrestoAlgaeBlooms`) or
    "fuel_moisture" (:class:`~skysense.data.datasets.PrestoFuelMoisture`)."""

    tasks = {"algae_blooms": datasets.PrestoAlgaeBlooms, "fuel_moisture": datasets.PrestoFuelMoisture}

    def __init__(
        self,
        root: str | Path,
        task: str = "algae_blooms",
        val_fraction: float = 0.2,
        pixel_size: int = 4,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if task not in self.tasks:
            raise ValueError(f"task must be one of {list(self.tasks)}, got {task!r}")
        dataset_kwargs = dict(root=root, val_fraction=val_fraction, pixel_size=pixel_size, seed=seed)
        super().__init__(
            self.tasks[task], dataset_kwargs, batch_size=batch_size, num_workers=num_workers, seed=seed, **kwargs
        )


class NWPUVHR10DataModule(SkySenseDataModule):
    """:class:`~skysense.data.datasets.NWPUVHR10` (published train/test lists; "val" holds out ``val_fraction`` of the
    train list, seeded)."""

    def __init__(
        self,
        root: str | Path,
        image_size: int | None = 800,
        val_fraction: float = 0.1,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        dataset_kwargs = dict(root=root, image_size=image_size, val_fraction=val_fraction, seed=seed)
        super().__init__(
            datasets.NWPUVHR10, dataset_kwargs, batch_size=batch_size, num_workers=num_workers, seed=seed, **kwargs
        )


class ChangeDetectionDataModule(SkySenseDataModule):
    """Bi-temporal change pairs: ``dataset`` "levir" (:class:`~skysense.data.datasets.LEVIRCD`) or "dsifn"
    (:class:`~skysense.data.datasets.DSIFN`), in their official split-folder layout or as one-folder crop sets
    (splits from ``list/<split>.txt``, or LEVIR's file names). A DSIFN folder without splits (the shared sample)
    defaults every split to "all", a demo set only."""

    def __init__(
        self,
        root: str | Path,
        dataset: str = "levir",
        batch_size: int = 8,
        num_workers: int = 0,
        train_split: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        **kwargs: Any,
    ) -> None:
        classes = {"levir": datasets.LEVIRCD, "dsifn": datasets.DSIFN}
        if dataset not in classes:
            raise ValueError(f"dataset must be one of {list(classes)}, got {dataset!r}")
        split = dataset == "levir" or classes[dataset].has_splits(root)  # the shared DSIFN sample has no split
        defaults = ("train", "val", "test") if split else ("all", "all", "all")
        super().__init__(
            classes[dataset],
            dict(root=root),
            train_split=train_split or defaults[0],
            val_split=val_split or defaults[1],
            test_split=test_split or defaults[2],
            batch_size=batch_size,
            num_workers=num_workers,
            **kwargs,
        )


class ManifestDataModule(SkySenseDataModule):
    """Your own files, through a manifest written by ``skysense data index`` (see
    :class:`~skysense.data.manifest.ManifestDataset`): segmentation (a label raster per sample), change detection (two
    HR images and a label) or time-series mapping (S2/S1 series and a label), e.g.::

        skysense data index my_tiles/ -o manifest.csv
        skysense fit --config configs/segmentation/manifest.yaml --data.init_args.manifest manifest.csv

    Splits come from the manifest's ``split`` column (filled from ``train/``, ``val/``, ``test/`` folders, or by
    hand), else from ``split_fractions`` over a seeded hash of the sample ids. ``crop_size`` adds a random crop of
    that many pixels (of the coarsest modality) to the training transforms, for samples larger than a training
    batch should be; validation and test read whole samples (give ``eval_batch_size: 1`` when they differ in
    size). Invalid label pixels get the task's ``ignore_index`` (:meth:`use_ignore_index`; -1 outside a task).
    """

    def __init__(
        self,
        manifest: str | Path,
        label_values: list[float] | None = None,
        split_fractions: dict[str, float] | None = None,
        crop_size: int | None = None,
        ratio: int = 32,
        crop: bool = False,
        hr_sensor: str = "hr_rgb",
        s2_sensor: str | None = None,
        s1_sensor: str = "s1_grd",
        label_nodata: float | None = None,
        hr_range: list[float] | None = None,
        chip_size: int | None = None,
        ignore_index: int | None = None,
        allow_duplicate_dates: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        dataset_kwargs = dict(
            manifest=manifest, label_values=label_values, split_fractions=split_fractions, seed=seed, ratio=ratio,
            crop=crop, hr_sensor=hr_sensor, s2_sensor=s2_sensor, s1_sensor=s1_sensor, label_nodata=label_nodata,
            hr_range=hr_range, chip_size=chip_size,
            ignore_index=-1 if ignore_index is None else ignore_index, allow_duplicate_dates=allow_duplicate_dates,
        )  # fmt: skip
        self.ignore_index = ignore_index
        if crop_size is not None and crop_size < 1:
            raise UsageError(f"crop_size {crop_size}: give a positive number of pixels, or null for whole samples")
        self.crop_size = crop_size
        super().__init__(
            ManifestDataset, dataset_kwargs, batch_size=batch_size, num_workers=num_workers, seed=seed, **kwargs
        )

    def use_ignore_index(self, value: int) -> None:
        """Fill invalid label pixels with the task's ``ignore_index`` (segmentation tasks call this in their
        ``setup``), so that a valid pixel holding that value is refused by the dataset instead of silently ignored.

        Raises:
            UsageError: this module was given another ``ignore_index``.
        """
        if self.ignore_index is not None and self.ignore_index != value:
            raise UsageError(
                f"the data's ignore_index {self.ignore_index} is not the task's {value}; give one value (or leave "
                "the data's out: it takes the task's)"
            )
        self.dataset_kwargs["ignore_index"] = value
        for dataset in self.datasets.values():
            dataset.ignore_index = value

    def build_dataset(self, stage: str) -> Any:
        built = stage in self.datasets
        dataset = super().build_dataset(stage)
        if not built and stage == "train" and self.crop_size is not None and self.train_transforms == DEFAULT:
            crop = RandomCrop(self.crop_size, generator=self.augment_generator)
            dataset.transforms = Compose([crop, *dataset.transforms.transforms])
        return dataset
