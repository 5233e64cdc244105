"""Swin V2 HR encoder: parity with timm, attention paths, gradients, input checks and the official-weight mapping."""

from __future__ import annotations

import ast
import csv
import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F
from timm.models import swin_transformer_v2 as timm_swin
from torch import nn

from skysense.models.swin_v2 import (
    PatchMerging,
    SwinTransformerV2,
    SwinV2Config,
    WindowAttention,
    WindowGeometry,
    convert_official_hr_state_dict,
    convert_timm_swinv2_state_dict,
    official_hr_config_overrides,
)
from tests.conftest import shared_path

TINY = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.0)
PAPER = dict(
    embed_dim=352,
    depths=(2, 2, 18, 2),
    num_heads=(8, 16, 32, 64),
    window_size=8,
    extra_norm_period=6,
    output_norm_indices=(3,),
)
PAPER_PARAMETERS = 655_074_704


def _randomize(model: nn.Module) -> nn.Module:
    """Random values everywhere: the zero-initialised post-norms would otherwise turn every block into the identity."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    return model


def _tiny(**overrides: object) -> SwinTransformerV2:
    return _randomize(SwinTransformerV2(SwinV2Config(**{**TINY, **overrides})))


# ----------------------------------------------------------------------------------------------------------------------
# Parity with timm
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_size", "window_size", "pretrained_window_sizes"),
    [
        # maps 16, 8, 4, 2 with window 4: stages 0-1 shift; stage 2 equals the window, stage 3 is smaller (window 2)
        ((64, 64), 4, (0, 0, 0, 0)),
        # maps 32, 16, 8, 4 with window 4: stages 0-2 shift, stage 3 equals the window
        ((128, 128), 4, (0, 0, 0, 0)),
        # maps 24x64, 12x32 (padded to 16x32), 6x16 (window 6x8, shift along width only), 3x8
        ((96, 256), 8, (0, 0, 0, 0)),
        # coordinates normalised by pretrained windows other than the actual ones
        ((128, 128), 4, (6, 6, 3, 2)),
    ],
)
def test_matches_timm(image_size: tuple[int, int], window_size: int, pretrained_window_sizes: tuple[int, ...]) -> None:
    reference = timm_swin.SwinTransformerV2(
        img_size=image_size,
        embed_dim=TINY["embed_dim"],
        depths=TINY["depths"],
        num_heads=TINY["num_heads"],
        window_size=window_size,
        pretrained_window_sizes=pretrained_window_sizes,
        num_classes=0,
    )
    _randomize(reference).eval()
    config = SwinV2Config(
        **TINY,
        window_size=window_size,
        pretrained_window_sizes=pretrained_window_sizes,
        output_norm_indices=(3,),  # timm's final norm, applied to the last stage only
        pad_before_shift=False,  # timm pads after the cyclic shift
    )
    model = SwinTransformerV2(config).eval()
    model.load_state_dict(convert_timm_swinv2_state_dict(reference.state_dict()), strict=True)
    x = torch.randn(2, 3, *image_size)
    with torch.no_grad():
        expected_last = reference.forward_features(x).permute(0, 3, 1, 2)  # timm returns NHWC
        expected = reference.forward_intermediates(x, intermediates_only=True)[:3] + [expected_last]
        outputs = model(x)
        assert torch.allclose(model.forward_features(x), expected_last, atol=1e-5)
    for ours, theirs in zip(outputs, expected, strict=True):
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_timm_conversion_handles_original_microsoft_layout() -> None:
    """Original checkpoints merge at the end of stage i; timm (and we) at the start of stage i + 1."""
    reference = timm_swin.SwinTransformerV2(img_size=64, window_size=4, num_classes=5, **TINY)
    timm_state = reference.state_dict()
    original_state = {
        key.replace(f"layers.{stage}.downsample", f"layers.{stage - 1}.downsample"): value
        for key, value in timm_state.items()
        for stage in [int(key.split(".")[1]) if key.startswith("layers.") else 0]
    }
    assert "layers.0.downsample.reduction.weight" in original_state
    converted = convert_timm_swinv2_state_dict({"model": original_state})
    assert converted.keys() == convert_timm_swinv2_state_dict(timm_state).keys()
    model = SwinTransformerV2(SwinV2Config(**TINY, window_size=4, output_norm_indices=(3,)))
    model.load_state_dict(converted, strict=True)


def _mmpretrain_shift_window_attention(attn: WindowAttention, x: torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """mmpretrain's ShiftWindowMSA.forward, transcribed: pad, roll, slice-built mask, attend, roll back, crop."""
    batch, height, width, channels = x.shape
    x = F.pad(x, (0, 0, 0, (window - width % window) % window, 0, (window - height % window) % window))
    padded_h, padded_w = x.shape[1:3]
    x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    img_mask = torch.zeros(1, padded_h, padded_w, 1)
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for h in slices:
        for w in slices:
            img_mask[:, h, w, :] = count
            count += 1

    def partition(t: torch.Tensor) -> torch.Tensor:
        t = t.view(t.shape[0], padded_h // window, window, padded_w // window, window, t.shape[-1])
        return t.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, t.shape[-1])

    mask_windows = partition(img_mask).squeeze(-1)
    attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)
    coords = torch.arange(-(window - 1), window, dtype=torch.float32) / (window - 1) * 8
    coords = torch.sign(coords) * torch.log2(coords.abs() + 1) / 3
    coords_table = torch.stack(torch.meshgrid(coords, coords, indexing="ij"), dim=-1)
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    index = (rows[:, None] - rows[None] + window - 1) * (2 * window - 1) + cols[:, None] - cols[None] + window - 1
    geometry = WindowGeometry((window, window), (shift, shift), (padded_h, padded_w), coords_table, index, attn_mask)
    out = attn(partition(x), geometry)
    out = out.view(batch, padded_h // window, padded_w // window, window, window, channels)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_h, padded_w, channels)
    return torch.roll(out, shifts=(shift, shift), dims=(1, 2))[:, :height, :width]


def test_pad_before_shift_matches_mmpretrain_on_maps_that_need_padding() -> None:
    # (B, H, W, C): neither side a multiple of the window 8, padding (6 and 5) unequal to the shift (4); with padding
    # equal to the shift both orders happen to agree.
    x = torch.randn(2, 10, 19, 24)
    for pad_before_shift in (True, False):
        stage = _tiny(window_size=8, pad_before_shift=pad_before_shift).layers[0]
        block = stage.blocks[1]  # a shifted block
        _, shifted = stage.window_geometries((10, 19), x.device)
        assert shifted.shift == (4, 4) and shifted.padded_size == (16, 24)
        with torch.no_grad():
            ours = block._window_attention(x, shifted)
            expected = _mmpretrain_shift_window_attention(block.attn, x, window=8, shift=4)
        assert torch.allclose(ours, expected, atol=1e-5) == pad_before_shift


def test_padding_order_does_not_matter_for_window_multiples() -> None:
    first = _tiny(window_size=4).eval()
    second = SwinTransformerV2(SwinV2Config(**TINY, window_size=4, pad_before_shift=False)).eval()
    second.load_state_dict(first.state_dict())
    x = torch.randn(1, 3, 128, 128)  # maps 32, 16, 8, 4: all multiples of 4
    with torch.no_grad():
        for a, b in zip(first(x), second(x), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Attention paths, gradients, shapes, inputs
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [(64, 64), (96, 128)])
def test_sdpa_equals_manual(image_size: tuple[int, int]) -> None:
    fused = _tiny(window_size=4)
    manual = SwinTransformerV2(SwinV2Config(**TINY, window_size=4, fused_attn=False))
    manual.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, *image_size)
    for ours, theirs in zip(fused(x), manual(x), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("fused_attn", [True, False])
def test_every_parameter_gets_a_finite_gradient(fused_attn: bool) -> None:
    model = _tiny(window_size=4, extra_norm_period=1, fused_attn=fused_attn)
    outputs = model(torch.randn(2, 3, 64, 64))
    sum(output.sum() for output in outputs).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_gradient_checkpointing_gives_same_outputs_and_gradients() -> None:
    model = _tiny(window_size=4)
    x = torch.randn(2, 3, 64, 96)
    results = []
    for enabled in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enabled)
        outputs = model(x)
        sum(output.square().mean() for output in outputs).backward()
        results.append(([o.detach() for o in outputs], {n: p.grad.clone() for n, p in model.named_parameters()}))
    (plain_out, plain_grads), (ckpt_out, ckpt_grads) = results
    for plain, ckpt in zip(plain_out, ckpt_out, strict=True):
        assert torch.allclose(plain, ckpt, atol=1e-6)
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, ckpt_grads[name], atol=1e-5), name


