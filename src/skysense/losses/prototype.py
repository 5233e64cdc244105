"""Geo-context prototype learning (SkySense Sec. 3.3): gradient-free update of the region prototype bank.

For the fused features F of samples in region r (projected into prototype space by the model's query projector),
cosine similarities to P_r give, through Sinkhorn-Knopp, an equipartitioned assignment S; the assigned means
P̄ = normalise(Sᵀ·F) update the bank by EMA, P_r ← normalise(m·P_r + (1 − m)·P̄). Sums are reduced over processes
before the update, so every process holds the same bank; pretraining sums them over a step's forwards and
updates once per optimiser step (:meth:`~skysense.pretrain.meta_arch.SSLMetaArch.finish_step`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from skysense.losses.distributed import all_reduce_sum
from skysense.losses.sinkhorn import sinkhorn_knopp


@torch.no_grad()
def prototype_statistics(bank: torch.Tensor, features: torch.Tensor, regions: torch.Tensor, temperature: float = 0.05
                         ) -> torch.Tensor:  # fmt: skip
    """This process's contribution to a bank update, as one tensor that sums over processes and steps.

    Args:
        bank: (R, P, d) prototype buffer (unit rows).
        features: (B, N, d) fused features of B samples, already in prototype space (B may be 0).
        regions: (B,) region index of each sample.
        temperature: Sinkhorn softness.

    Returns:
        (R, P, d + 2): per region and prototype, the assignment-weighted feature sums (d), the assigned mass (1) and
        the count of features whose nearest prototype it is (1, the collapse monitor).
    """
    num_regions, num_prototypes, dim = bank.shape
    statistics = torch.zeros(num_regions, num_prototypes, dim + 2, device=bank.device)
    features = F.normalize(features.float(), dim=-1)
    for region in regions.unique():
        tokens = features[regions == region].reshape(-1, dim)  # (M, d)
        similarity = tokens @ bank[region].float().t()  # (M, P) cosine
        assignment = sinkhorn_knopp(similarity, temperature=temperature, distributed=False)
        statistics[region, :, :dim] += assignment.t() @ tokens  # (P, d)
        statistics[region, :, dim] += assignment.sum(dim=0)
        statistics[region, :, dim + 1] += torch.bincount(similarity.argmax(dim=1), minlength=num_prototypes).float()
    return statistics


@torch.no_grad()
def apply_prototype_update(bank: torch.Tensor, statistics: torch.Tensor, momentum: float = 0.99
                           ) -> dict[str, torch.Tensor]:  # fmt: skip
    """EMA update of ``bank`` in place from :func:`prototype_statistics` (summed over processes and steps):
    P_r ← normalise(m·P_r + (1 − m)·normalise(Sᵀ·F)) for every region that received features.

    Returns:
        {"usage_entropy": normalised entropy of which prototype is nearest to each feature, over the touched
            regions (1 = all used equally, near 0 = collapse onto a few),
         "regions_updated": number of regions touched}.
    """
    dim = bank.shape[-1]
    sums, usage, nearest = statistics[..., :dim], statistics[..., dim], statistics[..., dim + 1]
    touched = usage.sum(dim=1) > 0  # (R,)
    if touched.any():
        new = F.normalize(sums[touched], dim=-1)
        updated = F.normalize(momentum * bank[touched].float() + (1 - momentum) * new, dim=-1)
        bank[touched] = updated.to(bank.dtype)
    distribution = nearest[touched].flatten() / nearest[touched].sum().clamp_min(1e-12)
    entropy = -(distribution * distribution.clamp_min(1e-12).log()).sum()
    normalised = entropy / torch.log(torch.tensor(float(max(distribution.numel(), 2))))
    return {"usage_entropy": normalised, "regions_updated": touched.sum()}


@torch.no_grad()
def update_prototypes(
    bank: torch.Tensor,
    features: torch.Tensor,
    regions: torch.Tensor,
    momentum: float = 0.99,
    temperature: float = 0.05,
) -> dict[str, torch.Tensor]:
    """One EMA update of ``bank`` in place from ``features`` (B, N, d) of samples in ``regions`` (B,), with the
    statistics summed over processes (a collective: every process calls it). See :func:`prototype_statistics` and
    :func:`apply_prototype_update`, which pretraining calls separately to update once per optimiser step."""
    statistics = all_reduce_sum(prototype_statistics(bank, features, regions, temperature))
    return apply_prototype_update(bank, statistics, momentum)
