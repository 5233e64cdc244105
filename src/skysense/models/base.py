"""The one encoder API that every SkySense backbone implements.

Heads and tasks see backbones only through this interface (``forward_maps``: NCHW maps of the selected outputs), so
that a segmentation head works the same on the Swin V2 HR encoder, a Sentinel ViT or the fused multi-modal grid.
``forward_intermediates``, ``forward_features`` and ``feature_info`` (a list of dicts) follow timm's contracts, so
timm's feature wrappers take our encoders as they are (:mod:`skysense.models.timm_models`).
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureInfo(dict):
    """What one output map of an encoder holds: timm's feature-info dict (``num_chs``, ``reduction``, ``module``),
    so that timm's feature wrappers read it, with the same fields as attributes.

    Attributes:
        num_chs: channels of the map.
        reduction: spatial stride of the map relative to the encoder's input, in input pixels.
        module: name of the module whose output it is (for hooks and debugging).
    """

    def __init__(self, num_chs: int, reduction: int, module: str) -> None:
        super().__init__(num_chs=num_chs, reduction=reduction, module=module)

    @property
    def num_chs(self) -> int:
        return self["num_chs"]

    @property
    def reduction(self) -> int:
        return self["reduction"]

    @property
    def module(self) -> str:
        return self["module"]


class Encoder(nn.Module):
    """Base class of every backbone.

    Subclasses set ``self.feature_info`` (one :class:`FeatureInfo` per selectable output, in depth order) and
    implement :meth:`forward_maps`; :meth:`forward_intermediates` follows timm's contract on top of it.
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

    def forward_maps(self, x: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """Feature maps of the selected outputs (what heads and the multi-modal model use).

        Args:
            x: input image (B, C, H, W).
            indices: which entries of ``feature_info`` to return (negative counts from the end); ``None`` returns
                the encoder's configured ``out_indices``.

        Returns:
            One map (B, C_i, H / r_i, W / r_i) per index, NCHW, in depth order.
        """
        raise NotImplementedError

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's contract (``timm.models.VisionTransformer.forward_intermediates``), on top of :meth:`forward_maps`.

        Args:
            x: input image (B, C, H, W).
            indices: an int n takes the last n outputs, a sequence takes those entries of ``feature_info``
                (negative from the end), None takes all.
            norm: accepted for timm's callers; our maps already carry the norms the encoder is configured with
                (Swin V2's per-stage output norms, the ViT's final norm on its last block).
            stop_early: stop at the deepest selected output (the final features are then not computed).
            output_fmt: "NCHW" or "NHWC".
            intermediates_only: return only the list.

        Returns:
            The selected maps, or (final, maps) where final is :meth:`forward_features`'s (B, C, H / r, W / r).
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        count = len(self.feature_info)
        if indices is None:
            take = list(range(count))
        elif isinstance(indices, int):
            if not 0 < indices <= count:
                raise IndexError(f"indices={indices}: this encoder has {count} outputs")
            take = list(range(count - indices, count))
        else:
            take = resolve_indices(indices, count)
        final_needed = not (intermediates_only or stop_early)
        wanted = sorted(set(take) | ({count - 1} if final_needed else set()))
        maps = dict(zip(wanted, self.forward_maps(x, indices=wanted), strict=True))
        intermediates = [maps[i] for i in take]
        if output_fmt == "NHWC":
            intermediates = [m.permute(0, 2, 3, 1) for m in intermediates]
        if intermediates_only:
            return intermediates
        return (maps[count - 1] if final_needed else None), intermediates

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest feature map (B, C, H / r, W / r), NCHW."""
        return self.forward_maps(x, indices=[-1])[0]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Same as :meth:`forward_maps` with the configured outputs."""
        return self.forward_maps(x)


def resolve_indices(indices: list[int] | tuple[int, ...], count: int) -> list[int]:
    """Turn possibly negative output indices into sorted, unique, non-negative ones; raise on out-of-range."""
    resolved = []
    for index in indices:
        positive = index + count if index < 0 else index
        if not 0 <= positive < count:
            raise IndexError(f"output index {index} is out of range for an encoder with {count} outputs")
        resolved.append(positive)
    return sorted(set(resolved))