@pytest.mark.parametrize("in_chans", [3, 4])
@pytest.mark.parametrize("image_size", [(64, 64), (96, 128)])
def test_output_shapes(in_chans: int, image_size: tuple[int, int]) -> None:
    model = _tiny(in_chans=in_chans, window_size=8).eval()
    height, width = image_size
    with torch.no_grad():
        outputs = model(torch.randn(2, in_chans, height, width))
    assert model.out_channels == [24, 48, 96, 192]
    assert model.reductions == [4, 8, 16, 32]
    assert [info.module for info in model.feature_info] == ["layers.0", "layers.1", "layers.2", "layers.3"]
    for output, channels, reduction in zip(outputs, model.out_channels, model.reductions, strict=True):
        assert output.shape == (2, channels, height // reduction, width // reduction)
        assert torch.isfinite(output).all()


def test_indices_and_output_norms() -> None:
    model = _tiny(window_size=4, output_norm_indices=(1, 3)).eval()
    assert sorted(model.norms.keys()) == ["1", "3"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        every = model.forward_maps(x)
        picked = model.forward_maps(x, indices=[-1, 1])
        assert torch.equal(model.forward_features(x), every[3])
    assert [tuple(o.shape[1:]) for o in picked] == [(48, 8, 8), (192, 2, 2)]
    assert torch.equal(picked[0], every[1]) and torch.equal(picked[1], every[3])
    # Stages 1 and 3 go through their output norms, stages 0 and 2 come out as they are.
    bare = SwinTransformerV2(SwinV2Config(**TINY, window_size=4, output_norm_indices=())).eval()
    bare.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("norms.")})
    with torch.no_grad():
        unnormed = bare.forward_maps(x)
        for stage in (0, 2):
            assert torch.equal(every[stage], unnormed[stage])
        for stage in (1, 3):
            normed = model.norms[str(stage)](unnormed[stage].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            assert torch.allclose(every[stage], normed, atol=1e-6)
    with pytest.raises(IndexError):
        model.forward_maps(x, indices=[4])


def test_extra_norm_placement() -> None:
    model = SwinTransformerV2(SwinV2Config(**{**TINY, "depths": (2, 2, 7, 2)}, extra_norm_period=3))
    with_norm3 = [
        (stage, block)
        for stage, layer in enumerate(model.layers)
        for block, module in enumerate(layer.blocks)
        if module.norm3 is not None
    ]
    assert with_norm3 == [(2, 2), (2, 5)]


def test_wrong_input_raises() -> None:
    model = SwinTransformerV2(SwinV2Config(**TINY, in_chans=4))
    with pytest.raises(ValueError, match=r"4 channels.*\(2, 3, 64, 64\)"):
        model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"multiples of 32.*64x80|multiples of 32.*80x64"):
        model(torch.randn(1, 4, 80, 64))


