"""Scene classification: fit/validate/test/predict through the CLI on real EuroSAT images (or their excerpt),
learning (on the whole development set only), freezing, pretrained weights from both file kinds, multi-label metrics,
and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from skysense import SkySenseInput, save_pretrained
from skysense.cli import main
from skysense.data.datamodules import EuroSATDataModule
from skysense.data.datasets import EuroSAT
from skysense.tasks.classification import ClassificationTask
from tests.config_roots import root_overrides
from tests.conftest import cli_fit_test_predict, shared_path

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "classification" / "eurosat.yaml"


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return pl.Trainer(default_root_dir=tmp_path, enable_model_summary=False, **{**defaults, **kwargs})


def test_cli_fit_test_predict_on_eurosat(tmp_path: Path) -> None:
    batch = 8  # the excerpt's test split holds 20 images
    extra = [*root_overrides(CONFIG), "--data.init_args.batch_size", str(batch)]
    lines, metrics, _ = cli_fit_test_predict(CONFIG, tmp_path, extra, train_batches=3)
    assert len(lines) == 2 * batch and len({line["id"] for line in lines}) == 2 * batch  # 2 batches of test images
    assert lines[0]["class_name"] in EuroSAT.classes and abs(sum(lines[0]["probabilities"]) - 1) < 1e-3
    for column in ("train/loss", "val/OA", "val/AA", "val/accuracy/Forest", "test/OA"):
        assert column in metrics, column


def test_cli_multimodal_time_series_on_presto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """S2 + S1 monthly series through the fusion and the geo prototypes (real Presto algae-bloom samples)."""
    monkeypatch.chdir(CONFIG.parents[2])
    config = CONFIG.parent / "presto_algae.yaml"
    arguments = ["fit", "--config", str(config), *root_overrides(config), "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                 "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2", "--trainer.max_epochs", "1",
                 "--trainer.log_every_n_steps", "1"]  # fmt: skip
    assert main(arguments) == 0
    metrics = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "val/OA" in metrics and "val/accuracy/severity_1" in metrics and "train/loss" in metrics


def test_fine_tuning_learns_eurosat(tmp_path: Path) -> None:
    """40 steps of the tiny HR encoder on real EuroSAT images: well above the 10 % of chance on held-out images
    (a learning check: the whole development set, not the excerpt)."""
    data = EuroSATDataModule(shared_path("eurosat_rgb_dev", full=True), batch_size=32)
    pl.seed_everything(0)
    task = ClassificationTask(10, modalities=["hr"], lr=2e-3, warmup_steps=5)
    trainer = _trainer(tmp_path, max_steps=40, limit_val_batches=8, num_sanity_val_steps=0)
    trainer.fit(task, data)
    (metrics,) = trainer.validate(task, data, verbose=False)
    assert metrics["val/OA"] > 0.3, metrics


def test_freeze_modes(tmp_path: Path) -> None:
    frozen = ClassificationTask(10, modalities=["hr"], freeze="frozen")
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    frozen.train()
    assert not frozen.backbone.training and frozen.head.training
    partial = ClassificationTask(10, modalities=["hr"], freeze="partial", trainable_depths=1)
    trainable = [n for n, p in partial.backbone.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("hr.norms", "hr.layers.3")) for n in trainable), trainable
    with pytest.raises(ValueError, match="freeze"):
        ClassificationTask(10, freeze="some")


def test_pretrained_weights_from_safetensors_and_pretraining_checkpoint(tmp_path: Path) -> None:
    from skysense.tasks.pretrain import PretrainTask

    torch.manual_seed(1)
    source = ClassificationTask(10).backbone
    path = save_pretrained(source, tmp_path / "weights.safetensors")
    task = ClassificationTask(10, modalities=["hr"], pretrained=str(path))
    torch.testing.assert_close(task.backbone.hr.state_dict(), source.hr.state_dict())
    pretrain = PretrainTask("tiny")
    with torch.no_grad():
        for p in pretrain.meta.teacher.parameters():
            p.add_(1.0)
    checkpoint = tmp_path / "pretrain.ckpt"
    torch.save({"state_dict": pretrain.state_dict()}, checkpoint)
    teacher = ClassificationTask(10, modalities=["hr", "s2", "s1"], pretrained=str(checkpoint))
    expected = pretrain.meta.teacher["backbone"].state_dict()
    for key, value in teacher.backbone.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    student = ClassificationTask(10, modalities=["hr"], pretrained=str(checkpoint), pretrained_network="student")
    torch.testing.assert_close(student.backbone.hr.state_dict(), pretrain.meta.student["backbone"].hr.state_dict())
    with pytest.raises(KeyError, match="shape mismatches"):
        ClassificationTask(10, modalities=["hr"], model_overrides={"hr": {"embed_dim": 16}}, pretrained=str(path))


def test_multilabel_and_temporal_sources() -> None:
    task = ClassificationTask(4, modalities=["s2"], source="s2", head="attentive", multilabel=True,
                              head_args={"num_heads": 4}, class_weights=[1.0, 2.0, 1.0, 1.0])  # fmt: skip
    inputs = SkySenseInput(
        s2=torch.randn(2, 3, 10, 4, 4),
        s2_day_of_year=torch.tensor([[10, 40, 70], [5, 30, -1]]),
        s2_valid=torch.tensor([[True, True, True], [True, True, False]]),
    )
    logits = task(inputs)
    assert logits.shape == (2, 4)
    loss = task.loss(logits, torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]]))
    loss.backward()
    assert torch.isfinite(loss)
    fused = ClassificationTask(3, modalities=["s2", "s1"], source="fused")  # concat[F, F_geo]: needs coordinates
    with pytest.raises(ValueError, match="lat and lon"):
        fused(inputs)
    located = dataclasses.replace(inputs, lat=torch.tensor([45.0, -10.0]), lon=torch.tensor([7.0, 120.0]))
    assert fused(located).shape == (2, 3)
    assert ClassificationTask(3, modalities=["s2"], source="fused", use_geo=False)(inputs).shape == (2, 3)
    with pytest.raises(ValueError, match="needs the HR encoder"):
        ClassificationTask(3, modalities=["s2"], source="hr")
    with pytest.raises(ValueError, match="modalities"):
        ClassificationTask(3, modalities=["rgb"])
