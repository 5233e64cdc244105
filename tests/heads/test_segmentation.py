"""UperNet and FCN heads: shapes, gradients, and the single-map pyramid."""

from __future__ import annotations

import pytest
import torch

from skysense.heads.segmentation import FCNHead, UperNetHead, single_map_pyramid


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_upernet_returns_logits_at_the_finest_level(norm: str) -> None:
    maps = [torch.randn(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate((8, 16, 32, 64))]
    head = UperNetHead([8, 16, 32, 64], num_classes=5, channels=16, norm=norm)
    logits = head(maps)
    assert logits.shape == (2, 5, 32, 32)
    logits.sum().backward()
    assert all(p.grad is not None for p in head.parameters())
    assert FCNHead(32, 5, 8, norm)(maps[2]).shape == (2, 5, 8, 8)
    with pytest.raises(ValueError, match="norm"):
        UperNetHead([8], 2, norm="layer")


def test_single_map_pyramid_halves_each_level() -> None:
    maps = single_map_pyramid(torch.randn(1, 4, 13, 16))
    assert [tuple(m.shape[-2:]) for m in maps] == [(13, 16), (7, 8), (4, 4), (2, 2)]
