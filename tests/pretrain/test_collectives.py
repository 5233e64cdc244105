"""Two processes whose batches hold different modalities (rank 0: HR + S2 with coordinates; rank 1: S1 alone, no
coordinates, so no fused source and no prototype update of its own) train under DDP for two steps: every process
runs the same collectives (a mismatch hangs until the process group's timeout, or sums the wrong tensors), and every
process ends with the same DINO centres and prototype bank, the ones that both processes' statistics give."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from skysense import SkySenseInput, create_model, get_config
from skysense.pretrain.meta_arch import SSLMetaArch


def _views(rank: int, step: int) -> tuple[SkySenseInput, SkySenseInput]:
    generator = torch.Generator().manual_seed(10 * rank + step)
    if rank == 0:
        base = SkySenseInput(
            hr=torch.randn(2, 3, 128, 128, generator=generator),
            s2=torch.randn(2, 3, 10, 4, 4, generator=generator),
            s2_day_of_year=torch.randint(0, 365, (2, 3), generator=generator),
            lat=torch.tensor([45.0, -12.0]),
            lon=torch.tensor([7.0, 130.0]),
        )
        return base, SkySenseInput(**{**base.__dict__, "hr": base.hr * 1.1 + 0.1})
    base = SkySenseInput(
        s1=torch.randn(3, 2, 2, 4, 4, generator=generator),
        s1_day_of_year=torch.randint(0, 365, (3, 2), generator=generator),
    )
    return base, SkySenseInput(**{**base.__dict__, "s1": base.s1 + 0.05})


def _gathered(tensor: torch.Tensor) -> list[torch.Tensor]:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return parts


def _worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=dt.timedelta(seconds=60))  # fmt: skip
    try:
        torch.manual_seed(0)
        meta = SSLMetaArch(create_model("tiny"), get_config("tiny").projection).train()
        bank = meta.teacher["backbone"].geo.bank.clone()
        model = DistributedDataParallel(meta, find_unused_parameters=True)
        optimizer = torch.optim.SGD(meta.student.parameters(), lr=0.1)
        losses = []
        for step in range(2):
            torch.manual_seed(step)
            meta.start_step(step / 2)
            result = model(_views(rank, step))
            result["loss"].backward()
            optimizer.step()
            optimizer.zero_grad()
            meta.finish_step()
            meta.update_teacher(0.9)
            losses.append(float(result["loss"]))
        centres = {name: _gathered(loss.center) for name, loss in meta.dino.items()}
        banks = _gathered(meta.teacher["backbone"].geo.bank)
        if rank == 0:
            torch.save({"centres": centres, "banks": banks, "bank_before": bank, "losses": losses}, out)
    finally:
        dist.destroy_process_group()


def test_processes_with_different_modalities_stay_in_step(tmp_path: Path) -> None:
    out = tmp_path / "result.pt"
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(out)), nprocs=2, join=True)
    result = torch.load(out)
    assert all(math.isfinite(loss) for loss in result["losses"])
    for name, (first, second) in result["centres"].items():
        assert torch.equal(first, second), name
    # heads that only one process used still moved (its statistics reached both), and heads no one used did not
    assert result["centres"]["hr_image"][0].any() and result["centres"]["s1_image"][0].any()
    first, second = result["banks"]
    assert torch.equal(first, second) and not torch.equal(first, result["bank_before"])
