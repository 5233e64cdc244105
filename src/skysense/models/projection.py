"""Pretraining projection heads (SkySense's "others, ~189 M" parameters; their form is not published).

Our choice (docs/model.md): DINOv2-style heads — an MLP in → hidden → hidden → bottleneck with GELU, then a
weight-normalised linear layer from the L2-normalised bottleneck to ``num_prototypes`` logits. Each feature source
(HR, S2, S1 spatial features, and the fused concat[F, F_geo]) gets two heads, one for the image level and one shared by the pixel and object levels (DINOv2
keeps separate DINO and iBOT heads the same way). With hidden 2048, bottleneck 256 and 53,248 prototypes (a count chosen
so that the total matches the paper's ~189 M) this is 190.25 M parameters at paper size. The heads belong to the pretraining meta-architecture, not to the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class ProjectionHeadsConfig:
    """Which projection heads pretraining builds, and their sizes."""

    # HR, S2 and S1 spatial features live on the grid at 2816; "fused" is concat[F, F_geo] = 2 × 1024
    source_dims: dict[str, int] = field(default_factory=lambda: {"hr": 2816, "s2": 2816, "s1": 2816, "fused": 2048})
    levels: tuple[str, ...] = ("image", "dense")  # one head per level and source
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_prototypes: int = 53248


class DINOHead(nn.Module):
    """(..., in_dim) → (..., num_prototypes) logits."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, num_prototypes: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, num_prototypes, bias=False))
        if not self.mlp[0].weight.is_meta:
            for module in self.mlp:
                if isinstance(module, nn.Linear):
                    trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
            with torch.no_grad():
                self.last_layer.parametrizations.weight.original0.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def build_projection_heads(cfg: ProjectionHeadsConfig) -> nn.ModuleDict:
    """One :class:`DINOHead` per (source, level), keyed ``"{source}_{level}"``."""
    return nn.ModuleDict(
        {
            f"{source}_{level}": DINOHead(in_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.num_prototypes)
            for source, in_dim in cfg.source_dims.items()
            for level in cfg.levels
        }
    )
