"""A few real pretraining steps through Lightning on real Sen1Floods11 S1 tiles."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from skysense.data.datasets import Sen1Floods11
from skysense.data.sensors import S1_GRD
from skysense.data.transforms import Compose, FillInvalid, JitterDates, Normalize, RandomFlipRotate, RandomGainDb
from skysense.pretrain.views import TwoViews, collate_views
from skysense.tasks.pretrain import PretrainTask
from tests.conftest import shared_path


def test_pretraining_steps_update_student_teacher_and_prototypes(tmp_path) -> None:
    root = shared_path("sen1floods11_samples")
    generator = torch.Generator().manual_seed(0)
    views = TwoViews(
        shared=Compose([Normalize(s1=S1_GRD), FillInvalid(), RandomFlipRotate(generator=generator)]),
        per_view=Compose([RandomGainDb(max_db=0.5, p=1.0, generator=generator), JitterDates(3, generator=generator)]),
    )
    dataset = Sen1Floods11(root, mode="s1", tile_size=16)
    pairs = [views(dataset[i]) for i in range(0, 64, 8)]
    loader = DataLoader(pairs, batch_size=4, collate_fn=collate_views)
    torch.manual_seed(0)
    task = PretrainTask("tiny", model_overrides={"hr": None, "s2": None, "s2_head": None}, warmup_steps=1)
    student_before = [p.clone() for p in task.meta.student.parameters()]
    teacher_before = [p.clone() for p in task.meta.teacher.parameters()]
    bank_before = task.backbone.geo.bank.clone()
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, loader)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["loss"])
    for key in ("train/image/s1", "train/pixel/s1", "train/object/s1", "train/image/fused"):
        assert key in metrics, key
    unchanged = [
        name
        for (name, after), before in zip(task.meta.student.named_parameters(), student_before, strict=True)
        if torch.equal(after, before)
    ]
    assert not unchanged, unchanged
    assert any(not torch.equal(a, b) for a, b in zip(teacher_before, task.meta.teacher.parameters(), strict=True))
    assert not torch.equal(task.backbone.geo.bank, bank_before)
