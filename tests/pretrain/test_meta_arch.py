"""The student/teacher meta-architecture: every objective, the EMA teacher, the prototype update."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from skysense import SkySenseInput, create_model, get_config
from skysense.pretrain.meta_arch import PretrainConfig, SSLMetaArch, join_inputs


def _views(batch: int = 2) -> tuple[SkySenseInput, SkySenseInput]:
    base = SkySenseInput(
        hr=torch.randn(batch, 3, 256, 256),
        s2=torch.randn(batch, 3, 10, 8, 8),
        s2_day_of_year=torch.randint(0, 365, (batch, 3)),
        s2_valid=torch.tensor([[True, True, True], [True, True, False]])[:batch],
        s1=torch.randn(batch, 2, 2, 8, 8),
        s1_day_of_year=torch.randint(0, 365, (batch, 2)),
        lat=torch.tensor([45.0, 46.0])[:batch],
        lon=torch.tensor([7.0, 8.0])[:batch],
    )
    other = dataclasses.replace(base, hr=base.hr * 1.1 + 0.1, s2=base.s2 + 0.05 * torch.randn_like(base.s2))
    return base, other


def _meta(**overrides) -> SSLMetaArch:
    torch.manual_seed(0)
    return SSLMetaArch(create_model("tiny"), get_config("tiny").projection, PretrainConfig(**overrides))


def test_every_objective_is_computed_and_trains_the_student_only() -> None:
    meta = _meta().train()
    bank_before = meta.teacher["backbone"].geo.bank.clone()
    losses = meta(_views())
    for source in ("hr", "s2", "s1", "fused"):
        for level in ("image", "pixel", "object"):
            assert torch.isfinite(losses[f"{level}/{source}"]), (level, source)
    for pair in ("hr-s1", "hr-s2", "s1-s2"):
        assert torch.isfinite(losses[f"cross_modal/{pair}"])
    for source in ("hr", "s2", "s1", "fused"):
        assert torch.isfinite(losses[f"koleo/{source}"]), source
    assert "std/hr" in losses
    losses["loss"].backward()
    assert all(p.grad is None for p in meta.teacher.parameters())
    for name, parameter in meta.student["backbone"].named_parameters():
        if name.startswith("hr.norms.") and not name.startswith("hr.norms.3"):
            continue  # output norms of HR stages 0-2 feed downstream heads, not pretraining
        assert parameter.grad is not None, name
        # Swin V2 blocks start as the identity (post-norm weights 0), so their inner layers get zero gradients
        # at initialisation; everything else must receive a real gradient
        if not name.startswith("hr.layers."):
            assert parameter.grad.abs().sum() > 0, name
    # the geo bank and the DINO centres move once the step ends, the bank identically for student and teacher
    assert torch.equal(meta.teacher["backbone"].geo.bank, bank_before)
    assert all(not loss.center.any() for loss in meta.dino.values())
    monitors = meta.finish_step()
    assert 0 <= monitors["prototypes/usage_entropy"] <= 1
    assert all(loss.center.any() and not loss.pending.any() for loss in meta.dino.values())
    assert not torch.equal(meta.teacher["backbone"].geo.bank, bank_before)
    assert torch.equal(meta.teacher["backbone"].geo.bank, meta.student["backbone"].geo.bank)


def test_weights_switch_objectives_off_and_infonce_option() -> None:
    meta = _meta(pixel_weight=0, object_weight=0, cross_modal_weight=0, contrast="infonce").train()
    losses = meta(_views())
    assert not any(k.startswith(("pixel/", "object/", "cross_modal/")) for k in losses)
    assert torch.isfinite(losses["loss"]) and "image/s2" in losses
    with pytest.raises(ValueError, match="contrast"):
        _meta(contrast="byol")


def test_teacher_targets_are_deterministic_in_training() -> None:
    """The teacher stays in eval mode (no stochastic depth) while the student trains (the tiny preset has no
    BatchNorm; the conv stem's are in train mode: next test)."""
    meta = _meta().train()
    assert meta.student.training and not any(m.training for m in meta.teacher.modules())
    meta.eval()
    assert not meta.student.training


def test_teacher_batchnorm_statistics_are_the_students_or_its_own() -> None:
    """The `cpu` preset's conv stem has BatchNorms. With ``teacher_batchnorm="own"`` the teacher's normalise with the
    batch in training and keep running statistics of the teacher's own activations; the EMA step leaves them. The
    default (``"student"``) copies the student's at every EMA step and keeps the teacher in eval mode."""

    def meta_of(**overrides) -> SSLMetaArch:
        torch.manual_seed(0)
        return SSLMetaArch(create_model("cpu"), get_config("cpu").projection, PretrainConfig(**overrides)).train()

    def norms(module: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
        return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    meta = meta_of(teacher_batchnorm="own")
    teacher_norms, student_norms = norms(meta.teacher), norms(meta.student)
    assert teacher_norms and all(m.training for m in teacher_norms)
    assert not any(m.training for m in meta.teacher.modules() if not isinstance(m, torch.nn.BatchNorm2d))
    views = (SkySenseInput(hr=torch.randn(4, 3, 64, 64) * 2 + 1), SkySenseInput(hr=torch.randn(4, 3, 64, 64)))
    meta(views)["loss"].backward()
    own = [m.running_mean.clone() for m in teacher_norms]
    assert not any(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in teacher_norms)
    with torch.no_grad():
        for m in student_norms:
            m.running_mean.add_(5.0)
    meta.update_teacher(0.99)
    assert all(torch.equal(m.running_mean, o) for m, o in zip(teacher_norms, own, strict=True))
    copied = meta_of()
    assert not any(m.training for m in copied.teacher.modules())
    with torch.no_grad():
        for m in norms(copied.student):
            m.running_mean.add_(5.0)
    copied.update_teacher(0.99)
    assert all(torch.equal(t.running_mean, s.running_mean)
               for t, s in zip(norms(copied.teacher), norms(copied.student), strict=True))  # fmt: skip
    with pytest.raises(ValueError, match="teacher_batchnorm"):
        meta_of(teacher_batchnorm="ema")


def test_teacher_ema_and_momentum_schedule() -> None:
    meta = _meta()
    with torch.no_grad():
        for p in meta.student.parameters():
            p.add_(1.0)
    teacher_before = [p.clone() for p in meta.teacher.parameters()]
    meta.update_teacher(1.0)
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, meta.teacher.parameters(), strict=True))
    meta.update_teacher(0.0)
    assert all(torch.equal(s, t) for s, t in zip(meta.student.parameters(), meta.teacher.parameters(), strict=True))
    assert meta.teacher_momentum(0.0) == pytest.approx(0.996) and meta.teacher_momentum(1.0) == pytest.approx(1.0)
    assert 0.996 < meta.teacher_momentum(0.5) < 1.0


