import math

import pytest
import torch

from skysense.models.prototypes import GeoContextConfig, GeoContextPrototypes, region_index


def test_equal_area_regions() -> None:
    rows, cols = 64, 64
    lat = torch.tensor([0.0, -90.0, 90.0, 38.1, 38.1, 0.0])
    lon = torch.tensor([0.0, 0.0, 179.999, -0.76, 359.24, -180.0])
    idx = region_index(lat, lon, rows, cols)
    assert idx.min() >= 0 and idx.max() < rows * cols
    assert idx[1] // cols == 0 and idx[2] // cols == rows - 1  # poles in the first / last band
    assert idx[3] == idx[4]  # longitude wraps
    assert idx[0] % cols == 32 and idx[5] % cols == 0
    # equal area: the band of latitude 38.1 is row floor((sin(38.1°)+1)/2·64)
    assert idx[3] // cols == math.floor((math.sin(math.radians(38.1)) + 1) / 2 * rows)
    # band edges are equally spaced in sin(lat): each band has the same area
    edges = torch.rad2deg(torch.asin(torch.linspace(-1, 1, rows + 1)))
    centers = (edges[:-1] + edges[1:]) / 2
    assert torch.equal(region_index(centers, torch.zeros(rows), rows, cols) // cols, torch.arange(rows))


def test_missing_coordinates_are_refused() -> None:
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        region_index(torch.tensor([10.0, float("nan")]), torch.tensor([0.0, 0.0]), 8, 8)
    with pytest.raises(ValueError, match="outside"):
        region_index(torch.tensor([91.0]), torch.tensor([0.0]), 8, 8)


def test_read_out_is_attention_over_the_region_prototypes() -> None:
    cfg = GeoContextConfig(in_dim=16, dim=8, num_prototypes=5, region_rows=4, region_cols=4, query_hidden_dim=0)
    geo = GeoContextPrototypes(cfg)
    fused = torch.randn(2, 3, 16)
    lat, lon = torch.tensor([45.0, -30.0]), torch.tensor([7.0, 120.0])
    out = geo(fused, lat, lon)
    assert out.shape == (2, 3, 32)
    assert torch.equal(out[..., :16], fused)
    region = geo.regions(lat, lon)
    prototypes = geo.bank[region[1]]  # (P, d)
    weights = torch.softmax(geo.query(fused[1]) @ prototypes.T / math.sqrt(8), dim=-1)
    assert torch.allclose(out[1, :, 16:], geo.out_proj(weights @ prototypes), atol=1e-6)
    # the bank is a buffer: saved with the model, never trained by backprop
    assert "bank" in geo.state_dict() and all(p is not geo.bank for p in geo.parameters())
