"""FSDP2 sharding of the pretraining meta-architecture (``torch.distributed.fsdp.fully_shard``).

Units: every transformer block (Swin V2, ViT, fusion), each backbone and each projection head, for the student and
the teacher alike (so that student and teacher shards pair up for the EMA update), then the meta-architecture as the
root. :class:`~skysense.tasks.pretrain.PretrainTask` applies it under Lightning's ``ModelParallelStrategy``; tests and
``benchmarks/gpu_check.py`` call it directly, so every path shards the same way.

FSDP2 frees a unit's gathered parameters after its forward (``reshard_after_forward=True``) and gathers them again
when the gradient of one of the unit's outputs arrives (the pre-backward hook). Torch < 2.12 finds those outputs with
``torch.utils._pytree.tree_flatten``: a unit must return tensors in containers that pytree can open. The backbone
returns a :class:`~skysense.batch.SkySenseOutput` dataclass, which :mod:`skysense.batch` registers with pytree for
that reason (without it the backbone's own parameters stay freed in the backward: "The tensor has a non-zero number
of elements, but its data is not allocated yet").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh


def fsdp_units(side: nn.ModuleDict) -> list[nn.Module]:
    """The modules of one side (student or teacher) that become FSDP units, innermost first.

    Args:
        side: ``{"backbone": SkySense, "heads": ModuleDict of DINOHead}``.
    """
    from skysense.layers.transformer import Block
    from skysense.models.projection import DINOHead
    from skysense.models.swin_v2 import SwinTransformerV2Block

    units = [m for m in side.modules() if isinstance(m, Block | SwinTransformerV2Block | DINOHead)]
    return [*units, side["backbone"]]


def shard_meta_arch(
    meta: nn.Module,
    mesh: DeviceMesh,
    reshard_after_forward: bool = True,
    param_dtype: torch.dtype | None = None,
) -> None:
    """Apply FSDP2 to the student, the teacher and the meta-architecture (the root), in place.

    Args:
        meta: an :class:`~skysense.pretrain.meta_arch.SSLMetaArch`.
        mesh: a one-dimensional data-parallel device mesh (every process holds one shard of every unit).
        reshard_after_forward: free each unit's gathered parameters after its forward (FSDP2's default, ZeRO-3);
            False keeps them to the backward (ZeRO-2: more memory, no second all-gather).
        param_dtype: dtype of the gathered (unsharded) parameters that forward and backward compute with, e.g.
            ``torch.bfloat16`` (FSDP2's ``MixedPrecisionPolicy``, as torchtitan trains): half the all-gather traffic
            and the gathered parameters' memory, and no per-layer casts under autocast. The sharded parameters, the
            optimiser state and the EMA teacher stay float32, and gradients are reduced in float32. Needs autocast
            (``bf16-mixed``): the units' inputs are not cast. None: compute with the parameters' own dtype.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if mesh.ndim != 1:
        raise ValueError(f"shard_meta_arch needs a one-dimensional data-parallel mesh, got {mesh.ndim} dimensions")
    # inputs are not cast: latitudes, longitudes and crop boxes in bfloat16 would be off by up to 0.25 degrees; the
    # autocast of a bf16-mixed run casts what the matmuls read
    policy = MixedPrecisionPolicy(
        param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None, cast_forward_inputs=False
    )
    # BatchNorms (the convolutional stem's) are units of their own that keep float32 parameters: the CPU kernel takes
    # a bfloat16 input with float32 weights and statistics, but not bfloat16 weights with float32 statistics
    # (the running statistics are buffers, which FSDP2 does not cast)
    norm_policy = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32, cast_forward_inputs=False)
    for side in (meta.student, meta.teacher):
        if param_dtype is not None and param_dtype != torch.float32:
            for module in side.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    fully_shard(module, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=norm_policy)
        for unit in fsdp_units(side):
            fully_shard(unit, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    # the root: the backbones and heads then reshard after their forward (a root keeps its parameters gathered
    # for the backward, which the teacher never runs)
    fully_shard(meta, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
