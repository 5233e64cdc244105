"""Open rasters kept across many reads in one thread (:class:`RasterPool`).

GDAL caches decoded blocks per open dataset, and drops them when the dataset is closed. A tiled reader that opens
every file of a series anew for each tile (as :func:`~skysense.data.series.read_time_series` does: it takes paths)
decodes the same blocks again for every neighbouring tile: for a 128-pixel tile of a 256-pixel-block DEFLATE
GeoTIFF, 4 to 8 times each block; for a JPEG 2000 band of a Sentinel-2 product, whose blocks are 1024² or whole
codestreams, far more. While a pool is active in a thread (:meth:`RasterPool.active`), every open of a path in that
thread (:func:`~skysense.data.raster.info.raster_info`, :class:`~skysense.data.raster.read.RasterFile`) returns the
one dataset the pool keeps open, with its metadata read once; closing it is a no-op until the pool is closed.

GDAL's own shared-dataset mode (``GDALOpenShared``) is not used: rasterio closes a shared dataset with its last
reference, which is each tile's ``with`` block, and the point is to outlive it. A pool is for one thread (open
datasets are not shared across threads); the files must not change while it is open (scene inference checks their
fingerprints before publishing).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_ACTIVE = threading.local()


class _Kept:
    """A pooled dataset handed to a caller: every attribute is the dataset's, but closing it does nothing."""

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Kept:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class RasterPool:
    """Datasets opened once per path (and their metadata), least recently used closed beyond ``max_open``.

    Args:
        max_open: open datasets kept at most (a Sentinel-2 product is 13 band files and a mask per date).
    """

    def __init__(self, max_open: int = 256) -> None:
        self.max_open = max_open
        self._datasets: OrderedDict[str, Any] = OrderedDict()
        self._infos: dict[str, Any] = {}

    def dataset(self, path: str | Path, opener: Callable[[], Any]) -> _Kept:
        """The open dataset of ``path``, opened by ``opener()`` the first time."""
        key = str(path)
        if key in self._datasets:
            self._datasets.move_to_end(key)
        else:
            self._datasets[key] = opener()
            while len(self._datasets) > self.max_open:
                _, oldest = self._datasets.popitem(last=False)
                oldest.close()
        return _Kept(self._datasets[key])

    def info(self, path: str | Path, reader: Callable[[], Any]) -> Any:
        """The metadata of ``path``, read by ``reader()`` the first time."""
        key = str(path)
        if key not in self._infos:
            self._infos[key] = reader()
        return self._infos[key]

    @contextmanager
    def active(self) -> Iterator[RasterPool]:
        """Make this pool the one the current thread's opens go through (nested pools: the innermost)."""
        previous = getattr(_ACTIVE, "pool", None)
        _ACTIVE.pool = self
        try:
            yield self
        finally:
            _ACTIVE.pool = previous

    def close(self) -> None:
        """Close every dataset kept."""
        while self._datasets:
            _, dataset = self._datasets.popitem()
            dataset.close()
        self._infos.clear()


def active_pool() -> RasterPool | None:
    """The pool active in the current thread, if any."""
    return getattr(_ACTIVE, "pool", None)
