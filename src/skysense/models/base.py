"""The one encoder API that every SkySense backbone implements.

Heads and tasks see backbones only through this interface (timm's ``forward_features`` /
``forward_intermediates`` convention, always returning NCHW maps), so that a segmentation head works the same on
the Swin V2 HR encoder, a Sentinel ViT or the fused multi-modal grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    """What one output map of an encoder holds.

    Attributes:
        num_chs: channels of the map.
        reduction: spatial stride of the map relative to the encoder's input, in input pixels.
        module: name of the module whose output it is (for hooks and debugging).
    """

    num_chs: int
    reduction: int
    module: str


class Encoder(nn.Module):
    """Base class of every backbone.

    Subclasses set ``self.feature_info`` (one :class:`FeatureInfo` per selectable output, in depth order) and
    implement :meth:`forward_intermediates`.
    """

    feature_info: list[FeatureInfo]
    grad_checkpointing: bool = False

    @property
    def out_channels(self) -> list[int]:
        """Channels of every selectable output map, in depth order."""
        return [info.num_chs for info in self.feature_info]

    @property
    def reductions(self) -> list[int]:
        """Stride of every selectable output map, in depth order."""
        return [info.reduction for info in self.feature_info]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass instead of storing them (saves memory, costs ~30 % time).
        Every encoder applies it only while autograd records (``torch.is_grad_enabled()``), in train or eval mode."""
        self.grad_checkpointing = enable

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """Feature maps of the selected outputs.

        Args:
            x: input image (B, C, H, W).
            indices: which entries of ``feature_info`` to return (negative counts from the end); ``None`` returns
                the encoder's configured ``out_indices``.

        Returns:
            One map (B, C_i, H / r_i, W / r_i) per index, NCHW.
        """
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest feature map (B, C, H / r, W / r), NCHW."""
        return self.forward_intermediates(x, indices=[-1])[0]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Same as :meth:`forward_intermediates` with the configured outputs."""
        return self.forward_intermediates(x)


def resolve_indices(indices: list[int] | tuple[int, ...], count: int) -> list[int]:
    """Turn possibly negative output indices into sorted, unique, non-negative ones; raise on out-of-range."""
    resolved = []
    for index in indices:
        positive = index + count if index < 0 else index
        if not 0 <= positive < count:
            raise IndexError(f"output index {index} is out of range for an encoder with {count} outputs")
        resolved.append(positive)
    return sorted(set(resolved))
