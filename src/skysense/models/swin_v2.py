"""Swin Transformer V2: the high-resolution (HR) optical encoder of SkySense.

SkySense (Guo et al., *SkySense: A Multi-Modal Remote Sensing Foundation Model Towards Universal Interpretation for
Earth Observation Imagery*, CVPR 2024, arXiv 2312.10115) encodes the static very-high-resolution optical image (RGB or
RGB+NIR) with a Swin Transformer V2-Huge, the spatial encoder of its HR branch. Swin V2 is Liu et al., *Swin
Transformer V2: Scaling Up Capacity and Resolution*, CVPR 2022, arXiv 2111.09883: post-norm residual blocks, scaled
cosine attention, and a log-spaced continuous position bias (a small MLP on relative coordinates).

The file reads top to bottom: config, window geometry (window ops are in skysense.layers.window), attention, block,
patch embedding and merging, stage, encoder,
and the two weight converters (official SkySense / mmpretrain names, and timm names).

Parameter names follow timm's ``swin_transformer_v2`` (``layers.{s}.blocks.{b}.attn.qkv`` ...), so that a timm
state dict loads after :func:`convert_timm_swinv2_state_dict` (which only drops buffers and the head and renames the
final norm). Our additions: ``layers.{s}.blocks.{b}.norm3`` (the extra norm of SwinV2-Huge/Giant) and ``norms.{i}``,
an output LayerNorm per selected stage (the official checkpoint carries ``norm3`` only).

Windows. Where a stage's map is not larger than the window along a side, the window is shrunk to the map along that
side and that side is not shifted: timm's rule, applied per side. The original Swin V2 code instead shrinks both sides
to the shorter one, and mmpretrain (the official SkySense code) keeps the window, skips the shift when the shorter
side equals it and refuses smaller maps (or pads them, with ``pad_small_map``); the three agree on square maps that
are not smaller than the window. Maps that are larger than the
window but not a multiple of it are zero-padded at the bottom/right. ``pad_before_shift=True`` (the default) pads
before the cyclic shift, as mmpretrain does, so that the shift mask separates exactly the tokens that were not
neighbours; ``False`` pads after it, as timm does. The two agree when every map is a window multiple (or not larger
than the window), e.g. for square inputs that are multiples of 256 pixels with patch 4 and window 8; they differ for,
say, 800x800 inputs (maps 50 and 25 with window 8).
The relative-coordinate table, index and shift mask are small and are computed on the fly for the actual window, so
nothing but parameters is stored and the model builds on the meta device.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from skysense.layers.transformer import DropPath
from skysense.layers.window import (
    log_spaced_coords_table,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from skysense.models.base import Encoder, FeatureInfo, resolve_indices

__all__ = [
    "SwinV2Config",
    "SwinTransformerV2",
    "convert_official_hr_state_dict",
    "convert_timm_swinv2_state_dict",
    "official_hr_config_overrides",
]


# ----------------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class SwinV2Config:
    """Architecture of a Swin V2 encoder. Defaults are SwinV2-Tiny with window 8; SkySense's is SwinV2-Huge."""

    in_chans: int = 3  # input bands: 3 = R, G, B; 4 = R, G, B, NIR
    patch_size: int = 4  # side of the square patch embedded as one token (stage 0 stride)
    embed_dim: int = 96  # channels of stage 0; stage i has embed_dim * 2**i
    depths: tuple[int, ...] = (2, 2, 6, 2)  # blocks per stage
    num_heads: tuple[int, ...] = (3, 6, 12, 24)  # attention heads per stage
    window_size: int = 8  # attention window side in tokens, the same for every stage
    mlp_ratio: float = 4.0  # MLP hidden width / block width
    qkv_bias: bool = True  # learned q and v biases (the k bias is always zero in Swin V2)
    drop_path_rate: float = 0.1  # stochastic depth of the last block; rises linearly from 0 over all blocks
    # Extra LayerNorm ``norm3`` at the end of every n-th block of a stage (blocks n-1, 2n-1, ...); 0 = none.
    # SwinV2-Huge/Giant and SkySense use 6, which puts it in blocks 5, 11, 17 of the 18-block stage 2.
    extra_norm_period: int = 0
    # Window size the cpb MLP was pretrained with, per stage: the relative coordinates are divided by
    # (pretrained_window_size - 1) if > 0, else by (actual window - 1), before the log spacing.
    pretrained_window_sizes: tuple[int, ...] = (0, 0, 0, 0)
    out_indices: tuple[int, ...] = (0, 1, 2, 3)  # stages returned by forward() / forward_maps(indices=None)
    # Stages whose output gets a LayerNorm ``norms.{i}`` before being returned. The released SkySense checkpoint has
    # stage 3's only; the others then start freshly initialised, so keep (3,) to use the released weights as they are.
    output_norm_indices: tuple[int, ...] = (0, 1, 2, 3)
    # Pad maps to window multiples before the cyclic shift (mmpretrain, the official SkySense code) or after it (timm,
    # needed for exact parity with timm weights). Identical when every stage's map is a window multiple.
    pad_before_shift: bool = True
    # Attention path: F.scaled_dot_product_attention with the position bias (+ shift mask) as a float mask (True),
    # the explicit softmax (False), or None: per device — explicit on CUDA, where a float mask sends SDPA to a slower
    # kernel than the explicit path at window 8 (issue 15: 0.87× timm's explicit path on an H100), SDPA elsewhere
    # (on CPU it is the faster one). Both compute the same attention (tests/models/test_swin_v2.py).
    fused_attn: bool | None = None
    norm_eps: float = 1e-5  # epsilon of every LayerNorm (torch's default, as in timm and mmpretrain)
    # Initial weight of every block's residual post-norms (norm1, norm2). 0: each block starts as the identity (Swin
    # V2, timm); random features are then nearly linear and the blocks' inner layers get no gradient at the first
    # step. 1: a plain LayerNorm. Checkpoint weights replace it either way.
    post_norm_init: float = 0.0
    # How pixels become stage-0 tokens. "patch": one Conv2d with kernel = stride = patch_size (Swin V2, timm, the
    # released weights). "conv": log2(patch_size) 3x3 stride-2 convolutions with BatchNorm and ReLU, then a 1x1
    # projection (Xiao et al. 2021, "Early convolutions help transformers see better"); at small budgets it trains
    # much faster (issue 16: 300 supervised steps on 64x64 EuroSAT, frozen probe 68.7 -> 76.2 %).
    stem: str = "patch"

    def __post_init__(self) -> None:
        # YAML/CLI configs give lists; keep tuples so that configs compare and hash the same.
        for name in ("depths", "num_heads", "pretrained_window_sizes", "out_indices", "output_norm_indices"):
            setattr(self, name, tuple(int(value) for value in getattr(self, name)))
        if not len(self.depths) == len(self.num_heads) == len(self.pretrained_window_sizes):
            raise ValueError(
                f"depths {self.depths}, num_heads {self.num_heads} and pretrained_window_sizes "
                f"{self.pretrained_window_sizes} must have one entry per stage"
            )
        for stage, (channels, heads) in enumerate(zip(self.num_features, self.num_heads, strict=True)):
            if channels % heads != 0:
                raise ValueError(f"stage {stage}: {channels} channels are not divisible by {heads} heads")
        if self.window_size < 1 or self.patch_size < 1:
            raise ValueError(f"window_size and patch_size must be >= 1, got {self.window_size}, {self.patch_size}")
        if self.extra_norm_period < 0:
            raise ValueError(f"extra_norm_period must be >= 0 (0 = off), got {self.extra_norm_period}")
        if self.stem not in ("patch", "conv"):
            raise ValueError(f"stem must be 'patch' or 'conv', got {self.stem!r}")
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(f"stem 'conv' needs a patch_size that is a power of 2 (>= 2), got {self.patch_size}")
        resolve_indices(self.out_indices, self.num_stages)
        resolve_indices(self.output_norm_indices, self.num_stages)

    @property
    def num_stages(self) -> int:
        """Number of stages (4 for every published Swin)."""
        return len(self.depths)

    @property
    def num_features(self) -> tuple[int, ...]:
        """Channels of each stage's output: embed_dim * 2**i."""
        return tuple(self.embed_dim * 2**stage for stage in range(self.num_stages))

    @property
    def input_multiple(self) -> int:
        """Input height and width must be multiples of this (patch size times the 2x merges), in pixels."""
        return self.patch_size * 2 ** (self.num_stages - 1)


