"""Temporal fusion: padding equivalence, dates, and the official fusion checkpoint layout."""

import pytest
import torch
from torch import nn

from skysense.containers import NO_DATE
from skysense.models.fusion import FusionConfig, TemporalFusion, convert_official_fusion_state_dict
from tests.models.reference import MmsegLayer


def _fusion() -> TemporalFusion:
    return TemporalFusion(FusionConfig(in_dim=24, embed_dim=32, depth=2, num_heads=4)).eval()


def test_padded_batch_equals_samples_one_by_one() -> None:
    fusion = _fusion()
    lengths = [5, 2, 7]
    samples = [torch.randn(1, n, 24) for n in lengths]
    days = [torch.randint(0, 365, (1, n)) for n in lengths]
    singles = torch.cat(
        [fusion(s, d, torch.ones(1, s.shape[1], dtype=torch.bool)) for s, d in zip(samples, days, strict=True)]
    )

    longest = max(lengths)
    tokens = torch.randn(3, longest, 24) * 50  # padding holds garbage on purpose
    day = torch.randint(0, 365, (3, longest))
    valid = torch.zeros(3, longest, dtype=torch.bool)
    for i, (s, d) in enumerate(zip(samples, days, strict=True)):
        tokens[i, : s.shape[1]] = s[0]
        day[i, : s.shape[1]] = d[0]
        valid[i, : s.shape[1]] = True
    assert torch.allclose(fusion(tokens, day, valid), singles, atol=1e-5)


def test_date_changes_output_and_order_matters_only_through_dates() -> None:
    fusion = _fusion()
    tokens = torch.randn(1, 3, 24)
    valid = torch.ones(1, 3, dtype=torch.bool)
    a = fusion(tokens, torch.tensor([[10, 100, 200]]), valid)
    b = fusion(tokens, torch.tensor([[11, 150, 300]]), valid)
    assert not torch.allclose(a, b)
    # a transformer without positional order: permuting (token, date) pairs together gives the same fused token
    perm = torch.tensor([2, 0, 1])
    c = fusion(tokens[:, perm], torch.tensor([[10, 100, 200]])[:, perm], valid)
    assert torch.allclose(a, c, atol=1e-5)
    undated = fusion(tokens, torch.full((1, 3), NO_DATE), valid)
    assert torch.isfinite(undated).all()


def test_gradients_reach_every_parameter() -> None:
    fusion = _fusion().train()
    out = fusion(torch.randn(4, 3, 24), torch.randint(0, 365, (4, 3)), torch.ones(4, 3, dtype=torch.bool))
    out.sum().backward()
    assert all(p.grad is not None for p in fusion.parameters())


def test_official_fusion_mapping_matches_reference_layout() -> None:
    """The released fusion file: porj_linear, cls_token, mmseg layers, and the day-of-year table ctpe."""
    reference = nn.Module()
    reference.porj_linear = nn.Linear(24, 32)
    reference.layers = nn.ModuleList([MmsegLayer(32, 4) for _ in range(2)])
    for p in reference.parameters():
        nn.init.normal_(p, std=0.2)
    official = dict(reference.state_dict())
    official["cls_token"] = torch.randn(1, 1, 32)
    official["ctpe"] = torch.randn(1, 365, 24)
    fusion = _fusion()
    fusion.load_state_dict(convert_official_fusion_state_dict(official), strict=True)

    tokens, day = torch.randn(2, 4, 24), torch.randint(0, 365, (2, 4))
    x = reference.porj_linear(tokens + official["ctpe"][0][day])
    x = torch.cat([official["cls_token"].expand(2, -1, -1), x], 1)
    for layer in reference.layers:
        x = layer(x)
    got = fusion(tokens, day, torch.ones(2, 4, dtype=torch.bool))
    assert torch.allclose(got, x[:, 0], atol=1e-5)
    with pytest.raises(KeyError, match="extra"):
        convert_official_fusion_state_dict({"extra.weight": torch.zeros(1)})