def test_batches_without_coordinates_or_sentinel_data() -> None:
    meta = _meta().train()
    hr_only = SkySenseInput(hr=torch.randn(3, 3, 64, 64))
    losses = meta((hr_only, dataclasses.replace(hr_only, hr=hr_only.hr * 0.9)))
    assert "image/hr" in losses and "image/fused" not in losses and torch.isfinite(losses["loss"])


def test_activation_checkpointing_gives_the_same_losses_and_gradients() -> None:
    views = _views()
    results = []
    for checkpointing in (False, True):
        meta = _meta().train()
        meta.student["backbone"].set_grad_checkpointing(checkpointing)
        torch.manual_seed(1)  # the same location sampling
        loss = meta(views)["loss"]
        loss.backward()
        results.append((loss.detach(), [p.grad for p in meta.student.parameters() if p.grad is not None]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert len(grads_a) == len(grads_b) > 0
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_keeps_losses_in_fp32() -> None:
    meta = _meta().train()
    views = tuple(dataclasses.replace(view, hr=None) for view in _views())  # emulated bf16 is slow on HR
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = meta(views)
    assert all(value.dtype == torch.float32 for value in losses.values() if value.is_floating_point())
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in meta.student.parameters() if p.grad is not None)


def test_align_to_view_maps_locations_through_the_crops() -> None:
    from skysense.pretrain.meta_arch import align_to_view

    # the other view is the right half of the sample; its tokens hold their x position in the sample
    width = 4
    other_box = torch.tensor([[0.0, 0.5, 1.0, 0.5]])
    x_in_sample = 0.5 + 0.5 * (torch.arange(width) + 0.5) / width
    tokens = x_in_sample.repeat(2)[None, None, :, None].expand(1, 3, 2 * width, 5)  # (B, T, h·w, C), h = 2
    full = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    aligned, inside = align_to_view(tokens, (2, width), full, other_box)
    centres = (torch.arange(width) + 0.5) / width
    assert inside[0].tolist() == (centres >= 0.5).tolist() * 2
    inner = inside[0] & (centres.repeat(2) > 0.6)  # away from the other view's border (clamped there)
    torch.testing.assert_close(aligned[0, :, inner, 0], centres.repeat(2)[inner].expand(3, -1))
    same, all_inside = align_to_view(tokens, (2, width), other_box, other_box)
    torch.testing.assert_close(same, tokens)
    assert all_inside.all()


def test_cropped_views_train_every_level() -> None:
    meta = _meta().train()
    boxes = (torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), torch.tensor([[0.25, 0.25, 0.75, 0.75]] * 2))
    losses = meta(_views(), boxes)
    for key in ("pixel/s2", "object/s2", "pixel/hr", "image/hr", "pixel/fused"):
        assert key in losses and torch.isfinite(losses[key]), key
    losses["loss"].backward()