def test_builds_on_meta_device_with_paper_parameter_count() -> None:
    with torch.device("meta"):
        model = SwinTransformerV2(SwinV2Config(**PAPER))
    assert sum(parameter.numel() for parameter in model.parameters()) == PAPER_PARAMETERS
    assert model.out_channels == [352, 704, 1408, 2816]
    assert not list(model.buffers())  # everything non-learned is computed on the fly


# ----------------------------------------------------------------------------------------------------------------------
# Official SkySense checkpoint mapping
# ----------------------------------------------------------------------------------------------------------------------


def _official_meta_state_dict(prefix: str) -> dict[str, torch.Tensor]:
    """Zero-cost stand-in for the released HR checkpoint: the real names and shapes, tensors on the meta device."""
    table = shared_path("skysense_official_hr_keys", "backbone_params.csv")
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 429
    return {prefix + row["full_param_name"]: torch.empty(ast.literal_eval(row["shape"]), device="meta") for row in rows}


@pytest.mark.parametrize("prefix", ["", "backbone."])
def test_official_keys_map_onto_paper_model(prefix: str) -> None:
    state_dict = _official_meta_state_dict(prefix)
    assert sum(tensor.numel() for tensor in state_dict.values()) == PAPER_PARAMETERS
    # What the real file holds beyond the parameters: the unused mask token and mmpretrain's persistent buffers.
    state_dict[prefix + "mask_token"] = torch.empty(1, 1, 352, device="meta")
    state_dict[prefix + "stages.0.blocks.0.attn.w_msa.relative_coords_table"] = torch.empty(1, 15, 15, 2, device="meta")
    state_dict[prefix + "stages.0.blocks.0.attn.w_msa.relative_position_index"] = torch.empty(64, 64, device="meta")
    with torch.device("meta"):
        model = SwinTransformerV2(SwinV2Config(**PAPER))
    converted = convert_official_hr_state_dict(state_dict, model)
    expected = model.state_dict()
    assert converted.keys() == expected.keys()
    for name, tensor in expected.items():
        assert converted[name].shape == tensor.shape, name
    model.load_state_dict(converted, strict=True, assign=True)


