"""Geo-context prototype learning (SkySense Sec. 3.3): gradient-free update of the region prototype bank.

For the fused features F of samples in region r (projected into prototype space by the model's query projector),
cosine similarities to P_r give, through Sinkhorn-Knopp, an equipartitioned assignment S; the assigned means
P̄ = normalise(Sᵀ·F) update the bank by EMA, P_r ← normalise(m·P_r + (1 − m)·P̄). Sums are reduced over processes
before the update, so every process holds the same bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from skysense.losses.distributed import all_reduce_sum
from skysense.losses.sinkhorn import sinkhorn_knopp


@torch.no_grad()
def update_prototypes(
    bank: torch.Tensor,
    features: torch.Tensor,
    regions: torch.Tensor,
    momentum: float = 0.99,
    temperature: float = 0.05,
) -> dict[str, torch.Tensor]:
    """EMA update of ``bank`` in place.

    Args:
        bank: (R, P, d) prototype buffer (unit rows).
        features: (B, N, d) fused features of B samples, already in prototype space.
        regions: (B,) region index of each sample.
        momentum: m of the EMA (1: frozen).
        temperature: Sinkhorn softness.

    Returns:
        {"usage_entropy": normalised entropy of which prototype is nearest to each feature, over the touched
            regions (1 = all used equally, near 0 = collapse onto a few),
         "regions_updated": number of regions touched}.
    """
    num_regions, num_prototypes, dim = bank.shape
    features = F.normalize(features.float(), dim=-1)
    sums = torch.zeros(num_regions, num_prototypes, dim, device=bank.device)
    usage = torch.zeros(num_regions, num_prototypes, device=bank.device)
    nearest = torch.zeros(num_regions, num_prototypes, device=bank.device)  # hard usage, the collapse monitor
    for region in regions.unique():
        tokens = features[regions == region].reshape(-1, dim)  # (M, d)
        similarity = tokens @ bank[region].float().t()  # (M, P) cosine
        assignment = sinkhorn_knopp(similarity, temperature=temperature, distributed=False)
        sums[region] += assignment.t() @ tokens  # (P, d)
        usage[region] += assignment.sum(dim=0)
        nearest[region] += torch.bincount(similarity.argmax(dim=1), minlength=num_prototypes).float()
    all_reduce_sum(sums)
    all_reduce_sum(usage)
    all_reduce_sum(nearest)
    touched = usage.sum(dim=1) > 0  # (R,)
    new = F.normalize(sums[touched], dim=-1)
    updated = F.normalize(momentum * bank[touched].float() + (1 - momentum) * new, dim=-1)
    bank[touched] = updated.to(bank.dtype)
    distribution = nearest[touched].flatten() / nearest[touched].sum().clamp_min(1e-12)
    entropy = -(distribution * distribution.clamp_min(1e-12).log()).sum()
    normalised = entropy / torch.log(torch.tensor(float(max(distribution.numel(), 2))))
    return {"usage_entropy": normalised, "regions_updated": touched.sum()}
