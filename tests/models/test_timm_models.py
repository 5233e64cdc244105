"""The encoders in timm's registry: timm's own feature wrapper, its forward_intermediates contract, local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.models._features import FeatureGetterNet

import skysense
from skysense.models.timm_models import MODALITIES


def test_every_preset_encoder_is_registered() -> None:
    names = set(timm.list_models("skysense_*"))
    for preset in skysense.list_presets():
        for modality in MODALITIES:
            assert f"skysense_{modality}_{preset}" in names


def test_features_only_through_timms_feature_getter() -> None:
    hr = timm.create_model("skysense_hr_tiny", features_only=True, out_indices=(1, 3))
    assert isinstance(hr, FeatureGetterNet)
    assert hr.feature_info.channels() == [64, 256] and hr.feature_info.reduction() == [8, 32]
    maps = hr(torch.randn(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 64, 8, 8), (2, 256, 2, 2)]
    s2 = timm.create_model("skysense_s2_tiny", features_only=True, out_indices=2)  # the last two blocks
    assert [tuple(m.shape) for m in s2(torch.randn(2, 10, 32, 32))] == [(2, 64, 8, 8)] * 2
    # the default outputs: timm's last 4 blocks of a ViT, or every block of the tiny preset's 2
    for name, outputs in (("skysense_s1_tiny", 2), ("skysense_s1_small", 4)):
        default = timm.create_model(name, features_only=True)
        assert len(default.feature_info.out_indices) == outputs, name
        assert len(default(torch.randn(1, 2, 32, 32))) == outputs, name


def test_forward_intermediates_follows_timms_contract() -> None:
    model = timm.create_model("skysense_hr_tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, indices=[0, 2])
        only = model.forward_intermediates(x, indices=2, intermediates_only=True, output_fmt="NHWC")
        assert model.forward_intermediates(x, indices=[0], stop_early=True)[0] is None
        torch.testing.assert_close(final, model.forward_features(x))
        torch.testing.assert_close(maps[1], only[0].permute(0, 3, 1, 2))
    assert [tuple(m.shape) for m in maps] == [(1, 32, 16, 16), (1, 128, 4, 4)]
    assert isinstance(model.feature_info[0], dict) and model.feature_info[0]["num_chs"] == 32


def test_pretrained_from_a_local_skysense_file(tmp_path: Path) -> None:
    whole = skysense.create_model("tiny")
    path = skysense.save_pretrained(whole, tmp_path / "tiny.safetensors")
    model = timm.create_model("skysense_s1_tiny", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    for name, value in model.state_dict().items():
        assert torch.equal(value, whole.s1.state_dict()[name]), name
    with pytest.raises(ValueError, match="no download address"):
        timm.create_model("skysense_s1_tiny", pretrained=True)
