"""Reference modules built from torch's own layers, to check our weight mappings against (not our code)."""

import torch
from torch import nn


class MmsegLayer(nn.Module):
    """The structure of an mmseg ``TransformerEncoderLayer`` (pre-norm), built from torch's nn.MultiheadAttention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU()), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn.attn(h, h, h, need_weights=False)[0]
        return x + self.ffn.layers(self.ln2(x))
