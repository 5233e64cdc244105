"""DINO centring over processes that hold different numbers of items (the pixel and object levels keep a
data-dependent number of locations): every process ends with the same centre, the one a single process gets from all
items at once (two gloo processes)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skysense.losses.dino import DINOLoss

COUNTS = (3, 7)  # items on rank 0 and rank 1


def _logits() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(count, 16, generator=generator) for count in COUNTS]


def _worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(COUNTS))
    try:
        loss = DINOLoss(16, 0.1, 0.04, center_momentum=0.5)
        loss.teacher_probabilities(_logits()[rank])
        loss.update_center()
        centers = [torch.empty_like(loss.center) for _ in COUNTS]
        dist.all_gather(centers, loss.center)
        if rank == 0:
            torch.save(torch.stack(centers), out)
    finally:
        dist.destroy_process_group()


def test_every_process_gets_the_centre_of_all_items(tmp_path: Path) -> None:
    out = tmp_path / "centers.pt"
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(out)), nprocs=len(COUNTS), join=True)
    centers = torch.load(out)
    single = DINOLoss(16, 0.1, 0.04, center_momentum=0.5)
    single.teacher_probabilities(torch.cat(_logits()))
    single.update_center()
    torch.testing.assert_close(centers[0], centers[1], rtol=0, atol=0)
    torch.testing.assert_close(centers[0], single.center)
