import torch

from skysense.layers.attention import Attention, padding_mask_to_bias
from skysense.layers.transformer import Block


def test_sdpa_equals_manual_with_padding() -> None:
    attn = Attention(32, 4).eval()
    x = torch.randn(3, 7, 32)
    valid = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    fused = attn(x, valid)
    attn.fused_attn = False
    manual = attn(x, valid)
    assert torch.allclose(fused, manual, atol=1e-6)


def test_padding_does_not_change_valid_tokens() -> None:
    block = Block(32, 4).eval()
    x = torch.randn(1, 4, 32)
    padded = torch.cat([x, torch.randn(1, 3, 32) * 100], dim=1)
    valid = torch.tensor([[True] * 4 + [False] * 3])
    assert torch.allclose(block(x)[:, :4], block(padded, valid)[:, :4], atol=1e-5)


def test_fully_masked_row_is_finite() -> None:
    bias = padding_mask_to_bias(torch.zeros(2, 5, dtype=torch.bool), torch.float32)
    assert bias.shape == (2, 1, 1, 5)
    out = Attention(16, 2)(torch.randn(2, 5, 16), torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(out).all()
