"""Typed containers for what goes into and comes out of the SkySense model.

A batch holds up to three modalities for B locations. Every optional part has an explicit mask: a missing HR
image per sample (``hr_valid``), padded or missing time steps (``s2_valid``, ``s1_valid``). Padding is never
confused with data: the model never encodes or attends to masked entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.utils import _pytree as pytree


@dataclass
class SkySenseInput:
    """Model input for B locations; shapes in the comments. Values are normalised model inputs.

    Attributes:
        hr: (B, C_hr, H, W) very-high-resolution optical image (RGB or RGB+NIR), or None.
        hr_valid: (B,) bool, False for samples without an HR image (their HR slice is ignored). Default: all True.
        hr_day_of_year: (B,) int64 calendar day of the HR acquisition in [0, 365), -1 if unknown (then no date
            encoding is added to the HR token). Default: all unknown.
        s2: (B, T2, 10, h, w) Sentinel-2 L2A time series, or None.
        s2_day_of_year: (B, T2) int64, required with ``s2``; -1 for frames without a date.
        s2_valid: (B, T2) bool, False for padded frames. Default: all True.
        s1: (B, T1, 2, h, w) Sentinel-1 GRD time series in normalised dB, or None.
        s1_day_of_year: (B, T1) int64, required with ``s1``.
        s1_valid: (B, T1) bool. Default: all True.
        lat: (B,) latitude in degrees (for the geo-context prototypes), or None.
        lon: (B,) longitude in degrees, or None.
    """

    hr: torch.Tensor | None = None
    hr_valid: torch.Tensor | None = None
    hr_day_of_year: torch.Tensor | None = None
    s2: torch.Tensor | None = None
    s2_day_of_year: torch.Tensor | None = None
    s2_valid: torch.Tensor | None = None
    s1: torch.Tensor | None = None
    s1_day_of_year: torch.Tensor | None = None
    s1_valid: torch.Tensor | None = None
    lat: torch.Tensor | None = None
    lon: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        for tensor in (self.hr, self.s2, self.s1):
            if tensor is not None:
                return tensor.shape[0]
        raise ValueError("the batch holds no modality: give at least one of hr, s2, s1")

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> SkySenseInput:
        """A copy with ``fn`` applied to every tensor."""
        return SkySenseInput(
            **{f.name: (fn(v) if isinstance(v := getattr(self, f.name), torch.Tensor) else v) for f in fields(self)}
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SkySenseInput:
        """A copy with every tensor moved to ``device`` (``non_blocking``: asynchronously from pinned memory)."""
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> SkySenseInput:
        """A copy in page-locked host memory, which a GPU copies from asynchronously (``to(..., non_blocking=True)``)."""
        return self._map(torch.Tensor.pin_memory)


@dataclass
class SkySenseOutput:
    """Everything the model computed; absent parts are None.

    Attributes:
        hr_features: HR pyramid, list of (B, C_i, H / 4·2^i, W / 4·2^i) for the encoder's out_indices.
        s2_features: (B, T2, C, Gh, Gw) per-frame S2 features on the shared grid (after the up-sampling head);
            padded frames are zeros and must be read with ``s2_valid``.
        s1_features: (B, T1, C, Gh, Gw), likewise.
        fused: (B, D, Gh, Gw) fused features F (the extra token per location).
        geo: (B, D, Gh, Gw) geo-context read-out F_geo.
        features: the final representation: concat[F, F_geo] (B, 2D, Gh, Gw) when geo-context is used, else F.
        geo_query: (B, Gh·Gw, d) the fused features' queries into the prototype bank (what prototype learning
            assigns to prototypes).
    """

    hr_features: list[torch.Tensor] | None = None
    s2_features: torch.Tensor | None = None
    s1_features: torch.Tensor | None = None
    fused: torch.Tensor | None = None
    geo: torch.Tensor | None = None
    features: torch.Tensor | None = None
    geo_query: torch.Tensor | None = None


def _register_with_pytree(cls: type) -> type:
    """Make ``torch.utils._pytree`` open the dataclass into its fields (None fields are empty subtrees).

    FSDP2 in torch < 2.12 finds a sharded module's outputs with ``tree_flatten`` to hook the all-gather of its
    parameters for the backward; a dataclass that pytree cannot open hides its tensors, the backbone's parameters stay
    freed and the backward fails ("data is not allocated yet", issue 15). torch.compile and export read containers the
    same way.
    """
    names = tuple(f.name for f in fields(cls))

    def flatten(value: Any) -> tuple[list[Any], tuple[str, ...]]:
        return [getattr(value, name) for name in names], names

    def unflatten(values: Any, context: tuple[str, ...]) -> Any:
        return cls(**dict(zip(context, values, strict=True)))

    def flatten_with_keys(value: Any) -> tuple[list[tuple[pytree.KeyEntry, Any]], tuple[str, ...]]:
        return [(pytree.GetAttrKey(name), getattr(value, name)) for name in names], names

    pytree.register_pytree_node(
        cls,
        flatten,
        unflatten,
        serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
        flatten_with_keys_fn=flatten_with_keys,
    )
    return cls


_register_with_pytree(SkySenseInput)
_register_with_pytree(SkySenseOutput)