# ----------------------------------------------------------------------------------------------------------------------
# Window helpers: geometry of one stage's (shifted) windows, partition and reverse
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class WindowGeometry:
    """Everything a block needs to attend within (shifted) windows of one map size; built once per stage and pass.

    Attributes:
        window: window (height, width) in tokens, already shrunk to the map where the map is not larger.
        shift: cyclic shift (height, width) in tokens; (0, 0) for regular windows.
        padded_size: map (height, width) padded up to window multiples.
        coords_table: (2*wh-1, 2*ww-1, 2) log-spaced relative coordinates, the input of the cpb MLP.
        position_index: (N, N) long, N = wh*ww: for each query/key pair, its row in the flattened coords table.
        shift_mask: (num_windows, N, N) float, -100 between tokens from different regions of a shifted map, else 0;
            None without shift.
        pad_before_shift: pad to ``padded_size`` before the cyclic shift (mmpretrain) or after it (timm).
    """

    window: tuple[int, int]
    shift: tuple[int, int]
    padded_size: tuple[int, int]
    coords_table: torch.Tensor
    position_index: torch.Tensor
    shift_mask: torch.Tensor | None
    pad_before_shift: bool = True


# ----------------------------------------------------------------------------------------------------------------------
# Attention and block
# ----------------------------------------------------------------------------------------------------------------------


