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
        scores: (N, K) similarities (e.g. cosine) of N items to K clusters, or (*, N, K) for independent problems
            solved at once (local only).
        temperature: softness ε; smaller gives harder assignments.
        iterations: alternating normalisations.
        distributed: reduce over processes (when torch.distributed is initialised); needs (N, K) scores.

    Returns:
        Like ``scores``, float32: rows sum to 1, columns each hold N/K of the mass (up to the iteration count).
    """
    if distributed and scores.ndim != 2:
        raise ValueError(f"distributed Sinkhorn-Knopp takes (N, K) scores, got shape {tuple(scores.shape)}")
    scores = scores.float()
    # subtract the (global) max for stability; a common factor cancels in the normalisations
    peak = scores.amax(dim=(-2, -1), keepdim=True)
    if distributed:
        all_reduce_max(peak)
    q = torch.exp((scores - peak) / temperature)  # (*, N, K)
    count = torch.tensor(float(q.shape[-2]), device=q.device)
    if distributed:
        all_reduce_sum(count)
    clusters = q.shape[-1]
    total = q.sum(dim=(-2, -1), keepdim=True)
    if distributed:
        all_reduce_sum(total)
    q /= total
    for _ in range(iterations):
        columns = q.sum(dim=-2, keepdim=True)  # (*, 1, K): mass per cluster
        if distributed:
            all_reduce_sum(columns)
        q /= columns.clamp_min(1e-12)
        q /= clusters
        q /= q.sum(dim=-1, keepdim=True).clamp_min(1e-12)  # each item's mass
        q /= count
    return q * count  # rows sum to 1
