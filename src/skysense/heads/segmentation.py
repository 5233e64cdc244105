"""Semantic segmentation heads: UperNet (Xiao et al., ECCV 2018), as SkySense (Guo et al., CVPR 2024) uses it on
the four HR stages, with an optional FCN auxiliary head; and a single-map pyramid for features that come at one
scale (the Sentinel or fused grid).

All heads take a list of NCHW maps, finest first, and return logits at the finest map's resolution; the task
up-samples them to the label size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> nn.Sequential:
    """Conv (no bias) → BatchNorm or GroupNorm (32 groups, at least 2 channels each: one channel per group on the
    pyramid pooling's 1 × 1 map would normalise a single value) → ReLU."""
    if norm == "batch":
        normalization: nn.Module = nn.BatchNorm2d(out_channels)
    elif norm == "group":
        normalization = nn.GroupNorm(min(32, max(1, out_channels // 2)), out_channels)
    else:
        raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        normalization,
        nn.ReLU(inplace=True),
    )


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module on the coarsest map: average pools at ``scales``, 1×1 conv each, up-sampled
    and concatenated with the input, then a 3×3 conv."""

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int], norm: str) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.branches = nn.ModuleList(conv_norm_act(in_channels, channels, 1, norm) for _ in self.scales)
        self.bottleneck = conv_norm_act(in_channels + len(self.scales) * channels, channels, 3, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, h, w) → (B, channels, h, w)."""
        size = x.shape[-2:]
        pooled = [
            F.interpolate(branch(F.adaptive_avg_pool2d(x, scale)), size=size, mode="bilinear", align_corners=False)
            for scale, branch in zip(self.scales, self.branches, strict=True)
        ]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UperNetHead(nn.Module):
    """UperNet: PPM on the coarsest map, FPN top-down path, all levels fused at the finest resolution.

    Args:
        in_channels: channels of each input map, finest first.
        num_classes: output classes K.
        channels: width of the head (512 in the paper's mmseg setting).
        pool_scales: PPM pooling sizes.
        norm: "batch" (BatchNorm, as mmseg) or "group" (GroupNorm: batch-size independent, for small CPU batches).
        dropout: before the classifier.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        norm: str = "batch",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels, pool_scales, norm)
        self.lateral = nn.ModuleList(conv_norm_act(c, channels, 1, norm) for c in in_channels[:-1])
        self.smooth = nn.ModuleList(conv_norm_act(channels, channels, 3, norm) for _ in in_channels[:-1])
        self.fuse = conv_norm_act(len(in_channels) * channels, channels, 3, norm)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Maps finest first [(B, C_i, h_i, w_i)] → (B, K, h_0, w_0) logits."""
        laterals = [conv(x) for conv, x in zip(self.lateral, features[:-1], strict=True)]
        laterals.append(self.ppm(features[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add the coarser level
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        outputs = [smooth(x) for smooth, x in zip(self.smooth, laterals[:-1], strict=True)] + [laterals[-1]]
        size = outputs[0].shape[-2:]
        outputs = [outputs[0]] + [
            F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in outputs[1:]
        ]
        return self.classifier(self.dropout(self.fuse(torch.cat(outputs, dim=1))))


class FCNHead(nn.Module):
    """The auxiliary head: 3×3 conv → norm → ReLU → classifier, on one map (the third HR stage in mmseg's UperNet)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, norm: str = "batch") -> None:
        super().__init__()
        self.conv = conv_norm_act(in_channels, channels, 3, norm)
        self.dropout = nn.Dropout2d(0.1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, K, h, w)."""
        return self.classifier(self.dropout(self.conv(x)))


def single_map_pyramid(x: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """A single-scale map (Sentinel or fused grid, already at the label's pixel size) → ``levels`` maps, finest
    first, by 2×2 average pooling (the input is the finest level)."""
    maps = [x]
    for _ in range(levels - 1):
        maps.append(F.avg_pool2d(maps[-1], 2, ceil_mode=True))
    return maps
