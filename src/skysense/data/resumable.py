"""Data loading that a checkpoint can resume exactly, mid-epoch, with any number of workers or processes.

Three parts:

- :class:`ResumableSampler` — a :class:`~torch.utils.data.distributed.DistributedSampler` (so Lightning leaves it in
  place under DDP/FSDP) whose order is a pure function of ``(seed, epoch, cycle)`` and whose keys carry a
  per-sample augmentation seed: ``(index, sample_seed)``. ``cycle`` counts the passes over the data inside one
  epoch (with ``CombinedLoader(mode="max_size_cycle")`` the shorter sources are iterated several times per epoch;
  each pass gets a fresh order and fresh augmentations).
- :class:`SeededDataset` — re-seeds the transforms' generators from the key's ``sample_seed`` before loading, so a
  sample's augmentation does not depend on which worker loads it, on the worker count or on what ran before.
- :class:`ResumableLoader` — a DataLoader with ``state_dict``/``load_state_dict`` (Lightning's ``_Stateful``
  protocol: the fit loop stores it in checkpoints and restores it before iterating). The state counts the batches
  the *training step consumed* in the epoch (:meth:`ResumableLoader.mark_consumed`, called from the data module's
  ``on_before_batch_transfer``), not the batches the loader produced: Lightning fetches one batch ahead and workers
  prefetch more, so counting produced batches would skip data on resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


def derive_seed(*values: int) -> int:
    """A 63-bit seed from integers (NumPy's SeedSequence: well mixed, stable across platforms and versions)."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


class ResumableSampler(DistributedSampler):
    """Shuffled and sharded by rank; yields ``(index, sample_seed)`` keys.

    Args:
        dataset: the dataset (only its length is used).
        seed: base seed of the order and the augmentations.
        shuffle: random order per (epoch, cycle); otherwise dataset order.
        num_replicas, rank: default to the initialised process group, or 1 and 0.
    """

    def __init__(
        self,
        dataset: Dataset,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.cycle = 0  # the next pass inside the current epoch
        self.skip = 0  # samples of this rank's shard to skip on the next pass (resume)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch start; a new epoch restarts the pass count."""
        if epoch != self.epoch:
            self.cycle, self.skip = 0, 0
        super().set_epoch(epoch)

    def resume(self, epoch: int, cycle: int, skip: int) -> None:
        """Start the next pass at ``cycle`` of ``epoch``, leaving out its first ``skip`` samples of this shard."""
        self.epoch, self.cycle, self.skip = epoch, cycle, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch, cycle, skip = self.epoch, self.cycle, self.skip
        self.cycle, self.skip = cycle + 1, 0
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, cycle))
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        order += order[: self.total_size - n]  # pad so that every rank gets the same count
        positions = range(self.rank, self.total_size, self.num_replicas)
        for position in list(positions)[skip:]:
            yield order[position], derive_seed(self.seed, epoch, cycle, position)


class SeededDataset(Dataset):
    """``dataset[index]`` with ``generators`` re-seeded from the key's sample seed first.

    Args:
        dataset: any map-style dataset.
        generators: the generators the dataset's transforms draw from.
    """

    def __init__(self, dataset: Dataset, generators: Sequence[torch.Generator]) -> None:
        self.dataset = dataset
        self.generators = list(generators)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, sample_seed = key
        for i, generator in enumerate(self.generators):
            generator.manual_seed(derive_seed(sample_seed, i))
        return self.dataset[index]


class ResumableLoader(DataLoader):
    """A DataLoader over :class:`SeededDataset` with a :class:`ResumableSampler`, resumable from its state.

    Args:
        dataset: the dataset.
        generators: the generators its transforms draw from (re-seeded per sample).
        batch_size, drop_last, num_workers, collate_fn, ...: as for :class:`~torch.utils.data.DataLoader`.
        seed: base seed of order and augmentations.
        shuffle: random order per pass.
    """

    def __init__(
        self,
        dataset: Dataset,
        generators: Sequence[torch.Generator] = (),
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        **loader_kwargs: Any,
    ) -> None:
        seeded = SeededDataset(dataset, generators)
        sampler = ResumableSampler(seeded, seed=seed, shuffle=shuffle)
        # the loader's own generator: creating an iterator (every pass) must not draw from the global RNG, which
        # the model uses and checkpoints
        loader_kwargs.setdefault("generator", torch.Generator().manual_seed(derive_seed(seed, 1)))
        super().__init__(seeded, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **loader_kwargs)
        self.consumed = 0  # batches the training step has taken in the current epoch
        self.consumed_epoch = 0
        self.epoch_batches: int | None = None  # batches per epoch when it differs from len(self) (max_size_cycle)

    @property
    def resumable_sampler(self) -> ResumableSampler:
        return self.sampler  # type: ignore[return-value]

    def mark_consumed(self) -> None:
        """One batch of this loader went into a training step."""
        epoch = self.resumable_sampler.epoch
        if epoch != self.consumed_epoch:
            self.consumed_epoch, self.consumed = epoch, 0
        self.consumed += 1

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.consumed_epoch, "consumed": self.consumed, "batches_per_pass": len(self)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the state's last consumed batch (a later pass when it closed one)."""
        if state["batches_per_pass"] != len(self):
            raise ValueError(
                f"cannot resume: the checkpoint's loader had {state['batches_per_pass']} batches per pass, this one "
                f"has {len(self)} (dataset, batch size or process count changed)"
            )
        epoch, consumed = state["epoch"], state["consumed"]
        if self.epoch_batches is not None and consumed >= self.epoch_batches:
            epoch, consumed = epoch + 1, 0  # saved after the epoch's last batch: the next epoch starts afresh
        self.consumed_epoch, self.consumed = epoch, consumed
        cycle, batch = divmod(consumed, max(len(self), 1))
        self.resumable_sampler.resume(epoch, cycle, batch * self.batch_size)  # type: ignore[operator]
