"""Sentinel ViT: parity with timm's VisionTransformer, and the official (mmseg) checkpoint mapping checked against
a transformer layer built from torch's own nn.MultiheadAttention."""

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from skysense.models.vit import (
    UpsampleHead,
    UpsampleHeadConfig,
    VisionTransformer,
    ViTConfig,
    convert_official_upsample_head_state_dict,
    convert_official_vit_state_dict,
)
from tests.models.reference import MmsegLayer


def _pair(in_chans: int = 10, img: int = 32, dim: int = 64, depth: int = 3, heads: int = 4):
    cfg = ViTConfig(
        in_chans=in_chans, img_size=img, patch_size=4, embed_dim=dim, depth=depth, num_heads=heads, drop_path_rate=0.0
    )
    ours = VisionTransformer(cfg).eval()
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=img,
        patch_size=4,
        in_chans=in_chans,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        num_classes=0,
        dynamic_img_size=True,
    ).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


@pytest.mark.parametrize("in_chans,dim,heads", [(10, 64, 4), (2, 48, 3)])
def test_matches_timm(in_chans: int, dim: int, heads: int) -> None:
    ours, ref = _pair(in_chans, dim=dim, heads=heads)
    x = torch.randn(2, in_chans, 32, 32)
    expected = ref.forward_features(x)[:, 1:]  # (B, N, D) without the cls token
    got = ours.forward_features(x)  # (B, D, h, w)
    assert got.shape == (2, dim, 8, 8)
    assert torch.allclose(got.flatten(2).transpose(1, 2), expected, atol=1e-5)


def test_other_input_size_interpolates_position_embedding_like_timm() -> None:
    # timm resizes with antialiasing; our default is the official (mmseg) plain bicubic, which
    # scripts/official_parity.py checks against the official ViT; the option gives timm's
    ours, ref = _pair()
    ours.config.pos_embed_antialias = True
    x = torch.randn(1, 10, 48, 40)
    expected = ref.forward_features(x)[:, 1:]
    got = ours.forward_features(x)
    assert got.shape == (1, 64, 12, 10)
    assert torch.allclose(got.flatten(2).transpose(1, 2), expected, atol=1e-5)


def test_position_embedding_is_resized_as_the_official_code_does() -> None:
    # mmseg's VisionTransformer.resize_pos_embed: the cls row kept, the grid through F.interpolate(bicubic,
    # align_corners=False) without antialiasing (scripts/official_parity.py compares the whole official ViT)
    ours, _ = _pair()
    grid = ours.pos_embed[:, 1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(12, 10), mode="bicubic", align_corners=False)
    expected = torch.cat([ours.pos_embed[:, :1], resized.flatten(2).transpose(1, 2)], dim=1)
    tokens = torch.zeros(1, 120, ours.config.embed_dim)
    got = ours._pos_embed(tokens, (12, 10)) - torch.cat([ours.cls_token, tokens], dim=1)
    assert torch.allclose(got, expected, atol=1e-6)


def test_intermediates_gradients_and_checkpointing() -> None:
    ours, _ = _pair(depth=4)
    ours.config.out_indices = (1, 3)
    ours.out_indices = [1, 3]
    x = torch.randn(2, 10, 32, 32)
    maps = ours(x)
    assert [m.shape for m in maps] == [(2, 64, 8, 8)] * 2
    ours.train()
    out = ours.forward_features(x)
    out.sum().backward()
    missing = [n for n, p in ours.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
    ours.zero_grad()
    ours.set_grad_checkpointing(True)
    out_ckpt = ours.forward_features(x)
    out_ckpt.sum().backward()
    assert torch.allclose(out, out_ckpt)
    assert all(torch.allclose(grads[n], p.grad, atol=1e-6) for n, p in ours.named_parameters())


def test_sdpa_equals_manual() -> None:
    ours, _ = _pair()
    x = torch.randn(2, 10, 32, 32)
    fused = ours.forward_features(x)
    for block in ours.blocks:
        block.attn.fused_attn = False
    assert torch.allclose(fused, ours.forward_features(x), atol=1e-5)


def test_wrong_channels_is_a_clear_error() -> None:
    ours, _ = _pair()
    with pytest.raises(ValueError, match=r"\(B, 10, H, W\)"):
        ours(torch.randn(1, 3, 32, 32))


def test_official_mapping_matches_multihead_attention_layer() -> None:
    dim, heads = 32, 4
    reference = nn.Module()
    reference.layers = nn.ModuleList([MmsegLayer(dim, heads) for _ in range(2)])
    reference.patch_embed = nn.Module()
    reference.patch_embed.projection = nn.Conv2d(2, dim, 4, 4)
    reference.ln1 = nn.LayerNorm(dim)
    for p in reference.parameters():
        nn.init.normal_(p, std=0.2)
    official = {f"backbone.{k}": v for k, v in reference.state_dict().items()}
    official["backbone.cls_token"] = torch.randn(1, 1, dim)
    official["backbone.pos_embed"] = torch.randn(1, 1 + 16, dim)
    cfg = ViTConfig(in_chans=2, img_size=16, embed_dim=dim, depth=2, num_heads=heads, norm_eps=1e-5, drop_path_rate=0.0)
    ours = VisionTransformer(cfg).eval()
    ours.load_state_dict(convert_official_vit_state_dict(official), strict=True)

    x = torch.randn(2, 2, 16, 16)
    tokens = reference.patch_embed.projection(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([official["backbone.cls_token"].expand(2, -1, -1), tokens], 1) + official["backbone.pos_embed"]
    for layer in reference.layers:
        tokens = layer(tokens)
    expected = reference.ln1(tokens)[:, 1:]
    got = ours.forward_features(x).flatten(2).transpose(1, 2)
    assert torch.allclose(got, expected, atol=1e-5)


def test_official_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(KeyError, match="layers.0.mystery"):
        convert_official_vit_state_dict({"layers.0.mystery.weight": torch.zeros(1), "cls_token": torch.zeros(1)})


def test_upsample_head_shapes_and_official_mapping() -> None:
    head = UpsampleHead(UpsampleHeadConfig(in_dim=16, out_dim=8, scale=4))
    assert head(torch.randn(2, 16, 4, 4)).shape == (2, 8, 16, 16)
    weights = {"anything.weight": torch.randn(128, 16, 1, 1), "anything.bias": torch.randn(128)}
    head.load_state_dict(convert_official_upsample_head_state_dict(weights))
    assert torch.equal(head.conv.weight, weights["anything.weight"])
    with pytest.raises(KeyError, match="one 1×1 conv"):
        convert_official_upsample_head_state_dict({"a": torch.zeros(3)})
