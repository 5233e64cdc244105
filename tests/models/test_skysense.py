"""The composite model: modality subsets, padding equivalence, gradients, sizes of the paper preset, weights."""

from __future__ import annotations

import pytest
import torch

import skysense
from skysense import SkySenseInput, count_parameters, create_model, from_pretrained, get_config, save_pretrained
from skysense.containers import NO_DATE


@pytest.fixture(scope="module")
def model() -> skysense.SkySense:
    torch.manual_seed(0)
    return create_model("tiny").eval()


def _inputs(batch: int = 2, s2_steps: int = 3, s1_steps: int = 2, hr_size: int = 256, grid: int = 8) -> dict:
    return dict(
        hr=torch.randn(batch, 3, hr_size, hr_size),
        s2=torch.randn(batch, s2_steps, 10, grid, grid),
        s2_day_of_year=torch.randint(0, 365, (batch, s2_steps)),
        s1=torch.randn(batch, s1_steps, 2, grid, grid),
        s1_day_of_year=torch.randint(0, 365, (batch, s1_steps)),
        lat=torch.tensor([45.0, -12.0])[:batch],
        lon=torch.tensor([7.0, 130.0])[:batch],
    )


@pytest.mark.parametrize("modalities", [("hr",), ("s2",), ("s1",), ("s2", "s1"), ("hr", "s2", "s1")])
def test_any_subset_of_modalities(model: skysense.SkySense, modalities: tuple[str, ...]) -> None:
    full = _inputs()
    keep = {k: v for k, v in full.items() if k.split("_")[0] in modalities or k in ("lat", "lon")}
    with torch.no_grad():
        out = model(**keep)
    assert out.features.shape == (2, 128, 8, 8)
    assert out.fused.shape == (2, 64, 8, 8) and out.geo.shape == (2, 64, 8, 8)
    assert torch.isfinite(out.features).all()
    assert (out.hr_features is not None) == ("hr" in modalities)
    if "s2" in modalities:
        assert out.s2_features.shape == (2, 3, 256, 8, 8)


def test_padded_batch_equals_unpadded_samples(model: skysense.SkySense) -> None:
    """Sample A: HR + 3 S2 + 1 S1 frames; sample B: no HR, 1 S2 + 4 S1 frames. Padding holds garbage."""
    a = _inputs(batch=1, s2_steps=3, s1_steps=1)
    b = _inputs(batch=1, s2_steps=1, s1_steps=4)
    b.pop("hr")
    b["lat"], b["lon"] = torch.tensor([-12.0]), torch.tensor([130.0])
    with torch.no_grad():
        single_a = model(**a).features
        single_b = model(**b).features

    def pad(x: torch.Tensor, steps: int) -> torch.Tensor:
        filler = torch.randn(x.shape[0], steps - x.shape[1], *x.shape[2:]) * 100
        return torch.cat([x, filler.to(x.dtype) if x.is_floating_point() else filler.abs().long() % 365], 1)

    batch = SkySenseInput(
        hr=torch.cat([a["hr"], torch.randn(1, 3, 256, 256) * 100]),
        hr_valid=torch.tensor([True, False]),
        s2=torch.cat([a["s2"], pad(b["s2"], 3)]),
        s2_day_of_year=torch.cat([a["s2_day_of_year"], pad(b["s2_day_of_year"], 3)]),
        s2_valid=torch.tensor([[True, True, True], [True, False, False]]),
        s1=torch.cat([pad(a["s1"], 4), b["s1"]]),
        s1_day_of_year=torch.cat([pad(a["s1_day_of_year"], 4), b["s1_day_of_year"]]),
        s1_valid=torch.tensor([[True, False, False, False], [True] * 4]),
        lat=torch.cat([a["lat"], b["lat"]]),
        lon=torch.cat([a["lon"], b["lon"]]),
    )
    with torch.no_grad():
        padded = model(batch)
    assert torch.allclose(padded.features[0], single_a[0], atol=1e-5)
    assert torch.allclose(padded.features[1], single_b[0], atol=1e-5)
    assert torch.equal(padded.s2_features[1, 1:], torch.zeros_like(padded.s2_features[1, 1:]))


