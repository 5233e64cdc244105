"""Pre-norm transformer block (ViT), shared by the Sentinel encoders and the temporal fusion.

Names match timm's ``Block`` (``norm1``, ``attn``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``) so that timm weights load
unchanged; the official SkySense (mmseg) names are mapped in :mod:`skysense.models.weights`.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath as _TimmDropPath
from timm.layers import Mlp
from torch import nn

from skysense.layers.attention import Attention


class DropPath(_TimmDropPath):
    """timm's stochastic depth, asking whether it is training before reading its rate: torch.compile then shares one
    graph between blocks of different rates in inference (timm tests the rate first, so the compiler guards on each
    block's rate and recompiles per block until its recompile limit, after which blocks run eagerly)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return super().forward(x)


class Block(nn.Module):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))); (B, N, C) → (B, N, C)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        fused_attn: bool = True,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop, fused_attn)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (B, N, C); key_valid optional (B, N) bool, False = padding. Returns (B, N, C)."""
        x = x + self.drop_path1(self.attn(self.norm1(x), key_valid))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def build_blocks(
    dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    drop_path_rate: float = 0.0,
    fused_attn: bool = True,
    norm_eps: float = 1e-6,
) -> nn.ModuleList:
    """``depth`` pre-norm blocks with stochastic depth rising linearly from 0 to ``drop_path_rate``."""
    drop_path = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio, qkv_bias, drop_path=drop_path[i], fused_attn=fused_attn, norm_eps=norm_eps)
        for i in range(depth)
    )


def init_linear_weights(module: nn.Module) -> None:
    """timm's ViT init for every Linear inside ``module``: truncated normal (std 0.02) weights, zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
