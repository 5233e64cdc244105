"""Saving and loading weights.

* Our format: one ``.safetensors`` file holding the state dict and, in its metadata, the model config as JSON, so
  that :func:`from_pretrained` rebuilds the exact model with no code and no pickle.
* The official SkySense release: ``skysense_model_backbone_hr.pth``, ``…_backbone_s2.pth``, ``…_backbone_s1.pth``,
  ``…_head_s2.pth``, ``…_head_s1.pth``, ``…_fusion.pth`` (mmcv/mmseg names), mapped onto ours by the converters
  beside each model. ``.pth`` files are read with ``torch.load(weights_only=True)``: a checkpoint can never run code.
  Unknown or missing keys are errors that list them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from skysense.models.fusion import convert_official_fusion_state_dict
from skysense.models.registry import config_from_dict, config_to_dict
from skysense.models.skysense import SkySense
from skysense.models.swin_v2 import convert_official_hr_state_dict
from skysense.models.vit import convert_official_upsample_head_state_dict, convert_official_vit_state_dict

FORMAT = "skysense/1"


def save_pretrained(model: SkySense, path: str | Path) -> Path:
    """Write weights + config to a ``.safetensors`` file; returns the path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_pretrained writes .safetensors files, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": json.dumps(config_to_dict(model.config))}
    save_file(state, str(path), metadata=metadata)
    return path


def load_state_dict_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Load every tensor into ``module``; raise listing missing keys, unexpected keys and shape mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mismatched:
        raise KeyError(
            f"{what} does not match the model: missing keys {missing}, unexpected keys {unexpected}, "
            f"shape mismatches {mismatched}"
        )
    module.load_state_dict(state_dict, strict=True)


def read_config(path: str | Path) -> dict:
    """The config stored in a skysense ``.safetensors`` file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise ValueError(
            f"{path} is not a skysense weights file (no '{FORMAT}' config in its safetensors metadata); "
            "official .pth checkpoints are loaded with skysense.load_official_weights"
        )
    return json.loads(metadata["config"])


def from_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> SkySense:
    """Rebuild a model saved by :func:`save_pretrained` (config from the file's metadata, then strict load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    model = SkySense(config_from_dict(read_config(path)))
    load_state_dict_strict(model, load_file(str(path), device=str(map_location)), f"weights file {path}")
    return model.to(map_location)


def torch_load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt``/``.ckpt`` file safely (``weights_only=True``) and unwrap ``state_dict``/``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return checkpoint


def load_official_weights(
    model: SkySense,
    hr: str | Path | None = None,
    s2: str | Path | None = None,
    s1: str | Path | None = None,
    s2_head: str | Path | None = None,
    s1_head: str | Path | None = None,
    fusion: str | Path | None = None,
) -> SkySense:
    """Load any of the six official SkySense checkpoint files into ``model`` (normally the ``paper`` preset).

    For an RGB+NIR HR encoder (``hr={"in_chans": 4}``) the NIR patch-embedding weights are copied from the red
    channel, as the official converter does.
    """
    converters: dict[str, Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
        "hr": lambda sd: convert_official_hr_state_dict(sd, model.hr),
        "s2": convert_official_vit_state_dict,
        "s1": convert_official_vit_state_dict,
        "s2_head": convert_official_upsample_head_state_dict,
        "s1_head": convert_official_upsample_head_state_dict,
        "fusion": convert_official_fusion_state_dict,
    }
    files = {"hr": hr, "s2": s2, "s1": s1, "s2_head": s2_head, "s1_head": s1_head, "fusion": fusion}
    for name, path in files.items():
        if path is None:
            continue
        module = getattr(model, name)
        if module is None:
            raise ValueError(f"cannot load {path}: this model has no {name} module")
        converted = converters[name](torch_load_weights(path))
        load_state_dict_strict(module, converted, f"official {name} checkpoint {path}")
    return model


def load_backbone_weights(backbone: SkySense, path: str | Path, network: str = "teacher") -> list[str]:
    """Load pretrained weights into a (possibly partial) backbone for fine-tuning.

    Reads a ``.safetensors`` file of :func:`save_pretrained`, or a pretraining checkpoint (``.ckpt`` of
    ``skysense pretrain``, read with ``weights_only=True``) whose ``network`` ("teacher", the EMA network that
    DINO-style methods evaluate, or "student") is taken. Every parameter and buffer of ``backbone`` must be in the
    file with its shape; modules the file has but the backbone was built without (e.g. S1 for an HR-only task) are
    skipped and returned.

    Returns:
        The top-level modules of the file that were not loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        read_config(path)  # refuses files that are not ours
        state = load_file(str(path))
    else:
        if network not in ("teacher", "student"):
            raise ValueError(f"network must be 'teacher' or 'student', got {network!r}")
        checkpoint = torch_load_weights(path)
        prefix = f"meta.{network}.backbone."
        state = {k[len(prefix) :]: v for k, v in checkpoint.items() if k.startswith(prefix)}
        if not state:
            raise KeyError(f"{path} has no '{prefix}*' weights: is it a skysense pretraining checkpoint?")
    own_modules = {name.split(".", 1)[0] for name in backbone.state_dict()}
    skipped = sorted({k.split(".", 1)[0] for k in state} - own_modules)
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] in own_modules}
    load_state_dict_strict(backbone, state, f"weights file {path}")
    return skipped
