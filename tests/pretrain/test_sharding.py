"""FSDP2 (``fully_shard``, the calls that ``PretrainTask.configure_model`` makes under ModelParallelStrategy) on 1 and
2 CPU processes (gloo), ``reshard_after_forward=True``, activation checkpointing on: two training steps match an
unsharded copy of the same model step for step (losses, every gradient, the SGD update, the EMA teacher, the prototype
bank and the DINO centres), and every FSDP unit returns its outputs in containers that ``torch.utils._pytree`` opens.

The last check is what torch < 2.12 needs: its FSDP2 finds a unit's outputs with ``tree_flatten`` to register the
pre-backward hook that gathers the unit's parameters again for the backward. An output it cannot open (a dataclass
not registered with pytree) leaves those parameters freed, and the backward fails on the GPU with "The tensor has a
non-zero number of elements, but its data is not allocated yet" (issue 15). Newer torch also opens dataclasses, so on
it the steps succeed either way: the check states the contract for every torch version that pyproject allows.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils._pytree import tree_flatten

from skysense import SkySenseInput, create_model, get_config
from skysense.pretrain.meta_arch import SSLMetaArch
from skysense.pretrain.sharding import shard_meta_arch

STEPS = 2


def _views() -> tuple[SkySenseInput, SkySenseInput]:
    """Two views of 2 samples: HR 128², S2 3 frames (one padded), S1 2 frames, on a 4 × 4 grid, with coordinates."""
    generator = torch.Generator().manual_seed(0)
    base = SkySenseInput(
        hr=torch.randn(2, 3, 128, 128, generator=generator),
        s2=torch.randn(2, 3, 10, 4, 4, generator=generator),
        s2_day_of_year=torch.randint(0, 365, (2, 3), generator=generator),
        s2_valid=torch.tensor([[True, True, True], [True, True, False]]),
        s1=torch.randn(2, 2, 2, 4, 4, generator=generator),
        s1_day_of_year=torch.randint(0, 365, (2, 2), generator=generator),
        lat=torch.tensor([45.0, -12.0]),
        lon=torch.tensor([7.0, 130.0]),
    )
    return base, dataclasses.replace(base, hr=base.hr * 1.1 + 0.1, s2=base.s2 + 0.05)


def _grad_tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor requiring grad in ``value``, opening tuples, lists, dicts and dataclasses."""
    if isinstance(value, torch.Tensor):
        return [value] if value.requires_grad else []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [t for f in dataclasses.fields(value) for t in _grad_tensors(getattr(value, f.name))]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for item in value for t in _grad_tensors(item)]
    return []


def _full(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """The whole tensor of an FSDP2 (DTensor) shard; a collective, so every process calls it in the same order."""
    if tensor is None:
        return None
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _meta_arch_pair() -> tuple[SSLMetaArch, SSLMetaArch]:
    """The tiny preset's meta-architecture in training mode with activation checkpointing, and an exact copy (the
    unsharded reference)."""
    torch.manual_seed(0)
    backbone = create_model("tiny")
    backbone.set_grad_checkpointing(True)
    model = SSLMetaArch(backbone, get_config("tiny").projection).train()
    return model, copy.deepcopy(model)


def _worker(rank: int, world_size: int, init_file: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        sharded, reference = _meta_arch_pair()
        shard_meta_arch(sharded, init_device_mesh("cpu", (world_size,)), reshard_after_forward=True)

        hidden: set[str] = set()  # FSDP units whose grad-requiring outputs tree_flatten does not see

        def check_outputs(module: torch.nn.Module, args: Any, output: Any) -> None:
            flat = {id(t) for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)}
            if any(id(t) not in flat for t in _grad_tensors(output)):
                hidden.add(f"{type(module).__name__} returns {type(output).__name__}")

        units = [m for m in sharded.modules() if isinstance(m, FSDPModule)]
        assert len(units) > 10
        for unit in units:
            unit.register_forward_hook(check_outputs)

        optimizers = [torch.optim.SGD(m.student.parameters(), lr=0.5) for m in (reference, sharded)]
        views = _views()
        for step in range(STEPS):
            losses = []
            for model in (reference, sharded):
                torch.manual_seed(step)  # the same location sampling and stochastic depth in both
                out = model(views)
                out["loss"].backward()
                losses.append(out["loss"].detach())
            torch.testing.assert_close(losses[1], losses[0], msg=f"loss at step {step}")
            for (name, expected), actual in zip(
                reference.student.named_parameters(), sharded.student.parameters(), strict=True
            ):
                assert (expected.grad is None) == (actual.grad is None), (step, name)
                if expected.grad is not None:
                    torch.testing.assert_close(_full(actual.grad), expected.grad, atol=1e-5, rtol=1e-4, msg=name)
            for model, optimizer in zip((reference, sharded), optimizers, strict=True):
                optimizer.step()
                optimizer.zero_grad()
                model.finish_step()
                model.update_teacher(0.9)
        assert not hidden, f"FSDP units with outputs that torch.utils._pytree cannot open: {sorted(hidden)}"
        for (name, expected), actual in zip(reference.state_dict().items(), sharded.state_dict().values(), strict=True):
            torch.testing.assert_close(_full(actual), expected, atol=1e-5, rtol=1e-4, msg=name)
        teacher_bank = sharded.teacher["backbone"].geo.bank
        assert torch.equal(teacher_bank, sharded.student["backbone"].geo.bank)
        if world_size > 1:  # in the same processes: spawning them again costs CI a quarter of a minute
            _check_bf16_parameters(world_size)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [1, 2])
def test_sharded_steps_match_the_unsharded_model(world_size: int, tmp_path: Path) -> None:
    """The steps above; with 2 processes also :func:`_check_bf16_parameters`."""
    mp.spawn(_worker, args=(world_size, str(tmp_path / "rendezvous")), nprocs=world_size, join=True)


def _check_bf16_parameters(world_size: int) -> None:
    """bf16 gathered parameters (``param_dtype``) under bf16 autocast: the step's loss and gradients stay those of the
    float32 model under the same autocast (to bf16 rounding), while shards, gradients and the teacher stay float32."""
    from torch.distributed.device_mesh import init_device_mesh

    sharded, reference = _meta_arch_pair()
    views = _views()
    views = (dataclasses.replace(views[0], lat=views[0].lat + 0.123), views[1])
    shard_meta_arch(sharded, init_device_mesh("cpu", (world_size,)), param_dtype=torch.bfloat16)
    seen: set[torch.dtype] = set()  # the dtype of the linear layers' weights while they compute
    for module in sharded.student.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(lambda m, args: seen.add(m.weight.dtype))
    losses = []
    for model in (reference, sharded):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(views)
        out["loss"].backward()
        losses.append(out["loss"].detach().float())
    torch.testing.assert_close(losses[1], losses[0], atol=0.05, rtol=0.02)
    assert seen == {torch.bfloat16}
    compared = 0
    for (name, expected), actual in zip(
        reference.student.named_parameters(), sharded.student.parameters(), strict=True
    ):
        assert actual.dtype == torch.float32, name  # the shards the optimiser steps
        if expected.grad is None or expected.grad.abs().max() < 1e-3:
            continue
        grad = _full(actual.grad)
        assert grad.dtype == torch.float32, name  # reduced in float32
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), expected.grad.flatten(), dim=0)
        assert cosine > 0.95, (name, float(cosine))
        compared += 1
    assert compared > 20
    sharded.update_teacher(0.9)
    assert all(p.dtype == torch.float32 for p in sharded.teacher.parameters())
