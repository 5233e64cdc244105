"""Optimiser parameter groups and learning-rate schedules shared by every task.

- Weight decay: none for biases, norms and embeddings (1-D parameters, ``pos_embed``, ``cls_token``, the date
  encoding), as in timm and DINOv2.
- Layer-wise learning-rate decay (the paper fine-tunes with 0.9): parameter depth ``d`` out of ``D`` gets
  ``lr · decay^(D − d)``. Depth counts through the model the way features flow: patch embeddings are depth 0, each
  transformer block one more; the Sentinel encoders' blocks come before the fusion blocks, which come before the
  geo-context prototypes; the head (anything outside the backbone) is depth ``D`` (the full rate).
- Schedule: linear warm-up then cosine decay to zero, per optimiser step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "date_encoding")


def backbone_depths(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every parameter of a :class:`~skysense.models.skysense.SkySense`, and the number of depths D.

    Returns:
        (name → depth, D): names as in ``backbone.named_parameters()``.
    """
    names = [name for name, _ in backbone.named_parameters()]
    hr = getattr(backbone, "hr", None)
    hr_stage_start: list[int] = []
    if hr is not None:
        total = 0
        for depth in hr.config.depths:
            hr_stage_start.append(total)
            total += depth
        hr_blocks = total
    else:
        hr_blocks = 0
    sentinel_blocks = max(
        (len(module.blocks) for module in (getattr(backbone, "s2", None), getattr(backbone, "s1", None)) if module),
        default=0,
    )
    fusion = getattr(backbone, "fusion", None)
    fusion_blocks = len(fusion.blocks) if fusion is not None else 0
    fusion_start = sentinel_blocks + 1  # after the Sentinel encoders and their up-sampling heads
    geo_depth = fusion_start + fusion_blocks
    total_depth = max(hr_blocks + 1, geo_depth + 1)

    def depth_of(name: str) -> int:
        if name.startswith("hr."):
            if match := re.match(r"hr\.layers\.(\d+)\.blocks\.(\d+)\.", name):
                return 1 + hr_stage_start[int(match[1])] + int(match[2])
            if match := re.match(r"hr\.layers\.(\d+)\.downsample\.", name):
                return 1 + hr_stage_start[int(match[1])]
            return 0 if name.startswith("hr.patch_embed") else hr_blocks  # output norms: after the last block
        if name.startswith(("s2.", "s1.")):
            if match := re.match(r"s[12]\.blocks\.(\d+)\.", name):
                return 1 + int(match[1])
            return (
                0
                if name.startswith(("s2.patch_embed", "s1.patch_embed", "s2.pos", "s1.pos", "s2.cls", "s1.cls"))
                else sentinel_blocks
            )
        if name.startswith(("s2_head.", "s1_head.")):
            return sentinel_blocks
        if name.startswith("fusion."):
            if match := re.match(r"fusion\.blocks\.(\d+)\.", name):
                return fusion_start + int(match[1])
            return fusion_start
        if name.startswith("geo."):
            return geo_depth
        raise ValueError(f"no depth rule for backbone parameter {name!r}")

    return {name: depth_of(name) for name in names}, total_depth


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float = 1.0,
    backbone_prefix: str = "backbone.",
    prefix_scales: Mapping[str, float] | None = None,
) -> list[dict]:
    """AdamW groups: (decay or not) × (learning-rate scale), for trainable parameters only.

    Args:
        model: the task's module; its backbone lives under ``backbone_prefix``.
        weight_decay: for weights (not biases, norms, embeddings).
        layer_decay: layer-wise learning-rate decay (1 = off).
        backbone_prefix: where the backbone's parameters are named.
        prefix_scales: a further learning-rate factor for the parameters whose names start with a key (e.g.
            ``{"heads.": 10.0}``: randomly initialised heads learning faster than the encoder below them).

    Returns:
        groups with "params", "weight_decay" and "lr_scale" (multiply the base rate by it).
    """
    depths: dict[str, int] = {}
    total = 0
    backbone = model.get_submodule(backbone_prefix.rstrip(".")) if backbone_prefix else None
    if backbone is not None and layer_decay != 1.0:
        depths, total = backbone_depths(backbone)
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = parameter.ndim > 1 and not any(key in name for key in NO_DECAY_NAMES)
        scale = 1.0
        if name.startswith(backbone_prefix) and depths:
            scale = layer_decay ** (total - depths[name[len(backbone_prefix) :]])
        for prefix, factor in (prefix_scales or {}).items():
            if name.startswith(prefix):
                scale *= factor
        groups.setdefault((decay, scale), []).append(parameter)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
        for (decay, scale), params in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0]))
    ]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Multiplier for ``LambdaLR``: linear warm-up over ``warmup_steps``, then cosine to zero at ``total_steps``."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))))

    return schedule


def adamw_with_schedule(
    groups: Iterable[dict], lr: float, total_steps: float, warmup_steps: int, fused: bool = False
) -> dict:
    """AdamW over ``groups`` (each scaled by its "lr_scale") with :func:`warmup_cosine`, as Lightning's
    ``configure_optimizers`` returns it (stepped every optimiser step); ``fused``: torch's fused AdamW kernels."""
    groups = [dict(group, lr=lr * group.get("lr_scale", 1.0)) for group in groups]
    optimizer = torch.optim.AdamW(groups, lr=lr, fused=True) if fused else torch.optim.AdamW(groups, lr=lr)
    total = int(total_steps) if math.isfinite(total_steps) else 10_000
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def initialize_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Create Adam/AdamW's per-parameter state (step 0, zero moments) for every parameter now, exactly as the
    optimiser's first step would, so that the update is unchanged.

    A distributed checkpoint (``ModelParallelStrategy(save_distributed_checkpoint=True)``) loads the optimiser state
    key by key into the state of the freshly built optimiser, which torch fills for every parameter; a parameter that
    never had a gradient before the save (an HR output norm that pretraining does not use, a modality no source has
    yet given) would have no saved state and the resume would fail ("Missing key in checkpoint state_dict:
    optimizer_0.state.<name>.step").
    """
    if not isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        raise TypeError(f"expected Adam or AdamW, got {type(optimizer).__name__}")
    scalar_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    for group in optimizer.param_groups:
        on_device = group.get("capturable", False) or group.get("fused", False)
        for parameter in group["params"]:
            state = optimizer.state[parameter]
            if state:
                continue
            step = torch.zeros((), dtype=scalar_dtype, device=parameter.device) if on_device else torch.tensor(0.0)
            state["step"] = step.to(scalar_dtype)
            state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            if group.get("amsgrad", False):
                state["max_exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
