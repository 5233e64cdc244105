"""DDP and FSDP (FSDP2 through Lightning's ModelParallelStrategy) with two CPU processes (gloo), launched the way a
user would: `skysense pretrain --trainer.strategy ...`."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.config_roots import root_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain" / "tiny.yaml"


def _pretrain(tmp_path: Path, max_steps: int, *strategy: str, every_step: bool = False) -> None:
    """``skysense pretrain`` on the tiny recipe with two processes and 4 samples of each source per process and step,
    logging every step into ``tmp_path`` (and saving a checkpoint after every step with ``every_step``)."""
    checkpoints = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                   "--trainer.callbacks.every_n_train_steps", "1", "--trainer.callbacks.save_top_k", "-1",
                   "--trainer.callbacks.filename", "{step}"] if every_step else []  # fmt: skip
    command = [sys.executable, "-m", "skysense.cli", "pretrain", "--config", "configs/pretrain/tiny.yaml",
               *root_overrides(CONFIG, source_batch_size=4), "--trainer.max_steps", str(max_steps),
               "--trainer.devices", "2", *strategy, *checkpoints, "--trainer.default_root_dir", str(tmp_path),
               "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.log_every_n_steps", "1",
               "--trainer.enable_progress_bar", "false", "--data.num_workers", "0"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"max_steps={max_steps}` reached" in result.stderr + result.stdout


def _losses(tmp_path: Path) -> dict[int, float]:
    """The logged loss of every step (rank 0's) of the run in ``tmp_path``."""
    rows = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()
    header = rows[0].split(",")
    step, loss = header.index("step"), header.index("loss")
    return {int(r.split(",")[step]): float(r.split(",")[loss]) for r in rows[1:] if r.split(",")[loss]}


def _check_full_checkpoint(checkpoint: Path) -> None:
    """A full (gathered) state dict with every tensor at its full shape and in float32, loadable into an unsharded
    task; geo banks equal in student and teacher; the teacher an EMA of the student, not a copy and not untouched."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    student_bank = state["meta.student.backbone.geo.bank"]
    teacher_bank = state["meta.teacher.backbone.geo.bank"]
    assert torch.equal(student_bank, teacher_bank) and torch.isfinite(student_bank).all()
    from skysense.tasks.pretrain import PretrainTask

    expected = PretrainTask(yaml.safe_load(CONFIG.read_text())["model"]["preset"]).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert {k for k, v in state.items() if v.dtype == torch.bfloat16} == set()  # bf16 is for computing only
    key = "meta.{}.backbone.hr.layers.0.blocks.0.attn.qkv.weight"
    assert not torch.equal(state[key.format("student")], state[key.format("teacher")])


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """DDP, where each step sees only some modalities' modules (unused parameters found by DDP)."""
    _pretrain(tmp_path, 2, "--trainer.strategy", "ddp_find_unused_parameters_true")
    _check_full_checkpoint(next(tmp_path.rglob("*.ckpt")))


def _fsdp(data_parallel: int, distributed_checkpoint: bool) -> list[str]:
    """ModelParallelStrategy (FSDP2) as on a GPU: bf16 autocast, and so (fsdp_param_dtype "auto") computing with bf16
    gathered parameters."""
    return ["--trainer.strategy", "lightning.pytorch.strategies.ModelParallelStrategy",
            "--trainer.strategy.init_args.data_parallel_size", str(data_parallel),
            "--trainer.strategy.init_args.tensor_parallel_size", "1",
            "--trainer.strategy.init_args.save_distributed_checkpoint", str(distributed_checkpoint).lower(),
            "--trainer.precision", "bf16-mixed"]  # fmt: skip


@pytest.mark.slow
def test_fsdp_distributed_checkpoint_resumes(tmp_path: Path) -> None:
    """FSDP2 over two processes. A run resumed from a distributed checkpoint (every process its shard of the model and
    of AdamW's state, including parameters that had no gradient yet; every process's RNG state; buffers equal on every
    process, which the checkpoint holds once) continues with the same losses as the run never stopped; the resumed
    run saves a full, gathered checkpoint (``save_distributed_checkpoint false``). One run of each kind: one process
    runs the same code with a shard that is the whole tensor, and a run takes half a minute of CI."""
    root_overrides(CONFIG)  # skips when the data is missing
    _pretrain(tmp_path / "whole", 2, *_fsdp(2, True), every_step=True)
    losses = _losses(tmp_path / "whole")
    checkpoint = next((tmp_path / "whole").rglob("step=1.ckpt"))
    assert checkpoint.is_dir() and len(list(checkpoint.glob("*.distcp"))) == 2
    _pretrain(tmp_path / "resumed", 2, *_fsdp(2, False), "--ckpt_path", str(checkpoint), every_step=True)
    resumed = _losses(tmp_path / "resumed")
    assert sorted(resumed) == [1] and sorted(losses) == [0, 1]
    for step, loss in resumed.items():
        assert math.isfinite(loss) and loss == pytest.approx(losses[step], rel=1e-6), step
    _check_full_checkpoint(next((tmp_path / "resumed").rglob("step=2.ckpt")))
