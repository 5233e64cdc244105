"""What makes a frame of a Sentinel time series count: one rule, used by training (:func:`skysense.data.collate.collate`)
and by scene inference (:class:`skysense.inference.sources.TileReader`) alike.

A frame counts for a sample or tile when it has at least one valid pixel **and** at least ``min_valid_fraction``
of the pixels that could be valid are (clouds, nodata, outside the file are not). "Could be valid" is the whole
frame in training, and the part of a tile inside the scene in inference (a tile at the scene's edge, or larger
than a small scene, reaches past it). Frames that do not count are masked like padded frames, never fed as filler.

Before this module the two paths disagreed: training kept a frame when its fraction was *above* the threshold,
inference when it was *at or above* it, so a frame exactly at the threshold counted in one and not the other.
"""

from __future__ import annotations

import torch


def frames_that_count(valid: torch.Tensor, min_valid_fraction: float, inside: int | None = None) -> torch.Tensor:
    """(T,) bool: which frames of one series count.

    Args:
        valid: (T, H, W) bool, True where a frame's pixel is valid.
        min_valid_fraction: share of the pixels that could be valid that must be, in [0, 1] (0: any valid pixel).
        inside: how many of the H × W pixels could be valid (default: all of them).

    Raises:
        ValueError: a fraction outside [0, 1].
    """
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction: {min_valid_fraction!r} is out of range; give a number in [0, 1]")
    counts = valid.flatten(1).sum(dim=1)
    possible = valid[0].numel() if inside is None else inside
    return (counts > 0) & (counts >= min_valid_fraction * max(possible, 1))