def test_official_config_overrides_give_paper_architecture() -> None:
    overrides = official_hr_config_overrides(_official_meta_state_dict("backbone."))
    assert SwinV2Config(**overrides) == SwinV2Config(**PAPER)


def test_patch_merging_matches_mmcv_unfold_merging() -> None:
    """mmcv/mmpretrain merge with nn.Unfold (channel-major); the converted weights must give the same result."""
    channels = 5
    unfold = nn.Unfold(kernel_size=2, stride=2)
    reduction = nn.Linear(4 * channels, 2 * channels, bias=False)
    norm = nn.LayerNorm(2 * channels)
    _randomize(reduction), _randomize(norm)
    x = torch.randn(2, 6, 8, channels)  # (B, H, W, C)
    with torch.no_grad():
        columns = unfold(x.permute(0, 3, 1, 2)).transpose(1, 2)  # (B, H/2*W/2, 4C), feature c*4 + kh*2 + kw
        expected = norm(reduction(columns)).reshape(2, 3, 4, 2 * channels)

    official = {
        "stages.1.downsample.reduction.weight": reduction.weight,
        "stages.1.downsample.norm.weight": norm.weight,
        "stages.1.downsample.norm.bias": norm.bias,
    }
    converted = convert_official_hr_state_dict(official)
    merging = PatchMerging(channels)
    merging.load_state_dict({key.removeprefix("layers.1.downsample."): value for key, value in converted.items()})
    with torch.no_grad():
        assert torch.allclose(merging(x), expected, atol=1e-6)


def test_rgb_checkpoint_widened_to_rgb_nir_with_red_copy() -> None:
    weight, bias = torch.randn(24, 3, 4, 4), torch.randn(24)
    official = {"backbone.patch_embed.projection.weight": weight, "backbone.patch_embed.projection.bias": bias}
    model = SwinTransformerV2(SwinV2Config(**TINY, in_chans=4))
    converted = convert_official_hr_state_dict(official, model)
    widened = converted["patch_embed.proj.weight"]
    assert widened.shape == (24, 4, 4, 4)
    assert torch.equal(widened[:, :3], weight)
    assert torch.equal(widened[:, 3], weight[:, 0])
    assert torch.equal(converted["patch_embed.proj.bias"], bias)
    # Without a model, or with an RGB model, nothing changes; other band counts are refused.
    assert torch.equal(convert_official_hr_state_dict(official)["patch_embed.proj.weight"], weight)
    with pytest.raises(ValueError, match="3 input bands and the model 5"):
        convert_official_hr_state_dict(official, SwinTransformerV2(SwinV2Config(**TINY, in_chans=5)))


def test_unknown_official_keys_are_listed() -> None:
    official = {
        "backbone.patch_embed.norm.weight": torch.ones(24),
        "backbone.decode_head.conv.weight": torch.ones(1),
        "stages.0.blocks.0.attn.w_msa.unknown": torch.ones(1),
    }
    listed = r"backbone\.decode_head\.conv\.weight.*stages\.0\.blocks\.0\.attn\.w_msa\.unknown"
    with pytest.raises(KeyError, match=listed):
        convert_official_hr_state_dict(official)


