"""DINO self-distillation loss (Caron et al., ICCV 2021), the default form of SkySense's contrastive terms.

Cross-entropy between the teacher's sharpened, centred distribution and the student's, over the prototype logits of a
projection head. Centering is an EMA of the teacher's mean logits (synchronised across processes), or Sinkhorn-Knopp
(DINOv2's option). Computed in fp32, outside autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skysense.losses.distributed import all_reduce_sum
from skysense.losses.sinkhorn import sinkhorn_knopp


class DINOLoss(nn.Module):
    """Student logits (N, K) vs teacher logits (N, K) of the same items → scalar loss."""

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

    @torch.no_grad()
    def teacher_probabilities(self, teacher_logits: torch.Tensor, update_center: bool = True) -> torch.Tensor:
        """(N, K) teacher logits → (N, K) target distribution (centred and sharpened, or Sinkhorn-balanced)."""
        logits = teacher_logits.float()
        if self.centering == "sinkhorn":
            return sinkhorn_knopp(logits, temperature=self.teacher_temperature)
        probabilities = F.softmax((logits - self.center) / self.teacher_temperature, dim=-1)
        if update_center:
            # sum and count over all processes in one reduction: processes may hold different numbers of items (the
            # pixel and object levels keep the covered locations of valid frames), and every process must end
            # with the same centre
            stats = torch.cat([logits.sum(dim=0, keepdim=True), logits.new_full((1, 1), logits.shape[0])], dim=1)
            all_reduce_sum(stats)  # (1, K + 1)
            batch_sum, count = stats[:, :-1], stats[0, -1].clamp_min(1)
            self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)
        return probabilities

    def forward(self, student_logits: torch.Tensor, teacher_probabilities: torch.Tensor) -> torch.Tensor:
        """Mean over items of −Σ_k p_teacher · log p_student."""
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            log_student = F.log_softmax(student_logits.float() / self.student_temperature, dim=-1)
            return -(teacher_probabilities.float() * log_student).sum(dim=-1).mean()
