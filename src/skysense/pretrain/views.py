"""Two augmented views per sample for self-supervised pretraining.

A ``shared`` transform (crops, flips, frame sampling) is applied once, so both views keep the same geometry and the
same frames — location l and frame t correspond across views, which the pixel and object levels rely on. A
``per_view`` transform (photometric changes, date jitter) is then applied to each view independently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from skysense.containers import Batch, Sample
from skysense.data.collate import collate

Transform = Callable[[Sample], Sample]


class TwoViews:
    """Sample → (view 1, view 2)."""

    def __init__(self, shared: Transform | None = None, per_view: Transform | None = None) -> None:
        self.shared = shared
        self.per_view = per_view

    def __call__(self, sample: Sample) -> tuple[Sample, Sample]:
        if self.shared is not None:
            sample = self.shared(sample)
        if self.per_view is None:
            return sample, sample
        return self.per_view(sample), self.per_view(sample)


def collate_views(pairs: Sequence[tuple[Sample, Sample]]) -> tuple[Batch, Batch]:
    """Collate a list of view pairs into two batches aligned sample by sample."""
    return collate([first for first, _ in pairs]), collate([second for _, second in pairs])
