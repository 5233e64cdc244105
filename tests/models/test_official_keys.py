"""The official SkySense tensor names and shapes map onto the ``paper`` preset, module by module.

``tests/data/official/paper_keys.json`` lists every tensor of the official HR Swin V2, S2 and S1 ViTs and fusion neck
at the paper's sizes, dumped from the official definitions (SkySense++'s ``lib/models``, built on mmcls/mmseg) by
``scripts/official_parity.py --keys-out`` — names and shapes only, no weights. That script also compares the outputs
numerically where mmcv can be installed; this test runs everywhere (meta tensors: nothing is allocated).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skysense import create_model
from skysense.models.fusion import convert_official_fusion_state_dict
from skysense.models.swin_v2 import convert_official_hr_state_dict
from skysense.models.vit import convert_official_vit_state_dict

KEYS = Path(__file__).resolve().parents[1] / "data" / "official" / "paper_keys.json"


@pytest.fixture(scope="module")
def official() -> dict[str, dict[str, torch.Tensor]]:
    modules = json.loads(KEYS.read_text())["modules"]
    return {
        name: {key: torch.empty(shape, device="meta") for key, shape in tensors}
        for name, tensors in modules.items()
    }  # fmt: skip


@pytest.fixture(scope="module")
def paper() -> torch.nn.Module:
    return create_model("paper", device="meta")


def _shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


@pytest.mark.parametrize("name", ["hr", "s2", "s1", "fusion"])
def test_every_official_tensor_maps_onto_the_paper_preset(official, paper, name: str) -> None:
    module = getattr(paper, name)
    converters = {"hr": lambda sd: convert_official_hr_state_dict(sd, module), "s2": convert_official_vit_state_dict,
                  "s1": convert_official_vit_state_dict, "fusion": convert_official_fusion_state_dict}  # fmt: skip
    converted = _shapes(converters[name](official[name]))
    ours = _shapes(module.state_dict())
    if name == "fusion":  # the day-of-year table is the pipeline model's parameter (ctpe), not the neck's
        assert set(ours) - set(converted) == {"date_encoding.weight"}
        ours.pop("date_encoding.weight")
    assert converted == ours


def test_the_official_file_list_is_the_released_architecture(official) -> None:
    # HR: 429 parameters (655,074,704 values) as in the third-party dump of the released checkpoint, plus the
    # relative-position buffers mmcls stores; the ViTs are ViT-L/4 with a 16×16 position grid and a cls token.
    hr_parameters = {k: v for k, v in official["hr"].items() if "relative_" not in k}
    assert len(hr_parameters) == 429
    assert sum(v.numel() for v in hr_parameters.values()) == 655_074_704
    assert tuple(official["s2"]["pos_embed"].shape) == (1, 257, 1024)
    assert tuple(official["s2"]["patch_embed.projection.weight"].shape) == (1024, 10, 4, 4)
    assert tuple(official["s1"]["patch_embed.projection.weight"].shape) == (1024, 2, 4, 4)
    assert tuple(official["fusion"]["porj_linear.weight"].shape) == (1024, 2816)
