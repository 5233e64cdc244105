"""Exact resume: a run stopped at a checkpoint and resumed continues the same loss curve as the run never stopped —
mid-epoch (inside a shorter source's second pass) and at an epoch boundary — on real EuroSAT and Presto data."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from skysense.pretrain.datamodule import PretrainDataModule
from skysense.tasks.pretrain import PretrainTask
from tests.conftest import shared_path

TOTAL_STEPS = 7


class RecordLoss(Callback):
    """The loss of every optimiser step, by global step."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, index) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])


def _fit(root: Path, ckpt_path: Path | None = None, num_workers: int = 0) -> tuple[dict[int, float], PretrainTask]:
    eurosat, presto = shared_path("eurosat_rgb_dev"), shared_path("presto_s1s2_timeseries")
    data = PretrainDataModule(
        sources={
            # 3 batches per pass: cycles inside the 5-batch epoch set by Presto
            "eurosat": {"dataset": "EuroSAT", "init_args": {"root": eurosat, "split": "val"}, "max_samples": 12},
            "presto": {"dataset": "PrestoAlgaeBlooms", "init_args": {"root": presto}, "max_samples": 20},
        },
        batch_size=4,
        num_workers=num_workers,
        s2_frames=4,
        s1_frames=4,
        seed=3,
    )
    pl.seed_everything(0)
    task = PretrainTask("tiny", model_overrides={"hr": {"drop_path_rate": 0.2}}, warmup_steps=2)
    record = RecordLoss()
    checkpoints = ModelCheckpoint(dirpath=root, every_n_train_steps=1, save_top_k=-1, filename="{step}")
    trainer = pl.Trainer(
        max_steps=TOTAL_STEPS,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[record, checkpoints],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
    return record.losses, task


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, float], PretrainTask]:
    root = tmp_path_factory.mktemp("uninterrupted")
    losses, task = _fit(root)
    return root, losses, task


@pytest.mark.parametrize(("stop_step", "num_workers"), [(4, 1), (5, 0)], ids=["mid-epoch-with-a-worker", "epoch-end"])
def test_resumed_run_continues_the_same_loss_curve(
    uninterrupted, stop_step: int, num_workers: int, tmp_path: Path
) -> None:
    """The uninterrupted run loads in the main process; the mid-epoch resume uses a worker process, which must not
    change the batches or their augmentations."""
    root, losses, task = uninterrupted
    assert sorted(losses) == list(range(1, TOTAL_STEPS + 1))
    checkpoint = root / f"step={stop_step}.ckpt"
    resumed_losses, resumed = _fit(tmp_path, ckpt_path=checkpoint, num_workers=num_workers)
    assert sorted(resumed_losses) == list(range(stop_step + 1, TOTAL_STEPS + 1))
    for step, loss in resumed_losses.items():
        assert loss == pytest.approx(losses[step], rel=1e-6, abs=1e-7), step
    for (name, a), b in zip(task.meta.state_dict().items(), resumed.meta.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
