"""The encoders of every preset in TerraTorch's backbone registry: ``skysense_{hr,s2,s1}_{preset}`` (optional extra:
``pip install 'skysense[terratorch]'``).

A TerraTorch model factory then builds on them by name, in Python or in a TerraTorch YAML::

    model_args:
      backbone: skysense_hr_paper
      backbone_ckpt_path: skysense_pretrained.safetensors   # optional: skysense.save_pretrained or official weights
      decoder: UperNetDecoder
      num_classes: 10

Each builder is the timm model of :mod:`skysense.models.timm_models` with ``features_only=True`` (NCHW maps: the
Swin V2 stages at strides 4–32, or the last ViT blocks on the patch grid), wrapped by TerraTorch's own
``TimmBackboneWrapper`` (``out_channels`` from timm's ``feature_info``), so nothing of TerraTorch's contract is
re-implemented here. Weights: TerraTorch's ``ckpt_path`` convention, a local file (no SkySense weights have a hub
address).

Registration happens when this module is imported: ``import skysense`` imports it when TerraTorch is already imported
(TerraTorch's own import takes seconds, so skysense never imports it unasked); ``terratorch fit --config x.yaml``
picks it up from a ``custom_modules/__init__.py`` beside the run holding ``import skysense`` (TerraTorch imports that
package from the working folder during its own import). Without the registration, TerraTorch's timm source still builds ``skysense_*`` after
``import skysense``, without ``ckpt_path``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import timm
import torch
from torch import nn

from skysense.models.registry import get_config, list_presets
from skysense.models.timm_models import MODALITIES

_imported_here = "terratorch" not in sys.modules
_precision = torch.get_float32_matmul_precision()
from terratorch.registry import TERRATORCH_BACKBONE_REGISTRY  # noqa: E402
from terratorch.registry.timm_registry import TimmBackboneWrapper  # noqa: E402

if _imported_here:
    # TerraTorch's import sets torch.set_float32_matmul_precision("medium") for the whole process (its Clay v1.5
    # module does, at import): on CPUs with bf16 and on GPUs every float32 matmul then loses precision (our parity
    # tests against timm failed by 1e-3). A TerraTorch import made by skysense leaves the user's setting as it was.
    torch.set_float32_matmul_precision(_precision)


def build_backbone(
    modality: str,
    preset: str,
    pretrained: bool = False,
    ckpt_path: str | None = None,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A SkySense encoder as a TerraTorch backbone: ``forward(x) -> list[Tensor]`` (NCHW) and ``out_channels``.

    Args:
        modality: "hr", "s2" or "s1".
        preset: a skysense preset ("tiny", "small", "base", "paper", ...).
        pretrained: load weights; needs ``ckpt_path`` (SkySense weights have no download address).
        ckpt_path: a local weights file: a :func:`skysense.save_pretrained` file (this encoder's part is taken), the
            encoder's own state dict, or an official SkySense checkpoint (converted).
        out_indices: which ``feature_info`` entries to return (timm's ``features_only`` default when None: every
            Swin stage, the last 4 ViT blocks).
        **kwargs: passed to :func:`timm.create_model`.
    """
    options: dict[str, Any] = dict(kwargs)
    if out_indices is not None:
        options["out_indices"] = tuple(out_indices)
    if ckpt_path is not None:
        pretrained = True
        options["pretrained_cfg_overlay"] = {"file": str(ckpt_path)}
    model = timm.create_model(f"skysense_{modality}_{preset}", pretrained=pretrained, features_only=True, **options)
    return TimmBackboneWrapper(model)


def _register(modality: str, preset: str) -> None:
    def entry(
        pretrained: bool = False, ckpt_path: str | None = None, out_indices: Sequence[int] | None = None, **kwargs: Any
    ) -> nn.Module:
        return build_backbone(modality, preset, pretrained, ckpt_path, out_indices, **kwargs)

    entry.__name__ = entry.__qualname__ = f"skysense_{modality}_{preset}"
    entry.__doc__ = f"SkySense {modality.upper()} encoder of the {preset!r} preset as a TerraTorch backbone."
    entry.__module__ = __name__
    if entry.__name__ not in TERRATORCH_BACKBONE_REGISTRY:
        TERRATORCH_BACKBONE_REGISTRY.register(entry)


for _preset in list_presets():
    for _modality in MODALITIES:
        if getattr(get_config(_preset), _modality) is not None:
            _register(_modality, _preset)
