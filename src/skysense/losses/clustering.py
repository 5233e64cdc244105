"""Object-level features by unsupervised Sinkhorn-Knopp clustering of pixel features (SkySense's object-level
contrast): each image's pixels are softly assigned to K centres with an equipartition constraint (so no centre is
empty), the centres are refined for a few rounds, and the assignment pools pixel features into K "object" features.
Gradient-free; the teacher's assignment pools the student's features so both views describe the same objects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from skysense.losses.sinkhorn import sinkhorn_knopp


@torch.no_grad()
def cluster_assignments(
    features: torch.Tensor,
    num_clusters: int,
    rounds: int = 3,
    temperature: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Soft pixel-to-object assignment per image.

    Args:
        features: (B, N, D) pixel features of B images (N pixels each).
        num_clusters: K objects per image (clamped to N).
        rounds: centre-refinement rounds.
        temperature: Sinkhorn softness.
        generator: for the choice of initial centres.

    Returns:
        (B, N, K) assignments, each pixel's row summing to 1, each object receiving N/K of the mass.
    """
    batch, pixels, dim = features.shape
    clusters = min(num_clusters, pixels)
    normalized = F.normalize(features.float(), dim=-1)
    # K distinct random pixels per image as the initial centres
    start = torch.rand(batch, pixels, generator=generator).argsort(dim=1)[:, :clusters].to(features.device)
    centres = torch.gather(normalized, 1, start[..., None].expand(-1, -1, dim))  # (B, K, D)
    for _ in range(rounds):  # all images at once
        q = sinkhorn_knopp(normalized @ centres.transpose(1, 2), temperature=temperature, distributed=False)
        centres = F.normalize(q.transpose(1, 2) @ normalized, dim=-1)  # (B, K, D)
    return q


def pool_objects(features: torch.Tensor, assignments: torch.Tensor) -> torch.Tensor:
    """(B, N, D) pixel features and (B, N, K) assignments → (B, K, D) assignment-weighted mean features."""
    weights = assignments / assignments.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return weights.transpose(1, 2) @ features
