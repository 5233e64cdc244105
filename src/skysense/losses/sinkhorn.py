"""Sinkhorn-Knopp equipartition (Cuturi 2013; as used by SwAV and DINOv2's teacher centering).

Turns scores of N items against K clusters into a soft assignment whose clusters receive equal mass and whose rows
each sum to one. Gradient-free. In distributed runs the column sums are reduced over all processes, so the
equipartition holds over the global batch.
"""

from __future__ import annotations

import torch

from skysense.losses.distributed import all_reduce_max, all_reduce_sum


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor, temperature: float = 0.05, iterations: int = 3, distributed: bool = True
) -> torch.Tensor:
    """Equipartitioned soft assignment.

    Args:
        scores: (N, K) similarities (e.g. cosine) of N items to K clusters.
        temperature: softness ε; smaller gives harder assignments.
        iterations: alternating normalisations.
        distributed: reduce over processes (when torch.distributed is initialised).

    Returns:
        (N, K) float32: rows sum to 1, columns each hold N/K of the mass (up to the iteration count).
    """
    scores = scores.float()
    # subtract the (global) max for stability; a common factor cancels in the normalisations
    peak = scores.max().reshape(1)
    if distributed:
        all_reduce_max(peak)
    q = torch.exp((scores - peak) / temperature).t()  # (K, N)
    count = torch.tensor([q.shape[1]], dtype=torch.float32, device=q.device)
    if distributed:
        all_reduce_sum(count)
    clusters = q.shape[0]
    total = q.sum()
    if distributed:
        all_reduce_sum(total)
    q /= total
    for _ in range(iterations):
        rows = q.sum(dim=1, keepdim=True)  # (K, 1): mass per cluster
        if distributed:
            all_reduce_sum(rows)
        q /= rows.clamp_min(1e-12)
        q /= clusters
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-12)  # each item's mass
        q /= count
    return (q * count).t()  # (N, K), rows sum to 1
