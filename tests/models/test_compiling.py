"""Regional compilation marks every transformer block once; stochastic depth is a no-op in eval whatever its rate."""

from __future__ import annotations

import torch

from skysense import create_model
from skysense.layers.transformer import Block, DropPath
from skysense.models.compiling import compile_blocks
from skysense.models.swin_v2 import SwinTransformerV2Block


def test_compile_blocks_wraps_every_block_once() -> None:
    model = create_model("tiny")
    blocks = [m for m in model.modules() if isinstance(m, (Block, SwinTransformerV2Block))]
    assert {type(b) for b in blocks} == {Block, SwinTransformerV2Block}
    assert compile_blocks(model) == len(blocks)
    assert all("forward" in vars(block) for block in blocks)  # on the instance: module hooks stay outside
    assert compile_blocks(model) == 0  # idempotent


def test_drop_path_is_the_identity_in_eval_and_drops_in_training() -> None:
    x = torch.randn(64, 4, 8)
    layer = DropPath(0.5).eval()
    assert layer(x) is x
    torch.manual_seed(0)
    dropped = layer.train()(x)
    zeroed = (dropped.flatten(1) == 0).all(dim=1)
    assert 0 < int(zeroed.sum()) < 64  # whole samples dropped, the others scaled by 1 / keep
    torch.testing.assert_close(dropped[~zeroed], x[~zeroed] * 2)
