"""Sinkhorn-Knopp, DINO and InfoNCE losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from skysense.losses.dino import DINOLoss
from skysense.losses.infonce import InfoNCELoss
from skysense.losses.sinkhorn import sinkhorn_knopp


def test_sinkhorn_equipartition() -> None:
    scores = torch.randn(64, 8) * 3 + torch.linspace(0, 4, 8)  # biased towards the last clusters
    q = sinkhorn_knopp(scores, temperature=0.5, iterations=50)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-4)
    assert torch.allclose(q.sum(dim=0), torch.full((8,), 8.0), atol=1e-2)
    assert (q.argmax(1) == F.softmax(scores / 0.5, 1).argmax(1)).float().mean() > 0.3


def test_sinkhorn_solves_a_batch_of_problems_independently() -> None:
    scores = torch.randn(5, 12, 4)
    batched = sinkhorn_knopp(scores, distributed=False)
    for problem, expected in zip(scores, batched, strict=True):
        torch.testing.assert_close(sinkhorn_knopp(problem, distributed=False), expected)
    with pytest.raises(ValueError, match="distributed"):
        sinkhorn_knopp(scores)


def test_dino_loss_is_minimal_when_student_matches_teacher() -> None:
    loss = DINOLoss(16, student_temperature=0.1, teacher_temperature=0.1)
    teacher = torch.randn(32, 16)
    target = loss.teacher_probabilities(teacher, update_center=False)
    matched = loss(teacher, target)
    other = loss(torch.randn(32, 16), target)
    assert matched < other
    entropy = -(target * target.log()).sum(-1).mean()
    assert torch.allclose(matched, entropy, atol=1e-4)  # CE(p, p) = H(p)


def test_dino_center_follows_teacher_mean_once_per_step() -> None:
    """Calls within a step accumulate; the centre moves once, at update_center, by one EMA step of the step's mean;
    a step without items leaves it."""
    loss = DINOLoss(4, center_momentum=0.5)
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    first = loss.teacher_probabilities(logits)
    second = loss.teacher_probabilities(logits[:1] + 2)  # the same step: the centre has not moved yet
    assert torch.equal(loss.center, torch.zeros(1, 4))
    assert torch.allclose(first[0], torch.softmax(logits[0] / 0.04, dim=0))
    assert second.shape == (1, 4)
    loss.update_center()
    step_mean = torch.cat([logits, logits[:1] + 2]).mean(0, keepdim=True)  # [[3, 4, 5, 6]] / ... of 3 items
    assert torch.allclose(loss.center, 0.5 * step_mean)
    loss.update_center()  # nothing accumulated since: unchanged
    assert torch.allclose(loss.center, 0.5 * step_mean)
    sinkhorn = DINOLoss(4, centering="sinkhorn")
    assert torch.allclose(sinkhorn.teacher_probabilities(logits).sum(1), torch.ones(2), atol=1e-4)


def test_infonce_prefers_aligned_pairs_and_runs_in_fp32_under_autocast() -> None:
    loss = InfoNCELoss(temperature=0.1)
    x = torch.randn(16, 32)
    aligned = loss(x, x + 0.01 * torch.randn(16, 32))
    shuffled = loss(x, x[torch.randperm(16)])
    assert aligned < 0.1 < math.log(16) < shuffled + 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x.bfloat16(), x.bfloat16())
    assert value.dtype == torch.float32
