"""Regional compilation: ``torch.compile`` on every transformer block's forward, not on the whole model.

Why by hand: torch has the compiler but no notion of which of our modules are the repeated blocks. Compiling the
blocks one by one (the regional compilation of PyTorch's tutorials and of torchtitan) gives one graph per kind of
block, shared by all its instances, so the 24 to 48 blocks of a paper-size encoder cost one compilation each kind;
the model's data-dependent control flow (which modalities and frames a batch holds) stays in eager Python, where a
whole-model compile would break its graph or recompile per batch layout. Each block's elementwise work (norms,
cosine attention's normalisation, the position-bias MLP, activations) becomes a few fused kernels instead of tens
of launches, which is what a GPU step at a small per-device batch is bound by (issue 15).

The compiled function replaces the block's ``forward`` attribute on the instance: module hooks (FSDP2's parameter
all-gather, activation checkpointing's wrapper) keep running eagerly around it, so the call works before or after
``fully_shard``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from skysense.layers.transformer import Block
from skysense.models.swin_v2 import SwinTransformerV2Block

BLOCK_TYPES: tuple[type[nn.Module], ...] = (Block, SwinTransformerV2Block)
RECOMPILE_LIMIT = 64  # graphs per kind of block (dynamo's default is 8)


def compile_blocks(module: nn.Module, **options: Any) -> int:
    """Compile the forward of every transformer block inside ``module`` (idempotent).

    Args:
        module: any module holding SkySense blocks (an encoder, :class:`~skysense.models.skysense.SkySense`, a
            task or the pretraining meta-architecture).
        **options: ``torch.compile`` options (``mode``, ``backend``, ...). ``dynamic`` defaults to False: one
            graph per input shape. Activation checkpointing recomputes a block's forward in the backward, and with
            automatic dynamic shapes a second shape turns the graph dynamic, so the recomputation could run another
            graph than the forward did and torch.utils.checkpoint refuses the step (pytorch/pytorch#166926).

    Returns:
        The number of blocks newly compiled.
    """
    options.setdefault("dynamic", False)
    # Every instance of a kind of block shares one code object, and so dynamo's recompile limit (8 graphs): a paper
    # Swin V2-H needs one graph per stage × shifted or not × input size, and past the limit the blocks ran eagerly
    # (the GPU check's compiled forward, issue 15).
    for name in ("recompile_limit", "cache_size_limit"):  # the name since torch 2.6, and before
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), RECOMPILE_LIMIT))
            break
    count = 0
    for block in module.modules():
        if isinstance(block, BLOCK_TYPES) and "forward" not in vars(block):
            block.forward = torch.compile(block.forward, **options)
            count += 1
    return count
