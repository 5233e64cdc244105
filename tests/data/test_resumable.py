"""Resumable loading: order by (seed, epoch, pass), sharding, per-sample augmentation seeds, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from skysense.data.resumable import ResumableLoader, ResumableSampler


class Draws(Dataset):
    """Sample i → (i, a draw from the transform generator): shows which augmentation a sample got."""

    def __init__(self, n: int) -> None:
        self.n, self.generator = n, torch.Generator()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[int, float]:
        return index, float(torch.rand((), generator=self.generator))


def _pairs(loader: ResumableLoader) -> list[tuple[int, float]]:
    return [(int(i), float(d)) for indices, draws in loader for i, d in zip(indices, draws, strict=True)]


def test_order_depends_on_seed_epoch_and_pass_and_shards_cover_the_data() -> None:
    dataset = Draws(10)
    sampler = ResumableSampler(dataset, seed=1)
    first, second = list(sampler), list(sampler)  # two passes of epoch 0
    assert sorted(i for i, _ in first) == list(range(10))
    assert first != second  # a new order and new augmentation seeds per pass
    sampler.set_epoch(1)
    assert sampler.cycle == 0 and list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    ranks = [list(ResumableSampler(dataset, seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(r) == 4 for r in ranks)  # padded to equal counts
    assert {i for r in ranks for i, _ in r} == set(range(10))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmentations_follow_the_sample_not_the_worker(num_workers: int) -> None:
    in_main = Draws(12)
    reference = _pairs(ResumableLoader(in_main, [in_main.generator], batch_size=3, seed=5))
    dataset = Draws(12)
    loader = ResumableLoader(dataset, [dataset.generator], batch_size=3, seed=5, num_workers=num_workers)
    assert _pairs(loader) == reference
    assert len({draw for _, draw in reference}) == 12  # each sample its own seed


def test_state_resumes_after_the_consumed_batches() -> None:
    dataset = Draws(12)
    loader = ResumableLoader(dataset, [dataset.generator], batch_size=3, seed=2)
    passes = _pairs(loader) + _pairs(loader)  # two passes, 8 batches
    for _ in range(6):  # the training step took 6 batches (one pass and a half)
        loader.mark_consumed()
    state = loader.state_dict()
    assert state == {"epoch": 0, "consumed": 6, "batches_per_pass": 4}
    fresh = Draws(12)
    resumed = ResumableLoader(fresh, [fresh.generator], batch_size=3, seed=2)
    resumed.load_state_dict(state)
    assert _pairs(resumed) == passes[18:]
    with pytest.raises(ValueError, match="batches per pass"):
        ResumableLoader(Draws(9), [], batch_size=3, seed=2).load_state_dict(state)
