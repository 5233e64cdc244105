"""Sentinel-2 / Sentinel-1 spatial encoders of SkySense (Guo et al., CVPR 2024, Sec. 3.1 "Factorized multi-modal
spatiotemporal encoder"): a plain ViT (Dosovitskiy et al., ICLR 2021) with patch 4 and a learned position
embedding, applied frame by frame, followed by an up-sampling head (1×1 conv + PixelShuffle) that brings its
16×16 token map (for a 64×64 tile) back onto the shared 64×64 grid of the HR encoder's last stage.

Parameter names follow timm's ``VisionTransformer`` so that timm weights load as they are; the official SkySense
(mmseg) names are mapped by :func:`convert_official_vit_state_dict`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import resample_abs_pos_embed, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from skysense.layers.transformer import build_blocks, init_linear_weights
from skysense.models.base import Encoder, FeatureInfo, resolve_indices


@dataclass
class ViTConfig:
    """Configuration of a Sentinel ViT encoder."""

    in_chans: int = 10  # 10 for Sentinel-2 (B2..B12 without B1, B9, B10), 2 for Sentinel-1 (VV, VH)
    img_size: int = 64  # size the position embedding was learned at; other sizes interpolate it
    patch_size: int = 4
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.3
    class_token: bool = True  # a cls token is kept (the official weights have one) but not output
    final_norm: bool = True  # LayerNorm on the last block's output only (mmseg's ``final_norm``)
    out_indices: tuple[int, ...] = (-1,)  # which blocks forward() returns, as NCHW maps
    fused_attn: bool = True
    norm_eps: float = 1e-6  # timm uses 1e-6; the official mmseg weights were trained with 1e-5
    pos_embed_interpolation: str = "bicubic"
    # Antialiased resizing of the position embedding to another grid (timm's default) or plain F.interpolate (False:
    # mmseg's, the official SkySense code's; bicubic then uses the a = -0.75 kernel, antialiasing uses a = -0.5, so the
    # two differ even when upsampling). False gives the official outputs on every grid (scripts/official_parity.py).
    pos_embed_antialias: bool = False


class PatchEmbed(nn.Module):
    """Non-overlapping patches: (B, C, H, W) → (B, H/p · W/p, D)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)  # (B, D, h, w)
        grid = (x.shape[-2], x.shape[-1])
        return rearrange(x, "b d h w -> b (h w) d"), grid


