"""InfoNCE (van den Oord et al., 2018; the MoCo/SimCLR contrastive loss): the alternative form of SkySense's
contrastive terms, and the cross-modal alignment loss. fp32, outside autocast."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    """Queries (N, D) vs keys (N, D): item i's positive is key i, the other N − 1 keys are its negatives."""

    def __init__(self, temperature: float = 0.2, symmetric: bool = True) -> None:
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if queries.shape != keys.shape:
            raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must match")
        with torch.autocast(device_type=queries.device.type, enabled=False):
            q = F.normalize(queries.float(), dim=-1)
            k = F.normalize(keys.float(), dim=-1)
            logits = q @ k.t() / self.temperature  # (N, N)
            labels = torch.arange(q.shape[0], device=q.device)
            loss = F.cross_entropy(logits, labels)
            if self.symmetric:
                loss = (loss + F.cross_entropy(logits.t(), labels)) / 2
            return loss
