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


def test_short_sequences_take_the_explicit_path_on_a_cpu_only_without_gradients(monkeypatch) -> None:
    """Inference over the fusion's short per-location sequences skips SDPA on a CPU (1.1–5× faster there); training
    keeps it (its backward is faster), and so do long sequences; both paths give the same values."""
    import torch.nn.functional as F

    from skysense.layers import attention

    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    attn = Attention(32, 4).eval()
    short, long = torch.randn(8, attention.SHORT_SEQUENCE, 32), torch.randn(2, attention.SHORT_SEQUENCE + 1, 32)
    learning = attn(short)
    assert len(calls) == 1
    with torch.inference_mode():
        inferred = attn(short)
        assert len(calls) == 1  # the explicit path
        attn(long)
        assert len(calls) == 2
    torch.testing.assert_close(inferred, learning.detach(), rtol=1e-5, atol=1e-6)