class WindowAttention(nn.Module):
    """Scaled cosine attention within windows, plus the continuous position bias; (B*nW, N, C) → (B*nW, N, C).

    logits = cos(q, k) * exp(min(logit_scale, log 100)) + 16 * sigmoid(cpb_mlp(coords))[index] (+ shift mask).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, fused_attn: bool | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.fused_attn = fused_attn
        self.logit_scale = nn.Parameter(torch.empty(num_heads, 1, 1))
        # Continuous position bias: relative (dy, dx) → one bias per head.
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.empty(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.empty(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """logit_scale = log 10 (a temperature of 0.1), zero q/v biases (the Linear layers are set by the encoder)."""
        nn.init.constant_(self.logit_scale, math.log(10.0))
        if self.q_bias is not None:
            nn.init.zeros_(self.q_bias)
            nn.init.zeros_(self.v_bias)

    def uses_fused_attention(self, device: torch.device) -> bool:
        """Whether a forward on ``device`` takes the SDPA path: ``fused_attn`` when set, else per device (see
        :class:`SwinV2Config`)."""
        return self.fused_attn if self.fused_attn is not None else device.type != "cuda"

    def position_bias(self, coords_table: torch.Tensor, position_index: torch.Tensor) -> torch.Tensor:
        """(2wh-1, 2ww-1, 2) coords and (N, N) index → (heads, N, N) bias in (0, 16)."""
        table = self.cpb_mlp(coords_table.to(self.cpb_mlp[0].weight.dtype))  # (2wh-1, 2ww-1, heads)
        # F.embedding, not table[index]: the latter's backward (index_put_ accumulating repeated indices) adds with
        # atomics across threads on a CPU, so two identical training steps differed in the last bits
        bias = F.embedding(position_index, table.flatten(0, 1))  # (N, N, heads)
        return 16 * torch.sigmoid(rearrange(bias, "n m h -> h n m"))

    def forward(self, x: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        """Attend within each window.

        Args:
            x: windows (B * num_windows, N, C), windows of one image consecutive.
            geometry: the windows' geometry (coords table, index, optional shift mask).

        Returns:
            (B * num_windows, N, C).
        """
        qkv_bias = None
        if self.q_bias is not None:
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads).unbind(0)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)  # cosine attention, (B*nW, heads, N, head_dim)
        logit_scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()  # (heads, 1, 1)

        bias = self.position_bias(geometry.coords_table, geometry.position_index)  # (heads, N, N)
        if geometry.shift_mask is None:
            bias = bias[None]  # (1, heads, N, N): the same for every window
        else:
            bias = bias[None] + geometry.shift_mask[:, None].to(bias.dtype)  # (nW, heads, N, N)
        windows = bias.shape[0]

        if self.uses_fused_attention(x.device):
            # Fold windows into heads so that the bias broadcasts over the batch: (B, nW*heads, N, head_dim).
            q, k, v = (rearrange(t, "(b w) h n d -> b (w h) n d", w=windows) for t in (q * logit_scale, k, v))
            mask = rearrange(bias, "w h n m -> 1 (w h) n m").to(q.dtype)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
            x = rearrange(x, "b (w h) n d -> (b w) n (h d)", w=windows)
        else:
            attn = (q @ k.transpose(-2, -1)) * logit_scale  # (B*nW, heads, N, N)
            attn = rearrange(attn, "(b w) h n m -> b w h n m", w=windows) + bias
            attn = rearrange(attn.softmax(dim=-1), "b w h n m -> (b w) h n m")
            x = rearrange(attn @ v, "bw h n d -> bw n (h d)")
        return self.proj(x)


class SwinTransformerV2Block(nn.Module):
    """Post-norm Swin V2 block on (B, H, W, C) maps.

    x = x + drop_path(norm1(window_attention(x))); x = x + drop_path(norm2(mlp(x))); optionally x = norm3(x).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        extra_norm: bool = False,
        fused_attn: bool | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.attn = WindowAttention(dim, num_heads, qkv_bias=qkv_bias, fused_attn=fused_attn)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps) if extra_norm else None

    def _window_attention(self, x: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        """(B, H, W, C) → (B, H, W, C): pad and cyclic shift (in the geometry's order), attend per window, undo."""
        _, height, width, _ = x.shape
        shift_h, shift_w = geometry.shift
        padding = (0, 0, 0, geometry.padded_size[1] - width, 0, geometry.padded_size[0] - height)

        def roll(t: torch.Tensor, direction: int) -> torch.Tensor:
            if not (shift_h or shift_w):
                return t
            return torch.roll(t, shifts=(direction * shift_h, direction * shift_w), dims=(1, 2))

        def pad(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t, padding) if any(padding) else t  # F.pad copies even when there is nothing to pad

        if geometry.pad_before_shift:
            x = roll(pad(x), -1)  # (B, Hp, Wp, C)
        else:
            x = pad(roll(x, -1))
        windows = self.attn(window_partition(x, geometry.window), geometry)  # (B*nW, N, C)
        x = window_reverse(windows, geometry.window, geometry.padded_size)  # (B, Hp, Wp, C)
        if geometry.pad_before_shift:
            return roll(x, 1)[:, :height, :width]
        return roll(x[:, :height, :width], 1)  # (B, H, W, C)

    def forward(self, x: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        """(B, H, W, C) → (B, H, W, C)."""
        x = x + self.drop_path1(self.norm1(self._window_attention(x, geometry)))
        x = x + self.drop_path2(self.norm2(self.mlp(x)))
        if self.norm3 is not None:
            x = self.norm3(x)
        return x


# ----------------------------------------------------------------------------------------------------------------------
# Patch embedding, patch merging, stage
# ----------------------------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: Conv2d (kernel = stride = patch) then LayerNorm; NCHW in, NHWC out."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, H/p, W/p, D)."""
        return self.norm(rearrange(self.proj(x), "b d h w -> b h w d"))


class ConvStem(nn.Module):
    """Early convolutions in place of the patch embedding (Xiao et al., NeurIPS 2021): log2(p) 3x3 stride-2
    convolutions, each followed by BatchNorm and ReLU, widening to ``embed_dim``, then a 1x1 projection and the same
    token LayerNorm as :class:`PatchEmbed`. NCHW in, NHWC out, stride p.

    BatchNorm as in the paper: with channel LayerNorm instead, the same 300 supervised steps probed 58.0 % against
    76.2 % (issue 16, docs/benchmarks.md). Its running statistics are buffers, which the EMA teacher copies from the
    student; under DDP, Lightning's ``Trainer(sync_batchnorm=True)`` synchronises them. Written here because timm's
    convolutional stems are private to their own models.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        steps = int(math.log2(patch_size))
        widths = [max(embed_dim // 2 ** (steps - 1 - i), 8) for i in range(steps)]  # ..., D/2, D
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.stem = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, H/p, W/p, D)."""
        return self.norm(rearrange(self.stem(x), "b d h w -> b h w d"))


class PatchMerging(nn.Module):
    """2x down-sampling with post-norm: concatenate each 2x2 neighbourhood, Linear 4C → 2C (no bias), LayerNorm(2C).

    The concatenation order is timm's and the original Swin's, position-major: [x(0,0), x(1,0), x(0,1), x(1,1)] with
    (row, column) offsets, i.e. feature index (kw*2 + kh)*C + c. mmpretrain's ``nn.Unfold`` order differs
    (c*4 + kh*2 + kw); :func:`convert_official_hr_state_dict` permutes the official weights accordingly.
    """

    def __init__(self, dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) → (B, ceil(H/2), ceil(W/2), 2C); odd sides are zero-padded at the bottom/right."""
        _, height, width, _ = x.shape
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = rearrange(x, "b (h kh) (w kw) c -> b h w (kw kh c)", kh=2, kw=2)  # (B, H/2, W/2, 4C)
        return self.norm(self.reduction(x))


class SwinTransformerV2Stage(nn.Module):
    """Optional patch merging at the start, then blocks alternating regular and shifted windows; NHWC in and out."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        pretrained_window_size: int = 0,
        pad_before_shift: bool = True,
        downsample: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: Sequence[float] = (),
        extra_norm_period: int = 0,
        fused_attn: bool | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        """Args: dim is the stage's width (after merging); drop_path holds one rate per block."""
        super().__init__()
        self.window_size = window_size
        self.pretrained_window_size = pretrained_window_size
        self.pad_before_shift = pad_before_shift
        self.downsample = PatchMerging(dim // 2, norm_eps) if downsample else nn.Identity()
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinTransformerV2Block(
                dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=drop_path[index],
                extra_norm=extra_norm_period > 0 and (index + 1) % extra_norm_period == 0,
                fused_attn=fused_attn,
                norm_eps=norm_eps,
            )
            for index in range(depth)
        )

    def window_geometries(
        self, map_size: tuple[int, int], device: torch.device
    ) -> tuple[WindowGeometry, WindowGeometry]:
        """Geometry of the regular and of the shifted blocks for a (H, W) map (a few small constant tensors,
        cached per map size and device: they depend on nothing else)."""
        key = (tuple(map_size), str(device))
        cache = self.__dict__.setdefault("_geometry_cache", {})  # plain attribute: not state, not copied to meta
        if key not in cache:
            if len(cache) >= 16:
                cache.pop(next(iter(cache)))
            cache[key] = self._build_window_geometries(map_size, device)
        return cache[key]

    def _build_window_geometries(
        self, map_size: tuple[int, int], device: torch.device
    ) -> tuple[WindowGeometry, WindowGeometry]:
        window = tuple(min(side, self.window_size) for side in map_size)
        shift = tuple(self.window_size // 2 if side > self.window_size else 0 for side in map_size)
        padded = tuple(
            math.ceil(side / side_window) * side_window for side, side_window in zip(map_size, window, strict=True)
        )
        coords_table = log_spaced_coords_table(window, self.pretrained_window_size, device)
        index = relative_position_index(window, device)
        regular = WindowGeometry(window, (0, 0), padded, coords_table, index, None, self.pad_before_shift)
        if not any(shift):
            return regular, regular
        mask = shifted_window_mask(padded, window, shift, device)
        return regular, WindowGeometry(window, shift, padded, coords_table, index, mask, self.pad_before_shift)

    def forward(self, x: torch.Tensor, grad_checkpointing: bool = False) -> torch.Tensor:
        """(B, H, W, C_in) → (B, H', W', C): H' = ceil(H/2) after merging, else H."""
        x = self.downsample(x)
        regular, shifted = self.window_geometries((x.shape[1], x.shape[2]), x.device)
        for index, block in enumerate(self.blocks):
            geometry = shifted if index % 2 == 1 else regular
            if grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, geometry, use_reentrant=False)
            else:
                x = block(x, geometry)
        return x


# ----------------------------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------------------------


class SwinTransformerV2(Encoder):
    """Hierarchical Swin V2 encoder: four stages at strides 4, 8, 16, 32 (patch 4) with C, 2C, 4C, 8C channels.

    Example:
        >>> model = SwinTransformerV2(SwinV2Config(embed_dim=24, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)))
        >>> [tuple(m.shape) for m in model(torch.randn(1, 3, 64, 64))]
        [(1, 24, 16, 16), (1, 48, 8, 8), (1, 96, 4, 4), (1, 192, 2, 2)]
    """

    def __init__(self, config: SwinV2Config | None = None) -> None:
        super().__init__()
        self.config = config = config or SwinV2Config()
        stem = ConvStem if config.stem == "conv" else PatchEmbed
        self.patch_embed = stem(config.in_chans, config.embed_dim, config.patch_size, config.norm_eps)
        total_blocks = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]
        self.layers = nn.ModuleList()
        for stage, depth in enumerate(config.depths):
            first = sum(config.depths[:stage])
            self.layers.append(
                SwinTransformerV2Stage(
                    dim=config.num_features[stage],
                    depth=depth,
                    num_heads=config.num_heads[stage],
                    window_size=config.window_size,
                    pretrained_window_size=config.pretrained_window_sizes[stage],
                    pad_before_shift=config.pad_before_shift,
                    downsample=stage > 0,
                    mlp_ratio=config.mlp_ratio,
                    qkv_bias=config.qkv_bias,
                    drop_path=rates[first : first + depth],
                    extra_norm_period=config.extra_norm_period,
                    fused_attn=config.fused_attn,
                    norm_eps=config.norm_eps,
                )
            )
        norm_stages = resolve_indices(config.output_norm_indices, config.num_stages)
        self.norms = nn.ModuleDict(
            {str(stage): nn.LayerNorm(config.num_features[stage], eps=config.norm_eps) for stage in norm_stages}
        )
        self.feature_info = [
            FeatureInfo(num_chs=channels, reduction=config.patch_size * 2**stage, module=f"layers.{stage}")
            for stage, channels in enumerate(config.num_features)
        ]
        self.init_weights()

    def init_weights(self) -> None:
        """timm/original Swin V2 init: Linear weights ~ trunc_normal(0.02), zero biases, zero post-norms.

        The post-norms ``norm1``/``norm2`` of every block start at weight ``config.post_norm_init`` and bias 0. With
        the default 0 each block starts as the identity (Swin V2's residual post-norm init); with 1 they are plain
        LayerNorms. Works on the meta device (the init ops are no-ops there).
        """

        def init_linear(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(init_linear)
        for stage in self.layers:
            for block in stage.blocks:
                for norm in (block.norm1, block.norm2):
                    nn.init.constant_(norm.weight, self.config.post_norm_init)
                    nn.init.zeros_(norm.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters conventionally excluded from weight decay in Swin V2: the cpb MLPs and the logit scales."""
        return {name for name, _ in self.named_parameters() if "cpb_mlp" in name or "logit_scale" in name}

    def _check_input(self, x: torch.Tensor) -> None:
        config = self.config
        if x.ndim != 4 or x.shape[1] != config.in_chans:
            raise ValueError(
                f"SwinTransformerV2 expects an image (B, {config.in_chans}, H, W) with {config.in_chans} channels, "
                f"got shape {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        if height % config.input_multiple or width % config.input_multiple:
            raise ValueError(
                f"SwinTransformerV2 needs height and width that are multiples of {config.input_multiple} "
                f"(patch {config.patch_size} x 2**{config.num_stages - 1} merges), got {height}x{width}"
            )

    def forward_maps(self, x: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """Stage outputs, NCHW, each through its output norm if the stage is in ``output_norm_indices``.

        Args:
            x: image (B, in_chans, H, W), H and W multiples of ``config.input_multiple``.
            indices: stages to return (negative counts from the end); ``None`` = ``config.out_indices``.

        Returns:
            One map (B, embed_dim * 2**i, H / (patch * 2**i), W / (patch * 2**i)) per selected stage i, in depth order.
        """
        self._check_input(x)
        take = resolve_indices(self.config.out_indices if indices is None else indices, self.config.num_stages)
        if not take:
            return []
        x = self.patch_embed(x)  # (B, H/p, W/p, C)
        outputs = []
        for stage_index, stage in enumerate(self.layers[: take[-1] + 1]):
            x = stage(x, grad_checkpointing=self.grad_checkpointing)  # (B, H_i, W_i, C_i)
            if stage_index in take:
                key = str(stage_index)
                out = self.norms[key](x) if key in self.norms else x
                outputs.append(rearrange(out, "b h w c -> b c h w").contiguous())
        return outputs


# ----------------------------------------------------------------------------------------------------------------------
# Weight conversion
# ----------------------------------------------------------------------------------------------------------------------

# Buffers that other implementations store in their state dicts and that we compute on the fly.
_BUFFER_NAMES = ("relative_coords_table", "relative_position_index", "attn_mask", "k_bias")

# Official SkySense HR checkpoint (mmpretrain SwinTransformerV2) names → ours. Full matches, applied in order.
_STAGE, _BLOCK = r"stages\.(\d+)", r"stages\.(\d+)\.blocks\.(\d+)"
_OFFICIAL_RENAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"patch_embed\.projection\.(weight|bias)"), r"patch_embed.proj.\1"),
    (re.compile(r"patch_embed\.norm\.(weight|bias)"), r"patch_embed.norm.\1"),
    (re.compile(_STAGE + r"\.downsample\.reduction\.weight"), r"layers.\1.downsample.reduction.weight"),
    (re.compile(_STAGE + r"\.downsample\.norm\.(weight|bias)"), r"layers.\1.downsample.norm.\2"),
    (re.compile(_BLOCK + r"\.attn\.w_msa\.(logit_scale|q_bias|v_bias)"), r"layers.\1.blocks.\2.attn.\3"),
    (re.compile(_BLOCK + r"\.attn\.w_msa\.cpb_mlp\.0\.(weight|bias)"), r"layers.\1.blocks.\2.attn.cpb_mlp.0.\3"),
    (re.compile(_BLOCK + r"\.attn\.w_msa\.cpb_mlp\.2\.weight"), r"layers.\1.blocks.\2.attn.cpb_mlp.2.weight"),
    (re.compile(_BLOCK + r"\.attn\.w_msa\.(qkv)\.weight"), r"layers.\1.blocks.\2.attn.\3.weight"),
    (re.compile(_BLOCK + r"\.attn\.w_msa\.proj\.(weight|bias)"), r"layers.\1.blocks.\2.attn.proj.\3"),
    (re.compile(_BLOCK + r"\.(norm[123])\.(weight|bias)"), r"layers.\1.blocks.\2.\3.\4"),
    (re.compile(_BLOCK + r"\.ffn\.layers\.0\.0\.(weight|bias)"), r"layers.\1.blocks.\2.mlp.fc1.\3"),
    (re.compile(_BLOCK + r"\.ffn\.layers\.1\.(weight|bias)"), r"layers.\1.blocks.\2.mlp.fc2.\3"),
    (re.compile(r"norm(\d+)\.(weight|bias)"), r"norms.\1.\2"),  # output norms (top level only: full match)
]


def _unwrap(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Accept a bare state dict or a checkpoint holding one under 'state_dict' or 'model'."""
    for wrapper in ("state_dict", "model"):
        inner = state_dict.get(wrapper)
        if isinstance(inner, Mapping):
            return inner
    return state_dict


def unfold_to_swin_merge_columns(weight: torch.Tensor) -> torch.Tensor:
    """Reorder a patch-merging ``reduction.weight`` from mmcv's ``nn.Unfold`` input order to timm/Swin's.

    Args:
        weight: (2C, 4C) whose input columns are ordered (c, kh, kw), index c*4 + kh*2 + kw (``nn.Unfold``).

    Returns:
        (2C, 4C) with columns ordered (kw, kh, c), index (kw*2 + kh)*C + c, i.e. [x(0,0), x(1,0), x(0,1), x(1,1)].
    """
    return rearrange(weight, "out (c kh kw) -> out (kw kh c)", kh=2, kw=2).contiguous()


def convert_official_hr_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: SwinTransformerV2 | None = None
) -> dict[str, torch.Tensor]:
    """Map the released SkySense HR backbone (``skysense_model_backbone_hr.pth``) onto :class:`SwinTransformerV2`.

    Renames mmpretrain's names (optional ``backbone.`` prefix, ``stages``, ``attn.w_msa``, ``ffn.layers``, top-level
    ``norm{i}``) to ours, permutes the patch-merging weights from ``nn.Unfold`` order to ours, and drops ``mask_token``
    and stored buffers (relative coords table / index). Tensors are not copied except the permuted ones.

    Args:
        state_dict: the checkpoint's tensors (a wrapper dict with 'state_dict' or 'model' is unwrapped).
        model: optional target. If given: a 3-band patch projection is widened to a 4-band (RGB+NIR) model by copying
            the red band's weights into the NIR slot, as the official converter does; output norms ``norm{i}`` of
            stages the model has no output norm for are an error (nothing is dropped silently).

    Returns:
        A state dict for ``model.load_state_dict``.

    Raises:
        KeyError: listing every key that has no counterpart.
        ValueError: if the patch projection's bands cannot be adapted to the model's ``in_chans``.
    """
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in _unwrap(state_dict).items():
        name = key.removeprefix("backbone.")
        if name == "mask_token" or name.rsplit(".", 1)[-1] in _BUFFER_NAMES:
            continue
        for pattern, replacement in _OFFICIAL_RENAMES:
            match = pattern.fullmatch(name)
            if match:
                new_name = match.expand(replacement)
                break
        else:
            unknown.append(key)
            continue
        if new_name.endswith("downsample.reduction.weight"):
            value = unfold_to_swin_merge_columns(value)
        converted[new_name] = value
    if unknown:
        raise KeyError(f"{len(unknown)} keys of the official SkySense HR checkpoint have no counterpart: {unknown}")

    if model is not None:
        converted = _adapt_to_model(converted, model)
    return converted


def _adapt_to_model(converted: dict[str, torch.Tensor], model: SwinTransformerV2) -> dict[str, torch.Tensor]:
    """Widen RGB weights to RGB+NIR (red copied to NIR); refuse output norms the model does not have."""
    key = "patch_embed.proj.weight"
    if key in converted:
        weight = converted[key]  # (D, bands, p, p)
        have, want = weight.shape[1], model.config.in_chans
        if have == 3 and want == 4:
            converted[key] = torch.cat([weight, weight[:, :1]], dim=1)  # NIR slot ← red (band 0)
        elif have != want:
            raise ValueError(
                f"{key}: the checkpoint has {have} input bands and the model {want}; only 3 → 3, 4 → 4 and "
                "3 → 4 (RGB → RGB+NIR, red copied to NIR) are supported"
            )
    model_keys = set(model.state_dict().keys())
    extra_norms = sorted(name for name in converted if name.startswith("norms.") and name not in model_keys)
    if extra_norms:
        stages = tuple(sorted({int(name.split(".")[1]) for name in converted if name.startswith("norms.")}))
        raise KeyError(
            f"the checkpoint has output norms {extra_norms} that the model has no slot for (model "
            f"output_norm_indices={model.config.output_norm_indices}); build the model with "
            f"output_norm_indices={stages} to load them"
        )
    return converted


def official_hr_config_overrides(state_dict: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """Read the architecture of an official SkySense HR checkpoint from its names and shapes.

    Args:
        state_dict: official names, with or without the ``backbone.`` prefix (tensors may be on the meta device).

    Returns:
        :class:`SwinV2Config` keyword arguments: in_chans, patch_size, embed_dim, depths, num_heads, mlp_ratio,
        qkv_bias, extra_norm_period (0 if no block has ``norm3``) and output_norm_indices (the stages with a
        top-level ``norm{i}``). The window size is not recorded in the weights; SkySense uses 8, the default.
    """
    tensors = {key.removeprefix("backbone."): value for key, value in _unwrap(state_dict).items()}
    projection = tensors["patch_embed.projection.weight"]  # (D, bands, p, p)
    blocks: dict[int, int] = {}
    extra_norm_blocks: list[int] = []
    output_norms: list[int] = []
    for key in tensors:
        if match := re.fullmatch(_BLOCK + r"\..*", key):
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
            if key.endswith(".norm3.weight"):
                extra_norm_blocks.append(block + 1)
        elif match := re.fullmatch(r"norm(\d+)\.weight", key):
            output_norms.append(int(match.group(1)))
    depths = tuple(blocks[stage] for stage in sorted(blocks))
    num_heads = tuple(tensors[f"stages.{stage}.blocks.0.attn.w_msa.logit_scale"].shape[0] for stage in sorted(blocks))
    embed_dim = projection.shape[0]
    return {
        "in_chans": projection.shape[1],
        "patch_size": projection.shape[-1],
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "mlp_ratio": tensors["stages.0.blocks.0.ffn.layers.0.0.weight"].shape[0] / embed_dim,
        "qkv_bias": "stages.0.blocks.0.attn.w_msa.q_bias" in tensors,
        "extra_norm_period": min(extra_norm_blocks, default=0),
        "output_norm_indices": tuple(sorted(output_norms)),
    }


def convert_timm_swinv2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a timm (or original Microsoft) Swin V2 state dict onto :class:`SwinTransformerV2`.

    Drops stored buffers (``relative_coords_table``, ``relative_position_index``, ``attn_mask``, ``k_bias``) and the
    classifier ``head.*``, and renames the final ``norm`` to ``norms.{last stage}``: timm applies it to the last
    stage's output only, which is what our output norm of that stage does. Build the model with
    ``output_norm_indices=(last,)`` and ``pad_before_shift=False`` to reproduce timm's ``forward_features`` exactly.
    Checkpoints in the original Microsoft layout (merging at the *end* of stage i, ``layers.0.downsample`` present)
    are moved to the start of stage i + 1, as timm's own ``checkpoint_filter_fn`` does.

    Args:
        state_dict: timm ``SwinTransformerV2.state_dict()`` or an original checkpoint ('model' wrapper unwrapped).

    Returns:
        A state dict for ``model.load_state_dict``.
    """
    state_dict = _unwrap(state_dict)
    stages = {int(match.group(1)) for key in state_dict if (match := re.match(r"layers\.(\d+)\.", key))}
    original_layout = "layers.0.downsample.reduction.weight" in state_dict
    last_stage = max(stages)  # every stage has blocks in both layouts
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("head.") or key.rsplit(".", 1)[-1] in _BUFFER_NAMES:
            continue
        if original_layout:
            key = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
        if key in ("norm.weight", "norm.bias"):
            key = f"norms.{last_stage}.{key.split('.')[-1]}"
        converted[key] = value
    return converted
