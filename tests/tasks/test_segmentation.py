"""Semantic segmentation: the CLI on real Sen1Floods11 S1 chips (split by flood event; or their excerpt), learning
water from S1 (on the whole chips only), the HR UperNet with its auxiliary head, and errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from skysense import SkySenseInput
from skysense.data.datamodules import Sen1Floods11DataModule
from skysense.tasks.segmentation import SegmentationTask
from tests.config_roots import root_overrides
from tests.conftest import cli_fit_test_predict, shared_path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "segmentation" / "sen1floods11.yaml"
SPLITS = ROOT / "configs" / "segmentation" / "sen1floods11_sample_splits"


def test_cli_fit_and_test_on_sen1floods11(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rasterio

    with rasterio.open(shared_path("sen1floods11_samples", "sample_data", "S1", "Spain_6860600_S1Hand.tif")) as chip:
        side = chip.width // 8  # the config's 64 on the 512² chips; 8 × 8 tiles of a chip on the excerpt too
    monkeypatch.chdir(ROOT)  # the config's paths are relative to the repository
    extra = [*root_overrides(CONFIG), "--data.init_args.tile_size", str(side)]
    lines, metrics, _ = cli_fit_test_predict(CONFIG, tmp_path, extra)
    assert len(lines) == 16  # two batches of 8 tiles
    with Image.open(tmp_path / "predictions" / lines[0]["mask"]) as mask:
        assert mask.size == (side, side) and set(np.unique(np.asarray(mask))) <= {0, 1}
    for column in ("train/loss", "val/mIoU", "val/IoU/water", "test/mIoU", "test/F1/water"):
        assert column in metrics, column


@pytest.mark.slow
def test_s1_water_segmentation_learns(tmp_path: Path) -> None:
    """60 steps on real S1 tiles of 8 flood events; scored on 2 other events: water IoU well above nothing (a learning
    check: the whole chips, not the excerpt's crops)."""
    root = shared_path("sen1floods11_samples", full=True)
    data = Sen1Floods11DataModule(root, mode="s1", tile_size=64, splits_dir=SPLITS,
                                  train_split="train", val_split="val", test_split="test", batch_size=8)  # fmt: skip
    pl.seed_everything(0)
    task = SegmentationTask(2, modalities=["s1"], source="s1", head_channels=32, norm="group", ignore_index=-1,
                            lr=2e-3, warmup_steps=5, class_names=["not_water", "water"])  # fmt: skip
    trainer = pl.Trainer(max_steps=60, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(task, data)
    (metrics,) = trainer.validate(task, data, verbose=False)
    assert metrics["val/IoU/water"] > 0.3, metrics


def test_hr_upernet_with_auxiliary_head_and_errors() -> None:
    task = SegmentationTask(4, modalities=["hr"], head_channels=16, ignore_index=255).train()
    inputs = SkySenseInput(hr=torch.randn(2, 3, 64, 64))
    outputs = task(inputs, size=(64, 64))
    assert outputs["logits"].shape == (2, 4, 64, 64) and outputs["aux"].shape == (2, 4, 64, 64)
    target = torch.randint(0, 4, (2, 64, 64))
    target[0, :8] = 255
    loss = task.loss(outputs, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert "aux" not in task.eval()(inputs)
    with pytest.raises(ValueError, match="ignore_index"):
        SegmentationTask(4, ignore_index=2)
    with pytest.raises(ValueError, match="needs the s2 encoder"):
        SegmentationTask(2, modalities=["hr"], source="s2")


def test_temporal_segmentation_through_the_fusion() -> None:
    """Crop/land-cover mapping: S2 and S1 series of different lengths (padded frames masked) fused per location with
    the day-of-year encoding and the geo-context prototypes; any subset of the modalities at test time."""
    torch.manual_seed(0)
    task = SegmentationTask(3, modalities=["s2", "s1"], source="fused", head_channels=16, norm="group",
                            ignore_index=-1).train()  # fmt: skip
    inputs = SkySenseInput(
        s2=torch.randn(2, 4, 10, 8, 8),
        s2_day_of_year=torch.tensor([[15, 80, 170, 260], [20, 110, 200, -1]]),
        s2_valid=torch.tensor([[True, True, True, True], [True, True, True, False]]),
        s1=torch.randn(2, 3, 2, 8, 8),
        s1_day_of_year=torch.tensor([[30, 120, 300], [40, 140, 310]]),
        lat=torch.tensor([45.0, -12.0]),
        lon=torch.tensor([7.0, 130.0]),
    )
    outputs = task(inputs, size=(8, 8))
    assert outputs["logits"].shape == (2, 3, 8, 8) and "aux" not in outputs  # no auxiliary head off the HR pyramid
    target = torch.randint(0, 3, (2, 8, 8))
    task.loss(outputs, target).backward()
    assert task.backbone.fusion.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # the fusion trains
    task.eval()
    with torch.no_grad():
        reference = task(inputs, size=(8, 8))["logits"]
        moved = dataclasses.replace(inputs, s2_day_of_year=inputs.s2_day_of_year + 30)  # same frames, other dates
        assert not torch.allclose(task(moved, size=(8, 8))["logits"], reference)
        s2_only = dataclasses.replace(inputs, s1=None, s1_day_of_year=None)
        assert task(s2_only, size=(8, 8))["logits"].shape == (2, 3, 8, 8)


def test_one_class_is_refused_in_one_line(capsys) -> None:
    """`--model.init_args.num_classes 1` (binary segmentation given as one class): one line naming num_classes and
    what to give, exit 2, before any data is read; it was a torchmetrics traceback at the first step."""
    from skysense.cli import main

    code = main(["fit", "--config", "configs/segmentation/sen1floods11_s1s2.yaml", "--model.init_args.num_classes",
                 "1", "--model.init_args.class_names", "[water]", "--trainer.max_steps", "1"])  # fmt: skip
    err = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("skysense") and ": warning:" not in line
    ]
    assert code == 2 and len(err) == 1 and "num_classes: 1; give at least 2" in err[0]
