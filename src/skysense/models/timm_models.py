"""The encoders of every preset in timm's model registry: ``skysense_{hr,s2,s1}_{preset}``.

After ``import skysense``, ``timm.create_model("skysense_hr_paper", features_only=True, out_indices=(1, 2, 3))``
builds the paper's Swin V2-H wrapped by timm's own ``FeatureGetterNet`` (which calls our timm-style
``forward_intermediates``), and ``timm.create_model("skysense_s2_tiny")`` a Sentinel-2 ViT. Weights come through
timm's ``pretrained_cfg``: ``pretrained=True, pretrained_cfg_overlay={"file": "model.safetensors"}`` loads a local
file written by :func:`skysense.save_pretrained` (the whole model: this encoder's part is taken), an encoder's own
state dict, or an official SkySense checkpoint (converted). No file is downloaded: SkySense's weights have no
public hub address, so a ``pretrained=True`` without a file says so.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.models import build_model_with_cfg, register_model

from skysense.models.base import Encoder
from skysense.models.registry import get_config, list_presets
from skysense.models.swin_v2 import SwinTransformerV2, convert_official_hr_state_dict
from skysense.models.vit import VisionTransformer, convert_official_vit_state_dict

MODALITIES = ("hr", "s2", "s1")


def _encoder_state(state_dict: dict[str, torch.Tensor], model: Encoder, modality: str) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: this encoder's weights out of a whole-model file, an encoder file or an
    official checkpoint."""
    own = set(model.state_dict())
    if any(key.startswith(f"{modality}.") for key in state_dict):  # skysense.save_pretrained: the whole model
        return {key[len(modality) + 1 :]: value for key, value in state_dict.items() if key.startswith(f"{modality}.")}
    if own & set(state_dict):
        return dict(state_dict)
    convert = convert_official_hr_state_dict if modality == "hr" else convert_official_vit_state_dict
    return convert(state_dict)


def _build(modality: str, preset: str, pretrained: bool = False, **kwargs: Any) -> Encoder:
    config = getattr(get_config(preset), modality)
    if config is None:
        raise ValueError(f"preset {preset!r} has no {modality} encoder")
    cls = SwinTransformerV2 if modality == "hr" else VisionTransformer
    # features_only's default outputs: every Swin stage; the last 4 ViT blocks (timm's ViT default), or all of a
    # shallower ViT
    out_indices = tuple(range(config.num_stages)) if modality == "hr" else min(4, config.depth)
    pretrained_cfg = {"architecture": f"skysense_{modality}_{preset}", "num_classes": 0}
    given = kwargs.pop("pretrained_cfg", None)  # timm.create_model resolves pretrained_cfg_overlay into it
    if given is not None:
        given = given.to_dict() if hasattr(given, "to_dict") else dict(given)
        pretrained_cfg.update({key: value for key, value in given.items() if value is not None})
    pretrained_cfg.update(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if pretrained and not pretrained_cfg.get("file"):
        raise ValueError(
            f"skysense_{modality}_{preset}: SkySense weights have no download address; pass "
            "pretrained_cfg_overlay={'file': 'path/to/weights.safetensors'} (a skysense.save_pretrained file, this "
            "encoder's state dict or an official SkySense checkpoint)"
        )
    return build_model_with_cfg(
        lambda **_: cls(config),
        f"skysense_{modality}_{preset}",
        pretrained,
        pretrained_cfg=pretrained_cfg,
        pretrained_filter_fn=partial(_encoder_state, modality=modality),
        pretrained_strict=True,
        feature_cfg={"feature_cls": "getter", "out_indices": out_indices},
        **kwargs,
    )


def _register(modality: str, preset: str) -> None:
    def entry(pretrained: bool = False, **kwargs: Any) -> Encoder:
        return _build(modality, preset, pretrained, **kwargs)

    entry.__name__ = f"skysense_{modality}_{preset}"
    entry.__doc__ = f"SkySense {modality.upper()} encoder of the {preset!r} preset."
    entry.__module__ = __name__
    register_model(entry)


for _preset in list_presets():
    for _modality in MODALITIES:
        if getattr(get_config(_preset), _modality) is not None:
            _register(_modality, _preset)
