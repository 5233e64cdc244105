"""DINO self-distillation loss (Caron et al., ICCV 2021), the default form of SkySense's contrastive terms.

Cross-entropy between the teacher's sharpened, centred distribution and the student's, over the prototype logits of a
projection head. Centering is an EMA of the teacher's mean logits, or Sinkhorn-Knopp (DINOv2's option). Computed in
fp32, outside autocast.

The centre moves once per optimiser step, as in DINO and DINOv2, however many times a step calls
:meth:`DINOLoss.teacher_probabilities` (both view directions, the pixel and object levels share a head): the calls
only accumulate the teacher logits' sum and count, and :meth:`DINOLoss.update_center` (or, for several heads in one
collective, :meth:`~skysense.pretrain.meta_arch.SSLMetaArch.finish_step`) applies them. No collective runs inside a
call, so processes whose batches take different branches cannot hang or mix up their reductions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skysense.losses.distributed import all_reduce_sum
from skysense.losses.sinkhorn import sinkhorn_knopp


class DINOLoss(nn.Module):
    """Student logits (N, K) vs teacher logits (N, K) of the same items → scalar loss.

    Args:
        num_prototypes: K.
        student_temperature: τ_s.
        teacher_temperature: τ_t (DINOv2 warms it up from 0.04 to 0.07; the meta-architecture sets
            :attr:`teacher_temperature` each step).
        center_momentum: EMA momentum of the centre, per optimiser step.
        centering: "center" (EMA of the teacher's mean logits) or "sinkhorn" (Sinkhorn-Knopp over this process's
            items: its iteration count depends on the data, so it never runs a collective).
    """

    def __init__(
        self,
        num_prototypes: int,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        center_momentum: float = 0.9,
        centering: str = "center",
    ) -> None:
        super().__init__()
        if centering not in ("center", "sinkhorn"):
            raise ValueError(f"centering must be 'center' or 'sinkhorn', got {centering!r}")
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.center_momentum = center_momentum
        self.centering = centering
        self.register_buffer("center", torch.zeros(1, num_prototypes))
        # this step's teacher logits, summed, and their count: (1, K + 1); not saved (a step ends before a checkpoint)
        self.register_buffer("pending", torch.zeros(1, num_prototypes + 1), persistent=False)

    @torch.no_grad()
    def teacher_probabilities(self, teacher_logits: torch.Tensor, update_center: bool = True) -> torch.Tensor:
        """(N, K) teacher logits → (N, K) target distribution (centred and sharpened, or Sinkhorn-balanced).

        With ``update_center`` the logits count towards the next centre update (:meth:`update_center`); the centre
        used here is the one of the previous steps."""
        logits = teacher_logits.float()
        if self.centering == "sinkhorn":
            return sinkhorn_knopp(logits, temperature=self.teacher_temperature, distributed=False)
        probabilities = F.softmax((logits - self.center) / self.teacher_temperature, dim=-1)
        if update_center:
            self.pending[:, :-1] += logits.sum(dim=0, keepdim=True)
            self.pending[0, -1] += logits.shape[0]
        return probabilities

    @torch.no_grad()
    def apply_center_update(self, totals: torch.Tensor) -> None:
        """Move the centre towards the mean of ``totals`` ((1, K + 1): logit sums and count, already summed over
        processes) and clear this step's statistics. A step without items leaves the centre as it is."""
        count = float(totals[0, -1])
        if count > 0:
            self.center.mul_(self.center_momentum).add_(totals[:, :-1] / count, alpha=1 - self.center_momentum)
        self.pending.zero_()

    @torch.no_grad()
    def update_center(self) -> None:
        """One centre update from this step's statistics, summed over all processes (a collective: every process
        calls it once per step, whatever its batch held)."""
        self.apply_center_update(all_reduce_sum(self.pending.clone()))

    def forward(self, student_logits: torch.Tensor, teacher_probabilities: torch.Tensor) -> torch.Tensor:
        """Mean over items of −Σ_k p_teacher · log p_student."""
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            log_student = F.log_softmax(student_logits.float() / self.student_temperature, dim=-1)
            return -(teacher_probabilities.float() * log_student).sum(dim=-1).mean()


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko spreading term (Sablayrolles et al., ICLR 2019; DINOv2's ``KoLeoLoss``): minus the mean
    log distance of each L2-normalised feature to its nearest neighbour in the batch. (N, C) → scalar; N ≥ 2.

    Written here rather than imported: DINOv2 is not a package, and this is its whole content."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        normalized = F.normalize(features.float(), dim=-1, eps=eps)
        similarity = normalized @ normalized.t()
        similarity.fill_diagonal_(-2.0)  # below any cosine: never one's own neighbour
        nearest = similarity.argmax(dim=1)
        # F.embedding gathers the neighbours bit-reproducibly (indexing's backward adds repeats with CPU atomics)
        distances = (normalized - F.embedding(nearest, normalized)).norm(dim=-1)
        return -torch.log(distances + eps).mean()
