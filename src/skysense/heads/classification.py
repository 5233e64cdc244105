"""Classification heads: tokens of one location set → class logits.

Both read tokens (B, N, C) with an optional validity mask (B, N) — grid locations of a feature map, or
locations × valid frames of a time series — so that padded frames and missing pixels never count:

- :class:`LinearHead`: masked mean pooling, LayerNorm, Linear (the linear probe);
- :class:`AttentiveHead`: learned queries cross-attend to the tokens (the attentive probe of V-JEPA / DINOv2's
  evaluations), then LayerNorm and Linear. Stronger than mean pooling when the class depends on a part of the scene.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(tokens: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B, N, ...) tokens (e.g. (B, N, C) or per-frame maps (B, T, C, h, w)), (B, N) bool → (B, ...) mean over the
    valid entries of axis 1 (all when ``valid`` is None)."""
    if valid is None:
        return tokens.mean(dim=1)
    weights = valid.to(tokens.dtype).reshape(*valid.shape, *[1] * (tokens.ndim - valid.ndim))  # (B, N, 1, ...)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class LinearHead(nn.Module):
    """Masked mean pool → LayerNorm → dropout → Linear.

    Args:
        in_dim: token channels C.
        num_classes: output logits K.
        dropout: before the linear layer.
    """

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, C) tokens, (B, N) validity → (B, K) logits."""
        return self.fc(self.dropout(self.norm(masked_mean(tokens, valid))))


class AttentiveHead(nn.Module):
    """``num_queries`` learned queries attend over the tokens (one multi-head cross-attention), are averaged, then
    LayerNorm → Linear.

    Args:
        in_dim: token channels C (divisible by ``num_heads``).
        num_classes: output logits K.
        num_heads: attention heads.
        num_queries: learned queries.
        dropout: before the linear layer.
    """

    def __init__(
        self, in_dim: int, num_classes: int, num_heads: int = 4, num_queries: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if in_dim % num_heads:
            raise ValueError(f"in_dim {in_dim} must be divisible by num_heads {num_heads}")
        self.queries = nn.Parameter(torch.zeros(1, num_queries, in_dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.norm_tokens = nn.LayerNorm(in_dim)
        self.attention = nn.MultiheadAttention(in_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(in_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, C) tokens, (B, N) validity → (B, K) logits."""
        batch = tokens.shape[0]
        keys = self.norm_tokens(tokens)
        padding = None if valid is None else ~valid  # True = ignore
        if padding is not None and padding.all(dim=1).any():
            raise ValueError("a sample has no valid token to attend to")
        pooled, _ = self.attention(
            self.queries.expand(batch, -1, -1), keys, keys, key_padding_mask=padding, need_weights=False
        )  # (B, Q, C)
        return self.fc(self.dropout(self.norm(pooled.mean(dim=1))))


def build_classification_head(kind: str, in_dim: int, num_classes: int, **kwargs: object) -> nn.Module:
    """``kind`` "linear" or "attentive"."""
    heads = {"linear": LinearHead, "attentive": AttentiveHead}
    if kind not in heads:
        raise ValueError(f"unknown head {kind!r}; choose one of {sorted(heads)}")
    return heads[kind](in_dim, num_classes, **kwargs)
