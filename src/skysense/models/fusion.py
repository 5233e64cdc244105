"""Multi-modal temporal fusion of SkySense (Guo et al., CVPR 2024, Sec. 3.1): for every location of the shared
grid, the sequence [HR token, S2 frame tokens…, S1 frame tokens…] gets a day-of-year encoding, is projected from
the spatial-feature width (2816) to the fusion width (1024), an extra (cls) token is prepended, and a transformer
runs over time. The extra token's output is the fused feature of that location.

Padding: sequences of a batch have different numbers of valid frames; padded tokens are excluded as attention
keys, so a padded batch gives exactly the result of the same samples run one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from skysense.containers import NUM_DAYS
from skysense.layers.date_encoding import DayOfYearEncoding
from skysense.layers.transformer import build_blocks, init_linear_weights
from skysense.models.vit import MMSEG_LAYER_RULES, rename_by_rules


@dataclass
class FusionConfig:
    """Configuration of the temporal fusion transformer."""

    in_dim: int = 2816  # width of the spatial features on the shared grid (HR last stage, up-sampling heads)
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    num_days: int = NUM_DAYS
    final_norm: bool = False  # the official fusion has no output norm
    fused_attn: bool = True
    norm_eps: float = 1e-5  # mmseg LayerNorm default, as in the official weights


class TemporalFusion(nn.Module):
    """Transformer over time per location: (N, L, in_dim) → (N, embed_dim)."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.config = cfg
        self.date_encoding = DayOfYearEncoding(cfg.in_dim, cfg.num_days)
        self.proj = nn.Linear(cfg.in_dim, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.blocks = build_blocks(
            cfg.embed_dim,
            cfg.depth,
            cfg.num_heads,
            cfg.mlp_ratio,
            cfg.qkv_bias,
            cfg.drop_path_rate,
            cfg.fused_attn,
            cfg.norm_eps,
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if cfg.final_norm else nn.Identity()
        self.grad_checkpointing = False
        if not self.cls_token.is_meta:
            trunc_normal_(self.cls_token, std=0.02)
            init_linear_weights(self)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(
        self, tokens: torch.Tensor, day_of_year: torch.Tensor | None, valid: torch.Tensor, dated: bool = False
    ) -> torch.Tensor:
        """Fuse each location's sequence.

        Args:
            tokens: (N, L, in_dim) spatial features of the L time steps (all modalities) of N locations.
            day_of_year: (N, L) int64 calendar-day index, -1 for tokens without a date (unused when ``dated``).
            valid: (N, L) bool, False for padded or missing tokens (never attended to).
            dated: the tokens already hold their date encoding (``self.date_encoding`` applied by the caller, as
                :class:`~skysense.models.skysense.SkySense` does while laying the tokens out per location, with one
                row of days per sample instead of one per location).

        Returns:
            (N, embed_dim): the extra token's output.
        """
        x = self.proj(tokens if dated else self.date_encoding(tokens, day_of_year))  # (N, L, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (N, 1 + L, D)
        key_valid = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)  # the extra token is always valid
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, key_valid, use_reentrant=False)
            else:
                x = block(x, key_valid)
        return self.norm(x[:, 0])


_OFFICIAL_FUSION_RULES = [
    (r"^porj_linear\.", "proj."),
    (r"^ctpe$", "date_encoding.weight"),
    (r"^cls_token$", "cls_token"),
    *MMSEG_LAYER_RULES,
]


def convert_official_fusion_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the official ``skysense_model_fusion.pth`` names (mmseg ``TransformerEncoder``: ``porj_linear`` (sic),
    ``cls_token``, ``layers.{i}``; the day-of-year table ``ctpe``) onto :class:`TemporalFusion`."""
    return rename_by_rules(state_dict, _OFFICIAL_FUSION_RULES, "official fusion checkpoint")
