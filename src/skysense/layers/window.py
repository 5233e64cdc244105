"""Window operations of Swin Transformer V2 (Liu et al., CVPR 2022): log-spaced relative coordinates for the
continuous position bias, the relative-position index, window partition/reverse and the shifted-window mask.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange


def log_spaced_coords_table(
    window: tuple[int, int], pretrained_window: int, device: torch.device | None = None
) -> torch.Tensor:
    """Swin V2's log-spaced relative coordinates (Liu et al. 2022, Eq. 4).

    Args:
        window: window (height, width) in tokens.
        pretrained_window: if > 0, coordinates are normalised by this window instead of the actual one.
        device: where to build the table.

    Returns:
        (2*wh-1, 2*ww-1, 2) float32, values in about [-1, 1]: sign(t) * log2(1 + |8 t|) / log2(8) with t the relative
        offset divided by (window - 1).
    """
    reference = (pretrained_window, pretrained_window) if pretrained_window > 0 else window
    axes = [
        torch.arange(-(side - 1), side, dtype=torch.float32, device=device) / max(ref - 1, 1)
        for side, ref in zip(window, reference, strict=True)
    ]
    table = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1) * 8  # (2wh-1, 2ww-1, 2), in [-8, 8]
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_position_index(window: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """Row of the flattened (2*wh-1, 2*ww-1) coords table for every (query, key) pair of a window.

    Returns:
        (N, N) long with N = wh*ww, tokens in row-major order.
    """
    coords = torch.stack(
        torch.meshgrid(torch.arange(window[0], device=device), torch.arange(window[1], device=device), indexing="ij")
    ).flatten(1)  # (2, N)
    relative = coords[:, :, None] - coords[:, None, :]  # (2, N, N), query minus key
    return (relative[0] + window[0] - 1) * (2 * window[1] - 1) + (relative[1] + window[1] - 1)


def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """(B, Hp, Wp, C) → (B * num_windows, wh * ww, C), windows in row-major order within each image."""
    return rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) (wh ww) c", wh=window[0], ww=window[1])


def window_reverse(windows: torch.Tensor, window: tuple[int, int], padded_size: tuple[int, int]) -> torch.Tensor:
    """(B * num_windows, wh * ww, C) → (B, Hp, Wp, C); the inverse of :func:`window_partition`."""
    return rearrange(
        windows,
        "(b nh nw) (wh ww) c -> b (nh wh) (nw ww) c",
        nh=padded_size[0] // window[0],
        nw=padded_size[1] // window[1],
        wh=window[0],
        ww=window[1],
    )


def shifted_window_mask(
    padded_size: tuple[int, int], window: tuple[int, int], shift: tuple[int, int], device: torch.device | None = None
) -> torch.Tensor:
    """Attention mask that keeps a shifted window from mixing tokens that were not neighbours before the roll.

    Each side is cut into the regions [0, L - w), [L - w, L - s), [L - s, L) (one region if s = 0); tokens of
    different regions may not attend to each other.

    Returns:
        (num_windows, N, N) float32: -100 where query and key lie in different regions, 0 elsewhere.
    """

    def region(length: int, side_window: int, side_shift: int) -> torch.Tensor:
        ids = torch.zeros(length, dtype=torch.long, device=device)
        if side_shift > 0:
            ids[length - side_window : length - side_shift] = 1
            ids[length - side_shift :] = 2
        return ids

    ids = region(padded_size[0], window[0], shift[0])[:, None] * 3 + region(padded_size[1], window[1], shift[1])
    ids = rearrange(ids, "(nh wh) (nw ww) -> (nh nw) (wh ww)", wh=window[0], ww=window[1])  # (num_windows, N)
    different = ids[:, None, :] != ids[:, :, None]  # (num_windows, N, N)
    return different.to(torch.float32) * -100.0
