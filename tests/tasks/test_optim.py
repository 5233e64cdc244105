"""Parameter groups: no decay on norms/biases/embeddings, layer-wise learning-rate decay by depth."""

from __future__ import annotations

import torch
from torch import nn

from skysense import create_model
from skysense.tasks.optim import backbone_depths, parameter_groups, warmup_cosine


class Task(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = create_model("tiny")
        self.head = nn.Linear(8, 2)


def test_depths_follow_the_feature_flow() -> None:
    backbone = create_model("tiny")
    depths, total = backbone_depths(backbone)
    assert set(depths) == {name for name, _ in backbone.named_parameters()}
    assert depths["hr.patch_embed.proj.weight"] == 0 and depths["s2.patch_embed.proj.weight"] == 0
    assert depths["hr.layers.0.blocks.0.attn.qkv.weight"] < depths["hr.layers.2.blocks.1.attn.qkv.weight"]
    assert depths["s2.blocks.1.attn.qkv.weight"] < depths["fusion.blocks.0.attn.qkv.weight"]
    assert depths["fusion.blocks.1.attn.qkv.weight"] < depths["geo.out_proj.weight"] < total


def test_groups_scale_learning_rates_and_skip_decay() -> None:
    task = Task()
    task.backbone.s1.requires_grad_(False)
    groups = parameter_groups(task, weight_decay=0.05, layer_decay=0.5)
    by_parameter = {id(p): g for g in groups for p in g["params"]}
    named = dict(task.named_parameters())
    assert id(named["backbone.s1.patch_embed.proj.weight"]) not in by_parameter  # frozen: left out
    head, first = by_parameter[id(named["head.weight"])], by_parameter[id(named["backbone.hr.patch_embed.proj.weight"])]
    assert (
        head["lr_scale"] == 1.0
        and first["lr_scale"] < by_parameter[id(named["backbone.geo.out_proj.weight"])]["lr_scale"]
    )
    assert by_parameter[id(named["head.bias"])]["weight_decay"] == 0.0 and head["weight_decay"] == 0.05
    assert by_parameter[id(named["backbone.s2.pos_embed"])]["weight_decay"] == 0.0
    flat = parameter_groups(task, weight_decay=0.05, layer_decay=1.0)
    assert {g["lr_scale"] for g in flat} == {1.0}


def test_warmup_then_cosine() -> None:
    schedule = warmup_cosine(total_steps=110, warmup_steps=10)
    assert schedule(0) == 0.1 and schedule(9) == 1.0 and schedule(10) == 1.0
    assert abs(schedule(60) - 0.5) < 1e-9 and schedule(110) == 0.0
    assert torch.tensor([schedule(s) for s in range(10, 111)]).diff().le(1e-12).all()


def test_initialised_adam_state_changes_no_update() -> None:
    """State created up front (step 0, zero moments) gives the same steps as AdamW's own lazy state, also for a
    parameter that gets its first gradient only at the second step; every parameter has state before any step."""
    import copy

    from skysense.tasks.optim import initialize_adam_state

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"used": torch.nn.Linear(4, 3), "late": torch.nn.Linear(3, 2)})
    lazy, eager = copy.deepcopy(model), copy.deepcopy(model)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=0.1, weight_decay=0.05) for m in (lazy, eager)]
    initialize_adam_state(optimizers[1])
    assert len(optimizers[1].state) == 4 and all(float(s["step"]) == 0 for s in optimizers[1].state.values())
    x = torch.randn(5, 4)
    for step in range(3):
        for module, optimizer in zip((lazy, eager), optimizers, strict=True):
            optimizer.zero_grad(set_to_none=True)
            out = module["used"](x)
            if step > 0:
                out = module["late"](out)
            out.pow(2).sum().backward()
            optimizer.step()
    for a, b in zip(lazy.parameters(), eager.parameters(), strict=True):
        assert torch.equal(a, b)


def test_prefix_scales_multiply_the_named_parameters_rates() -> None:
    """``prefix_scales`` (the pretraining task's ``head_lr_scale``) scales only the parameters under its prefix, on
    top of layer-wise decay, and keeps decay and no-decay apart."""
    task = Task()
    groups = parameter_groups(task, weight_decay=0.05, layer_decay=0.5, prefix_scales={"head.": 10.0})
    by_parameter = {id(p): g for g in groups for p in g["params"]}
    named = dict(task.named_parameters())
    assert by_parameter[id(named["head.weight"])]["lr_scale"] == 10.0
    assert by_parameter[id(named["head.bias"])]["lr_scale"] == 10.0
    assert by_parameter[id(named["head.bias"])]["weight_decay"] == 0.0
    plain = {id(p): g for g in parameter_groups(task, weight_decay=0.05, layer_decay=0.5) for p in g["params"]}
    for name, parameter in named.items():
        if name.startswith("backbone."):
            assert by_parameter[id(parameter)]["lr_scale"] == plain[id(parameter)]["lr_scale"]


def test_pretraining_heads_learn_at_their_own_rate() -> None:
    from skysense.tasks.pretrain import PretrainTask

    task = PretrainTask(preset="tiny", lr=1e-4, head_lr_scale=10.0)

    class Trainer:
        estimated_stepping_batches = 100

    task._trainer = Trainer()  # configure_optimizers reads only the step count from it
    optimizer = task.configure_optimizers()["optimizer"]
    rate = {id(p): group["initial_lr"] for group in optimizer.param_groups for p in group["params"]}  # before warm-up
    for name, parameter in task.meta.student.named_parameters():
        expected = 1e-3 if name.startswith("heads.") else 1e-4
        assert abs(rate[id(parameter)] - expected) < 1e-12, name
