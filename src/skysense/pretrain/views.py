"""Augmented views per sample for self-supervised pretraining: two global views, and optionally local crops.

A ``shared`` transform (frame sampling, flips) is applied once, so both global views keep the same frames and
orientation; a ``per_view`` transform (crops whose boxes are recorded, photometric changes, date jitter) is then
applied to each view independently. With ``local_crops`` > 0, samples that have an HR image also give that many
small HR views (DINO's multi-crop: :class:`~skysense.data.transforms.LocalCrop` and its own photometric changes),
which only the student sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from skysense.containers import Batch, Sample
from skysense.data.collate import collate

Transform = Callable[[Sample], Sample]


class TwoViews:
    """Sample → (view 1, view 2, local 1, …, local n)."""

    def __init__(
        self,
        shared: Transform | None = None,
        per_view: Transform | None = None,
        local: Transform | None = None,
        local_crops: int = 0,
    ) -> None:
        if local_crops < 0 or (local_crops and local is None):
            raise ValueError(f"local_crops must be >= 0 and come with a local transform, got {local_crops}")
        self.shared, self.per_view = shared, per_view
        self.local, self.local_crops = local, local_crops

    def __call__(self, sample: Sample) -> tuple[Sample, ...]:
        if self.shared is not None:
            sample = self.shared(sample)
        views = (sample, sample) if self.per_view is None else (self.per_view(sample), self.per_view(sample))
        if self.local is None or sample.hr is None:
            return views
        return views + tuple(self.local(sample) for _ in range(self.local_crops))


def collate_views(groups: Sequence[tuple[Sample, ...]]) -> tuple[Batch, ...]:
    """Collate a list of view tuples into one batch per view, aligned sample by sample."""
    counts = {len(group) for group in groups}
    if len(counts) != 1:
        raise ValueError(f"samples of one batch gave different numbers of views: {sorted(counts)}")
    return tuple(collate([group[i] for group in groups]) for i in range(counts.pop()))