def test_output_norms_the_model_lacks_are_refused_with_a_hint() -> None:
    official = {f"norm{stage}.weight": torch.ones(24 * 2**stage) for stage in range(4)}
    model = SwinTransformerV2(SwinV2Config(**TINY, output_norm_indices=(3,)))
    with pytest.raises(KeyError, match=r"norms\.0\.weight.*output_norm_indices=\(0, 1, 2, 3\)"):
        convert_official_hr_state_dict(official, model)
    model = SwinTransformerV2(SwinV2Config(**TINY, output_norm_indices=(0, 1, 2, 3)))
    assert len(convert_official_hr_state_dict(official, model)) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(convert_official_hr_state_dict(official)) == 4


def test_attention_path_is_chosen_per_device_unless_set() -> None:
    """Default (None): the explicit softmax on CUDA, SDPA elsewhere; True/False force a path on every device."""
    from skysense.models.swin_v2 import WindowAttention

    default, fused, explicit = (WindowAttention(16, 2, fused_attn=f) for f in (None, True, False))
    assert SwinV2Config().fused_attn is None
    assert default.uses_fused_attention(torch.device("cpu"))
    assert not default.uses_fused_attention(torch.device("cuda"))
    for device in (torch.device("cpu"), torch.device("cuda")):
        assert fused.uses_fused_attention(device) and not explicit.uses_fused_attention(device)


def test_post_norm_init_option() -> None:
    """0 (Swin V2, timm): every block starts as the identity; 1: plain LayerNorms, and the blocks change the features."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    identity = SwinTransformerV2(SwinV2Config(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4,
                                              pretrained_window_sizes=(0, 0), out_indices=(1,), output_norm_indices=(1,)))  # fmt: skip
    plain = SwinTransformerV2(dataclasses.replace(identity.config, post_norm_init=1.0))
    plain.load_state_dict(identity.state_dict())
    assert all(not b.norm1.weight.any() for layer in identity.layers for b in layer.blocks)
    torch.manual_seed(0)
    fresh = SwinTransformerV2(dataclasses.replace(identity.config, post_norm_init=1.0))
    assert all(
        torch.equal(b.norm2.weight, torch.ones_like(b.norm2.weight)) for layer in fresh.layers for b in layer.blocks
    )
    with torch.no_grad():
        assert torch.equal(plain(x)[-1], identity(x)[-1])  # checkpoint weights replace the init
        assert not torch.allclose(fresh(x)[-1], identity(x)[-1])


@pytest.mark.parametrize("patch_size", [2, 4, 8])
def test_conv_stem_gives_the_patch_stem_shapes(patch_size: int) -> None:
    """``stem="conv"``: log2(p) stride-2 3x3 convolutions with the patch embedding's output grid and width; every
    parameter trains, and in eval mode (running statistics) an image's features do not depend on its batch."""
    kwargs = dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, pretrained_window_sizes=(0, 0),
                  out_indices=(0, 1), output_norm_indices=(1,), patch_size=patch_size)  # fmt: skip
    torch.manual_seed(0)
    patch = SwinTransformerV2(SwinV2Config(**kwargs))
    conv = SwinTransformerV2(SwinV2Config(**kwargs, stem="conv"))
    x = torch.randn(3, 3, 64, 64)
    assert [m.shape for m in conv(x)] == [m.shape for m in patch(x)]
    strided = [m for m in conv.patch_embed.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == {2: 1, 4: 2, 8: 3}[patch_size]
    sum(m.sum() for m in conv(x)).backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in conv.parameters())
    conv.eval()
    with torch.no_grad():
        torch.testing.assert_close(conv(x[:1])[-1], conv(x)[-1][:1], rtol=1e-4, atol=1e-5)


def test_conv_stem_needs_a_power_of_two_patch() -> None:
    with pytest.raises(ValueError, match="power of 2"):
        SwinV2Config(patch_size=3, stem="conv")
    with pytest.raises(ValueError, match="stem must be"):
        SwinV2Config(stem="convolutional")
