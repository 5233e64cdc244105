"""Why a pretraining probes as it does (issue 16): two diagnostics beside ``pretrain_probe.py``, on its protocol.

``supervised``: the HR encoder trained *with* the EuroSAT labels (cross-entropy on its mean-pooled last stage,
AdamW, one-cycle schedule, batch 128, horizontal flips) for ``--steps``, then the same frozen linear probe. It bounds
what the architecture can learn in that many steps of that batch: self-supervision on the same steps rarely beats it.

``trace``: one pretraining of ``configs/pretrain/tiny.yaml`` (with ``--set`` overrides, as ``pretrain_probe.py
ours``) for a fixed ``--steps``, probing the student and the EMA teacher every ``--every`` steps (seed 0). It shows
whether the probe falls below the random start and whether, and how fast, it climbs back.

    python benchmarks/probe_diagnostics.py supervised --steps 300 --set stem=conv
    python benchmarks/probe_diagnostics.py trace --steps 300 --every 50 --set 'model.model_overrides={hr: {stem: conv}}'

Both run on ``--threads`` threads (1 by default), as the pretraining budgets do.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from pretrain_probe import apply_overrides, calibrate_batchnorm, eurosat_batches, features, linear_probe, ours_recipe

from skysense.models.registry import get_config
from skysense.models.swin_v2 import SwinTransformerV2


def probe(encoder: torch.nn.Module, seeds: tuple[int, ...] = (0,)) -> list[float]:
    """The frozen last-stage probe of ``pretrain_probe.py`` (%, one value per seed); the encoder's mode is kept."""
    training = encoder.training
    train, val = features(encoder, "normalize", "train"), features(encoder, "normalize", "val")
    encoder.train(training)
    return [round(100 * linear_probe(train, val, seed), 1) for seed in seeds]


def supervised(steps: int, overrides: list[str], preset: str = "cpu", lr: float = 2e-3) -> None:
    """Train the preset's HR encoder with labels for ``steps``, then probe it frozen (seeds 0 and 1)."""
    hr: dict[str, Any] = {}
    apply_overrides(hr, overrides)  # HR encoder options: unknown names are refused by SwinV2Config
    try:
        cfg = get_config(preset, hr=hr).hr
    except (TypeError, ValueError) as error:
        raise SystemExit(f"--set: not an HR encoder option of the {preset!r} preset: {error}") from None
    cfg = dataclasses.replace(cfg, out_indices=tuple(range(len(cfg.depths))))
    torch.manual_seed(0)
    encoder = SwinTransformerV2(cfg)
    images, labels = (torch.cat(parts) for parts in zip(*eurosat_batches("train"), strict=True))  # (N, 3, 64, 64), (N,)
    head = torch.nn.Linear(cfg.num_features[-1], int(labels.max()) + 1)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.06)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randint(len(images), (128,), generator=generator)
        x = images[index]
        if torch.rand((), generator=generator) < 0.5:
            x = x.flip(-1)
        loss = F.cross_entropy(head(encoder(x)[-1].mean(dim=(2, 3))), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.3f}, {time.perf_counter() - start:.0f} s", flush=True)
    print(f"supervised {steps} steps ({cfg.stem} stem, C{cfg.embed_dim}, depths {cfg.depths}): "
          f"frozen probe {probe(encoder, (0, 1))} %")  # fmt: skip


class ProbeEvery(pl.Callback):
    """Probe the student's and the teacher's HR encoders every ``every`` optimiser steps."""

    def __init__(self, every: int, steps: int) -> None:
        self.every, self.steps = every, steps
        self.rows: list[tuple[int, float, float]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, task: Any, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == self.steps:
            row = (step, probe(task.meta.student["backbone"].hr)[0], probe(task.meta.teacher["backbone"].hr)[0])
            self.rows.append(row)
            print(f"step {row[0]}: student {row[1]} %, teacher {row[2]} %", flush=True)


def trace(steps: int, every: int, overrides: list[str]) -> None:
    config, make_task, make_data = ours_recipe(overrides)
    pl.seed_everything(0)
    task = make_task(steps)
    random_init = calibrate_batchnorm(copy.deepcopy(task.meta.student["backbone"].hr))  # BatchNorm at data statistics
    print(f"step 0: random init {probe(random_init)[0]} %", flush=True)
    callback = ProbeEvery(every, steps)
    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="cpu",
        precision=str(config.get("trainer", {}).get("precision", "32-true")),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[callback],
    )
    trainer.fit(task, make_data())
    print("| step | student % | teacher % |\n|---|---|---|")
    for step, student, teacher in callback.rows:
        print(f"| {step} | {student} | {teacher} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["supervised", "trace"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50, help="trace: probe every this many steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[],
                        help="supervised: HR encoder options (stem=conv); trace: pretraining config overrides")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "supervised":
        supervised(args.steps, args.set)
    else:
        trace(args.steps, args.every, args.set)


if __name__ == "__main__":
    main()