def test_sentinel_features_are_the_encoder_output_and_the_date_encoding_is_not_added_to_them(
    model: skysense.SkySense,
) -> None:
    """With every frame valid the encoder's output is returned as it is (no zeroed copy), and with one modality the
    fused stack is a new tensor: ``s2_features`` stays the head's output, equal to a frame encoded alone."""
    inputs = {k: v for k, v in _inputs().items() if not k.startswith(("hr", "s1"))}
    with torch.no_grad():
        out = model(**inputs)
        alone = model.s2_head(model.s2.forward_features(inputs["s2"][1, 2:3]))
        masked = model(**inputs, s2_valid=torch.tensor([[True, True, False], [True, True, True]]))
    assert torch.allclose(out.s2_features[1, 2], alone[0], atol=1e-5)  # batched BLAS: not bit for bit
    assert torch.allclose(masked.s2_features[1], out.s2_features[1], atol=1e-6)  # the same frames, one path each
    assert torch.equal(masked.s2_features[0, 2], torch.zeros_like(alone[0]))


def test_a_modality_without_any_valid_frame_counts_as_absent(model: skysense.SkySense) -> None:
    """A batch whose S1 frames are all invalid (a chip of NaNs, as the real Paraguay_34417 one) fuses its S2 alone, as
    an all-invalid HR image is left out; with no valid input at all the error says so."""
    inputs = {k: v for k, v in _inputs().items() if not k.startswith("hr")}
    with torch.no_grad():
        without = model(**{k: v for k, v in inputs.items() if not k.startswith("s1")})
        invalid = model(**inputs, s1_valid=torch.zeros(2, 2, dtype=torch.bool))
        with pytest.raises(ValueError, match="no valid input in the batch"):
            model(**inputs, s1_valid=torch.zeros(2, 2, dtype=torch.bool), s2_valid=torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(invalid.features, without.features) and invalid.s1_features is None


def test_every_parameter_gets_a_gradient_and_checkpointing_matches() -> None:
    torch.manual_seed(1)
    net = create_model("tiny").train()
    inputs = _inputs()
    out = net(**inputs)
    loss = out.features.square().mean() + sum(f.mean() for f in out.hr_features)
    loss.backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    net.set_grad_checkpointing(True)
    out_ckpt = net(**inputs)
    (out_ckpt.features.square().mean() + sum(f.mean() for f in out_ckpt.hr_features)).backward()
    assert torch.allclose(out.features, out_ckpt.features, atol=1e-6)
    assert all(torch.allclose(grads[n], p.grad, atol=1e-5) for n, p in net.named_parameters())


def test_paper_preset_sizes_on_meta_device() -> None:
    paper = create_model("paper", device="meta")
    assert next(paper.parameters()).is_meta
    counts = count_parameters(paper, get_config("paper").projection)
    assert counts["hr"] == 655_074_704  # the released checkpoint, exactly
    targets = {
        "hr": 654e6,
        "s2": 302e6,
        "s1": 302e6,
        "fusion": 398e6,
        "prototypes": 215e6,
        "projection": 189e6,
        "total": 2.06e9,
    }
    for name, target in targets.items():
        assert abs(counts[name] - target) / target < 0.02, (name, counts[name], target)


def test_cpu_preset_has_a_3_stage_conv_stem_hr_encoder_pooled_onto_the_sentinel_grid() -> None:
    """The CPU pretraining preset: every width agrees (the model builds), the HR encoder is 3 stages with a
    convolutional stem and post-norms at 1, a 64×64 EuroSAT-sized image gives a 4×4 last stage, and its stride-16
    map is average-pooled onto the Sentinel grid (one Sentinel pixel = ``hr_ratio`` = 32 HR pixels) in the fusion."""
    net = create_model("cpu").eval()
    assert [info.num_chs for info in net.hr.feature_info] == [96, 192, 384]
    assert [info.reduction for info in net.hr.feature_info] == [4, 8, 16]
    assert net.config.hr.stem == "conv" and net.config.hr_ratio == 32
    assert all(float(block.norm1.weight.mean()) == 1.0 for stage in net.hr.layers for block in stage.blocks)
    hr = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert net.hr(torch.randn(2, 3, 64, 64))[-1].shape == (2, 384, 4, 4)  # EuroSAT-sized: a 4×4 last stage
        out = net(hr=hr, s2=torch.randn(1, 3, 10, 8, 8), s2_day_of_year=torch.tensor([[1, 30, 60]]), use_geo=False)
        assert out.hr_features[-1].shape == (1, 384, 16, 16)  # the HR features keep their stride
        assert out.features.shape == (1, 64, 8, 8)
        # the HR token of a location is the mean of its 2×2 stride-16 cells: fusing the HR image alone equals
        # fusing that pooled map as the only time step
        alone = net(hr=hr, use_geo=False).features
        pooled = torch.nn.functional.avg_pool2d(out.hr_features[-1], 2)[:, None]
        day = net.fusion.date_encoding.rows(torch.full((1, 1), NO_DATE))[..., None, None]
        expected = net.fuse_locations(pooled + day, torch.ones(1, 1, dtype=torch.bool))
    torch.testing.assert_close(alone, expected)
    # at 16 HR pixels per Sentinel pixel the map is used as it is
    fine = create_model("cpu", hr_ratio=16).eval()
    with torch.no_grad():
        out = fine(hr=hr, s2=torch.randn(1, 2, 10, 16, 16), s2_day_of_year=torch.tensor([[1, 30]]), use_geo=False)
    assert out.features.shape == (1, 64, 16, 16)
    with pytest.raises(ValueError, match="hr_ratio=24 .* multiple of the HR encoder's last-stage stride 16"):
        create_model("cpu", hr_ratio=24)


def test_overrides_and_rgbn_input() -> None:
    net = create_model("tiny", hr={"in_chans": 4}, s1=None, s1_head=None).eval()
    assert net.s1 is None and net.hr.patch_embed.proj.in_channels == 4
    with torch.no_grad():
        out = net(hr=torch.randn(1, 4, 256, 256), use_geo=False)
    assert out.features.shape == (1, 64, 8, 8)
    with pytest.raises(TypeError, match="unknown model option"):
        create_model("tiny", hr_channels=4)
    with pytest.raises(KeyError, match="available"):
        create_model("huge")


def test_clear_errors(model: skysense.SkySense) -> None:
    inputs = _inputs()
    with pytest.raises(ValueError, match="lat and lon"):
        model(**{k: v for k, v in inputs.items() if k not in ("lat", "lon")})
    with pytest.raises(ValueError, match="s2_day_of_year"):
        model(s2=inputs["s2"], use_geo=False)
    with pytest.raises(ValueError, match="grids differ"):
        model(hr=inputs["hr"], s2=torch.randn(2, 3, 10, 16, 16), s2_day_of_year=inputs["s2_day_of_year"], use_geo=False)
    with pytest.raises(ValueError, match="must have shape"):
        model(s2=inputs["s2"], s2_day_of_year=torch.zeros(2, 5, dtype=torch.long), use_geo=False)
    with pytest.raises(ValueError, match="no modality"):
        model(lat=inputs["lat"], lon=inputs["lon"])


def test_grid_resampling_option() -> None:
    net = create_model("tiny", grid_mismatch="resample").eval()
    with torch.no_grad():
        out = net(
            hr=torch.randn(1, 3, 128, 128),
            s2=torch.randn(1, 2, 10, 16, 16),
            s2_day_of_year=torch.tensor([[3, NO_DATE]]),
            use_geo=False,
        )
    assert out.fused.shape == (1, 64, 4, 4)


def test_save_and_from_pretrained_roundtrip(tmp_path, model: skysense.SkySense) -> None:
    path = save_pretrained(model, tmp_path / "tiny.safetensors")
    loaded = from_pretrained(path).eval()
    inputs = _inputs()
    with torch.no_grad():
        assert torch.equal(model(**inputs).features, loaded(**inputs).features)
    assert loaded.config == model.config
    (tmp_path / "other.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="other.safetensors is not a readable safetensors file"):
        from_pretrained(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        from_pretrained(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("chunk", [7, 64, 100, 1024])
def test_fusion_chunks_give_the_unchunked_result(model: skysense.SkySense, chunk: int) -> None:
    """Chunks inside one sample's grid (7), of whole samples (64, 100) and of the CPU default all equal one pass;
    sample B's missing S1 frames check that each chunk keeps its own sample's validity."""
    inputs = _inputs()
    inputs["s1_valid"] = torch.tensor([[True, True], [False, True]])
    try:
        model.config.fusion_chunk_size = -1
        with torch.no_grad():
            whole = model(**inputs)
        model.config.fusion_chunk_size = chunk
        with torch.no_grad():
            chunked = model(**inputs)
    finally:
        model.config.fusion_chunk_size = 0
    torch.testing.assert_close(chunked.fused, whole.fused, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked.features, whole.features, rtol=1e-5, atol=1e-5)