class VisionTransformer(Encoder):
    """ViT encoder for one Sentinel modality, (B, C, H, W) → maps (B, D, H/p, W/p)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_size)
        self.base_grid = cfg.img_size // cfg.patch_size
        num_prefix = 1 if cfg.class_token else 0
        self.num_prefix_tokens = num_prefix
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_prefix + self.base_grid**2, cfg.embed_dim))
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
        self.feature_info = [FeatureInfo(cfg.embed_dim, cfg.patch_size, f"blocks.{i}") for i in range(cfg.depth)]
        self.out_indices = resolve_indices(cfg.out_indices, cfg.depth)
        if not self.pos_embed.is_meta:
            self.init_weights()

    def init_weights(self) -> None:
        """timm's default ViT init: truncated normal for tokens and linear layers, zero biases."""
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        init_linear_weights(self)

    def _pos_embed(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Prepend the cls token and add the position embedding, interpolated if the grid differs."""
        pos_embed = self.pos_embed
        if grid != (self.base_grid, self.base_grid):
            pos_embed = resample_abs_pos_embed(
                pos_embed,
                new_size=list(grid),
                old_size=[self.base_grid, self.base_grid],
                num_prefix_tokens=self.num_prefix_tokens,
                interpolation=self.config.pos_embed_interpolation,
                antialias=self.config.pos_embed_antialias,
            )
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        return x + pos_embed

    def forward_maps(self, x: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """Token maps of the selected blocks.

        Args:
            x: (B, in_chans, H, W), H and W multiples of the patch size.
            indices: blocks to return (negative from the end); default ``cfg.out_indices``.

        Returns:
            One (B, D, H/p, W/p) map per index; the last block's output has the final norm applied.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected input (B, {self.config.in_chans}, H, W), got shape {tuple(x.shape)}")
        p = self.config.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of the patch size {p}")
        wanted = self.out_indices if indices is None else resolve_indices(indices, len(self.blocks))
        tokens, grid = self.patch_embed(x)
        tokens = self._pos_embed(tokens, grid)
        outputs = []
        last = max(wanted)
        for i, block in enumerate(self.blocks[: last + 1]):
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
            if i in wanted:
                out = self.norm(tokens) if i == len(self.blocks) - 1 else tokens
                out = out[:, self.num_prefix_tokens :]
                outputs.append(rearrange(out, "b (h w) d -> b d h w", h=grid[0], w=grid[1]))
        return outputs


@dataclass
class UpsampleHeadConfig:
    """1×1 conv to ``out_dim · scale²`` channels, then PixelShuffle(scale)."""

    in_dim: int = 1024
    out_dim: int = 2816  # the HR encoder's last-stage width, so that all modalities share one feature space
    scale: int = 4  # the ViT's patch size: one output pixel per Sentinel pixel


class UpsampleHead(nn.Module):
    """(B, in_dim, h, w) → (B, out_dim, h·scale, w·scale)."""

    def __init__(self, cfg: UpsampleHeadConfig) -> None:
        super().__init__()
        self.config = cfg
        self.conv = nn.Conv2d(cfg.in_dim, cfg.out_dim * cfg.scale**2, kernel_size=1)
        self.shuffle = nn.PixelShuffle(cfg.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


# an mmseg/mmcv ``TransformerEncoderLayer`` (pre-norm, nn.MultiheadAttention) → our Block; shared with the fusion
MMSEG_LAYER_RULES = [
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attn\.attn\.in_proj_weight$", r"blocks.\1.attn.qkv.weight"),
    (r"^layers\.(\d+)\.attn\.attn\.in_proj_bias$", r"blocks.\1.attn.qkv.bias"),
    (r"^layers\.(\d+)\.attn\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
]

_OFFICIAL_VIT_RULES = [
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    *MMSEG_LAYER_RULES,
    (r"^ln1\.", "norm."),
    (r"^cls_token$", "cls_token"),
    (r"^pos_embed$", "pos_embed"),
]


def rename_by_rules(
    state_dict: dict[str, torch.Tensor], rules: list[tuple[str, str]], what: str, drop: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Rename keys with the first matching regex rule; raise a KeyError listing every key no rule matches."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key in drop:
            continue
        for pattern, replacement in rules:
            if re.search(pattern, key):
                out[re.sub(pattern, replacement, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{what}: {len(unknown)} checkpoint keys have no mapping: {sorted(unknown)}")
    return out


def convert_official_vit_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official SkySense Sentinel ViT checkpoint (mmseg names) to :class:`VisionTransformer` names.

    mmseg's ``nn.MultiheadAttention`` packs q, k, v in ``in_proj_weight`` in the same (3·D, D) order as timm's
    ``qkv``, so tensors are copied unchanged.
    """
    return rename_by_rules(state_dict, _OFFICIAL_VIT_RULES, "official Sentinel ViT checkpoint")


def convert_official_upsample_head_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official up-sampling head file to :class:`UpsampleHead` names.

    The released head files hold a single 1×1 convolution whose module name is not documented; it is identified
    by shape: one 4-D weight (out·s², in, 1, 1) and one bias.
    """
    weights = {k: v for k, v in state_dict.items() if v.ndim == 4}
    biases = {k: v for k, v in state_dict.items() if v.ndim == 1}
    if len(weights) != 1 or len(biases) != 1 or len(state_dict) != 2:
        raise KeyError(
            "official up-sampling head checkpoint: expected one 1×1 conv weight and one bias, found keys "
            f"{sorted((k, tuple(v.shape)) for k, v in state_dict.items())}"
        )
    return {"conv.weight": next(iter(weights.values())), "conv.bias": next(iter(biases.values()))}


def interpolate_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of an NCHW map to ``size`` (no-op if already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