def test_teacher_temperature_warms_up_and_each_step_sets_it_from_its_progress() -> None:
    meta = _meta(teacher_temperature_start=0.04, teacher_temperature=0.07, teacher_temperature_warmup=0.5)
    assert meta.teacher_temperature(0.0) == pytest.approx(0.04)
    assert meta.teacher_temperature(0.25) == pytest.approx(0.055)
    assert meta.teacher_temperature(0.5) == meta.teacher_temperature(1.0) == pytest.approx(0.07)
    assert all(loss.teacher_temperature == pytest.approx(0.04) for loss in meta.dino.values())
    assert meta.start_step(0.25) == pytest.approx(0.055)
    assert all(loss.teacher_temperature == pytest.approx(0.055) for loss in meta.dino.values())


def test_joined_views_give_the_losses_and_gradients_of_one_call_per_view() -> None:
    """Both views through the backbone in one call (issue 15: half the kernel launches) compute what two calls do,
    the per-sample frame masks included; views of different shapes fall back to one call each."""
    views = _views()
    results = []
    for join in (True, False):
        meta = _meta(join_views=join).train()
        torch.manual_seed(1)
        losses = meta(views)
        losses["loss"].backward()
        grads = {n: p.grad.clone() for n, p in meta.student.named_parameters() if p.grad is not None}
        results.append((losses, grads, meta.prototype_pending.clone()))
    (joined, joined_grads, joined_pending), (separate, separate_grads, separate_pending) = results
    assert joined.keys() == separate.keys()
    for name in joined:
        torch.testing.assert_close(joined[name], separate[name], rtol=1e-4, atol=1e-5, msg=name)
    assert joined_grads.keys() == separate_grads.keys()
    for name in joined_grads:
        torch.testing.assert_close(joined_grads[name], separate_grads[name], rtol=1e-3, atol=1e-6, msg=name)
    torch.testing.assert_close(joined_pending, separate_pending)

    first, second = views
    smaller = dataclasses.replace(second, hr=second.hr[..., :128, :128])
    assert join_inputs((first, smaller)) is None
    assert join_inputs((first, dataclasses.replace(second, s1=None, s1_day_of_year=None))) is None
    assert join_inputs(views).hr.shape[0] == 4


def test_local_crops_train_the_student_at_the_image_level_only() -> None:
    """DINO's multi-crop: HR-only local views add image-level HR terms (local student × both global teachers), reach
    every HR encoder stage, and leave the DINO centre's statistics to the global views."""
    views = _views()
    local = tuple(SkySenseInput(hr=torch.randn(2, 3, 64, 64)) for _ in range(3))
    plain, multi = _meta().train(), _meta().train()
    torch.manual_seed(1)
    without = plain(views)
    torch.manual_seed(1)
    with_local = multi(views, None, local)
    assert without.keys() == with_local.keys()
    assert not torch.allclose(with_local["image/hr"], without["image/hr"])
    for name in without:
        if name not in ("image/hr", "loss"):
            torch.testing.assert_close(with_local[name], without[name], msg=name)
    assert torch.equal(multi.dino["hr_image"].pending, plain.dino["hr_image"].pending)
    # only local views: their gradient alone reaches the HR encoder from its stem to its last stage
    multi.zero_grad()
    multi._local_crops(local, [multi.source_tokens(out, v) for out, v in zip(
        multi._encode(multi.teacher["backbone"], views, None), views, strict=True)], terms := {})  # fmt: skip
    torch.stack(terms["image/hr"]).mean().backward()
    assert len(terms["image/hr"]) == 2 * len(local)
    assert multi.student["backbone"].hr.patch_embed.proj.weight.grad.abs().sum() > 0
    assert multi.student["backbone"].hr.norms["3"].weight.grad.abs().sum() > 0
