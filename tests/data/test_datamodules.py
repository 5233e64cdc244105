"""Data modules on the real files (or their excerpts in tests/fixtures): batches with 0 and 1 workers, default
transforms, seeded reproducibility, and one module per dataset family."""

from __future__ import annotations

import pytest
import torch

from skysense.containers import Batch
from skysense.data.datamodules import (
    AIDDataModule,
    ChangeDetectionDataModule,
    EuroSATDataModule,
    NWPUVHR10DataModule,
    PrestoDataModule,
    Sen1Floods11DataModule,
    SkySenseDataModule,
)
from skysense.data.datasets import DSIFN, NWPUVHR10, EuroSAT, PrestoAlgaeBlooms
from skysense.data.transforms import Compose, FillInvalid, Normalize, RandomFlipRotate
from tests.conftest import shared_path


def _first(datamodule: SkySenseDataModule, stage: str = "fit", loader: str = "train") -> Batch:
    datamodule.setup(stage)
    return next(iter(getattr(datamodule, f"{loader}_dataloader")()))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_eurosat_batches_are_normalised_seeded_and_reproducible(num_workers: int) -> None:
    root = shared_path("eurosat_rgb_dev")
    datamodule = EuroSATDataModule(root, batch_size=8, num_workers=num_workers, seed=3)
    loader = (datamodule.setup("fit"), datamodule.train_dataloader())[1]
    assert loader.persistent_workers == (num_workers > 0) and loader.num_workers == num_workers
    batch = next(iter(loader))
    assert isinstance(batch, Batch) and batch.inputs.hr.shape == (8, 3, 64, 64) and batch.target.shape == (8,)
    assert batch.inputs.hr.abs().max() < 5 and batch.inputs.hr.mean().abs() < 1.5  # normalised, not DN
    transforms = datamodule.datasets["train"].transforms
    assert [type(t) for t in transforms.transforms] == [Normalize, FillInvalid, RandomFlipRotate]
    assert [type(t) for t in datamodule.datasets["val"].transforms.transforms] == [Normalize, FillInvalid]

    again = _first(EuroSATDataModule(root, batch_size=8, num_workers=num_workers, seed=3))
    assert [m["id"] for m in again.meta] == [m["id"] for m in batch.meta]  # same shuffle
    assert torch.equal(again.inputs.hr, batch.inputs.hr)  # same augmentation
    other = _first(EuroSATDataModule(root, batch_size=8, num_workers=num_workers, seed=4))
    assert [m["id"] for m in other.meta] != [m["id"] for m in batch.meta]

    val = next(iter(datamodule.val_dataloader()))
    assert datamodule.datasets["val"].files == EuroSAT(root, split="val", seed=3).files  # 1,000 images of 5,000
    assert val.inputs.hr.shape == (8, 3, 64, 64)


def test_generic_module_by_name_custom_transforms_and_refusals() -> None:
    root = shared_path("presto_s1s2_timeseries")
    identity = Compose([])
    datamodule = SkySenseDataModule(
        "PrestoAlgaeBlooms", {"root": root}, batch_size=4, train_transforms=identity, eval_transforms=None
    )
    assert datamodule.dataset_class is PrestoAlgaeBlooms
    batch = _first(datamodule)
    assert batch.inputs.s2.max() > 100  # no normalisation asked for: reflectance x 1e4
    test = _first(datamodule, "test", "test")
    assert test.inputs.s2.shape == (4, 12, 10, 4, 4)
    with pytest.raises(ValueError, match="unknown dataset class"):
        SkySenseDataModule("NoSuchDataset")
    with pytest.raises(ValueError, match="'split'"):
        SkySenseDataModule(EuroSAT, {"root": root, "split": "train"})
    with pytest.raises(ValueError, match="no predict split"):
        SkySenseDataModule(EuroSAT, {"root": root}, test_split=None).predict_dataloader()


def test_one_module_per_family_yields_batches() -> None:
    data = shared_path()
    aid = _first(AIDDataModule(data / "aid_150px_subset", batch_size=2))
    assert aid.inputs.hr.shape == (2, 3, 128, 128)

    floods = Sen1Floods11DataModule(
        data / "sen1floods11_samples", mode="s1", tile_size=64, train_split="all", val_split="test", batch_size=2
    )
    batch = _first(floods)
    assert batch.inputs.s1.shape == (2, 1, 2, 64, 64) and batch.target.shape == (2, 64, 64)
    assert torch.isfinite(batch.inputs.s1).all()

    fuel = _first(PrestoDataModule(data / "presto_s1s2_timeseries", task="fuel_moisture", batch_size=3))
    assert fuel.inputs.s2.shape == (3, 3, 10, 4, 4) and fuel.target.dtype == torch.float32

    nwpu = NWPUVHR10DataModule(data / "nwpu_vhr10", image_size=256, batch_size=2)
    batch = _first(nwpu)
    assert batch.inputs.hr.shape == (2, 3, 256, 256) and isinstance(batch.target, list)
    published = NWPUVHR10(data / "nwpu_vhr10", split="train").ids  # the 454 of the train list
    assert sorted(nwpu.datasets["train"].ids + nwpu.datasets["val"].ids) == sorted(published)
    assert len(nwpu.datasets["val"]) > 0
    for target in batch.target:
        assert target["boxes"].shape[1] == 4 and (target["boxes"] >= 0).all() and (target["boxes"] <= 256).all()
    moved = nwpu.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert moved.target[0]["labels"].device.type == "cpu"

    levir = _first(ChangeDetectionDataModule(data / "change_detection_samples" / "samples_LEVIR", batch_size=2))
    size = levir.target.shape[-2:]  # 256² (a central 128² on the excerpts)
    assert levir.hr_t2.shape == (2, 3, *size) and levir.inputs.hr.shape == (2, 3, *size)
    assert set(levir.target.unique().tolist()) <= {0, 1}
    dsifn = ChangeDetectionDataModule(data / "change_detection_samples" / "samples_DSIFN", dataset="dsifn")
    pairs = len(DSIFN(data / "change_detection_samples" / "samples_DSIFN"))  # "test" is "all" for DSIFN: 10 pairs
    assert len(_first(dsifn, "test", "test")) == min(8, pairs)  # the default batch of 8
