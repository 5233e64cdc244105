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


STRATEGIES = {
    # each step sees only some modalities' modules
    "ddp": ["--trainer.strategy", "ddp_find_unused_parameters_true"],
    "fsdp": [
        "--trainer.strategy",
        "lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.init_args.data_parallel_size",
        "2",
        "--trainer.strategy.init_args.tensor_parallel_size",
        "1",
        "--trainer.strategy.init_args.save_distributed_checkpoint",
        "false",
        # as on a GPU: bf16 autocast, and so (fsdp_param_dtype "auto") FSDP2 computing with bf16 gathered parameters
        "--trainer.precision",
        "bf16-mixed",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_two_cpu_processes(tmp_path, strategy: str) -> None:
    command = [
        sys.executable,
        "-m",
        "skysense.cli",
        "pretrain",
        "--config",
        "configs/pretrain/tiny.yaml",
        *root_overrides(CONFIG),
        "--trainer.max_steps",
        "2",
        "--trainer.devices",
        "2",
        *STRATEGIES[strategy],
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "max_steps=2` reached" in result.stderr + result.stdout
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    student_bank = state["meta.student.backbone.geo.bank"]
    teacher_bank = state["meta.teacher.backbone.geo.bank"]
    assert torch.equal(student_bank, teacher_bank) and torch.isfinite(student_bank).all()
    # a full (gathered) state dict with every tensor at its full shape, loadable into an unsharded task
    from skysense.tasks.pretrain import PretrainTask

    expected = PretrainTask(yaml.safe_load((ROOT / "configs/pretrain/tiny.yaml").read_text())["model"]["preset"])
    expected = expected.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert {k for k, v in state.items() if v.dtype == torch.bfloat16} == set()  # bf16 is for computing only
    # the teacher is an EMA of the student, not a copy and not untouched
    key = "meta.{}.backbone.hr.patch_embed.proj.weight"
    assert not torch.equal(state[key.format("student")], state[key.format("teacher")])


def _pretrain(tmp_path: Path, devices: int, max_steps: int, *extra: str) -> dict[int, float]:
    """``skysense pretrain`` under ModelParallelStrategy (FSDP2) saving a distributed checkpoint (one shard per
    process) after every step; returns the logged loss of every step (rank 0's)."""
    command = [sys.executable, "-m", "skysense.cli", "pretrain", "--config", "configs/pretrain/tiny.yaml",
               *root_overrides(CONFIG),
               "--trainer.max_steps", str(max_steps), "--trainer.devices", str(devices),
               "--trainer.strategy", "lightning.pytorch.strategies.ModelParallelStrategy",
               "--trainer.strategy.init_args.data_parallel_size", str(devices),
               "--trainer.strategy.init_args.tensor_parallel_size", "1",
               "--trainer.strategy.init_args.save_distributed_checkpoint", "true",
               "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
               "--trainer.callbacks.every_n_train_steps", "1", "--trainer.callbacks.save_top_k", "-1",
               "--trainer.callbacks.filename", "{step}",
               "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
               "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
               "--data.num_workers", "0", "--data.batch_size", "4", *extra]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()
    header = rows[0].split(",")
    step, loss = header.index("step"), header.index("loss")
    return {int(r.split(",")[step]): float(r.split(",")[loss]) for r in rows[1:] if r.split(",")[loss]}


@pytest.mark.slow
def test_fsdp_distributed_checkpoint_resumes(tmp_path: Path, devices: int = 2) -> None:
    """A run resumed from a distributed checkpoint (every process its shard of the model and of AdamW's state,
    including parameters that had no gradient yet; every process's RNG state; buffers equal on every process, which
    the checkpoint holds once) continues with the same losses as the run never stopped. Two processes: one process
    runs the same code with a shard that is the whole tensor (it was tested too, for 49 of CI's 15 minutes)."""
    root_overrides(CONFIG)  # skips when the data is missing
    losses = _pretrain(tmp_path / "whole", devices, 2)
    checkpoint = next((tmp_path / "whole").rglob("step=1.ckpt"))
    assert checkpoint.is_dir() and len(list(checkpoint.glob("*.distcp"))) == devices
    resumed = _pretrain(tmp_path / "resumed", devices, 2, "--ckpt_path", str(checkpoint))
    assert sorted(resumed) == [1] and sorted(losses) == [0, 1]
    for step, loss in resumed.items():
        assert math.isfinite(loss) and loss == pytest.approx(losses[step], rel=1e-6), step
