"""Classification heads: masking, shapes, gradients."""

from __future__ import annotations

import pytest
import torch

from skysense.heads import AttentiveHead, LinearHead, build_classification_head


@pytest.mark.parametrize("kind", ["linear", "attentive"])
def test_padded_tokens_do_not_change_the_logits(kind: str) -> None:
    torch.manual_seed(0)
    head = build_classification_head(kind, 16, 5).eval()
    tokens = torch.randn(2, 6, 16)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    padded = tokens.clone()
    padded[1, 4:] = 1e4  # garbage where masked
    with torch.no_grad():
        logits = head(padded, valid)
        alone = head(tokens[1:, :4])
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits[1:], alone, rtol=1e-5, atol=1e-5)


def test_heads_train_and_refuse_bad_input() -> None:
    for head in (LinearHead(8, 3), AttentiveHead(8, 3, num_heads=2, num_queries=2)):
        logits = head(torch.randn(4, 5, 8))
        logits.sum().backward()
        assert all(p.grad is not None for p in head.parameters())
    with pytest.raises(ValueError, match="divisible"):
        AttentiveHead(10, 3, num_heads=4)
    with pytest.raises(ValueError, match="no valid token"):
        AttentiveHead(8, 3, num_heads=2)(torch.randn(1, 3, 8), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown head"):
        build_classification_head("mlp", 8, 3)
