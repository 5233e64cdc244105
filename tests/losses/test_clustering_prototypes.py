"""Object clustering and the geo-context prototype update."""

import torch
import torch.nn.functional as F

from skysense.losses.clustering import cluster_assignments, pool_objects
from skysense.losses.prototype import update_prototypes


def test_clustering_separates_distinct_objects() -> None:
    # two "objects": pixels near one of two orthogonal directions
    directions = torch.eye(8)[:2]
    labels = torch.arange(64) % 2
    pixels = directions[labels] + 0.05 * torch.randn(64, 8)
    q = cluster_assignments(pixels[None], num_clusters=2, generator=torch.Generator().manual_seed(0))
    assert q.shape == (1, 64, 2)
    hard = q[0].argmax(1)
    agreement = (hard == labels).float().mean()
    assert agreement in (0.0, 1.0) or agreement > 0.95 or agreement < 0.05
    objects = pool_objects(pixels[None], q)
    assert objects.shape == (1, 2, 8)
    assert F.cosine_similarity(objects[0, 0], objects[0, 1], dim=0) < 0.2


def test_prototype_update_moves_towards_features_and_keeps_unit_norm() -> None:
    bank = F.normalize(torch.randn(4, 3, 8), dim=-1)
    untouched = bank[2].clone()
    target = F.normalize(torch.randn(8), dim=0)
    features = target + 0.01 * torch.randn(2, 10, 8)
    before = (bank[1] @ target).max()
    stats = update_prototypes(bank, features, torch.tensor([1, 1]), momentum=0.5)
    assert (bank[1] @ target).max() > before
    assert torch.allclose(bank.norm(dim=-1), torch.ones(4, 3), atol=1e-5)
    assert torch.equal(bank[2], untouched)
    assert stats["regions_updated"] == 1 and 0 <= stats["usage_entropy"] <= 1
