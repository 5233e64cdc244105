"""skysense: the SkySense multi-modal remote-sensing foundation model (Guo et al., CVPR 2024) in PyTorch."""

import sys as _sys

from skysense.batch import SkySenseInput, SkySenseOutput
from skysense.models import timm_models as _timm_models  # noqa: F401  (registers skysense_* in timm)
from skysense.models.registry import count_parameters, create_model, get_config, list_presets
from skysense.models.skysense import SkySense, SkySenseConfig
from skysense.models.weights import from_pretrained, load_official_weights, save_pretrained

if "terratorch" in _sys.modules:  # TerraTorch is in use: register the encoders in its backbone registry too
    from skysense.models import terratorch_models as _terratorch_models  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "SkySense",
    "SkySenseConfig",
    "SkySenseInput",
    "SkySenseOutput",
    "count_parameters",
    "create_model",
    "from_pretrained",
    "get_config",
    "list_presets",
    "load_official_weights",
    "save_pretrained",
]
