"""Tiles over a scene, smooth blending weights, and a chunked blender whose memory does not grow with the scene.

Everything here is in pixels of one grid (the output grid of a scene prediction). Tiles of ``tile`` pixels start
every ``stride`` pixels along each axis (``overlap = tile - stride``); the last tile is moved back so that it ends at
the scene's edge (rounded up to ``align`` so that every origin stays on the model's token lattice), so the scene is
covered without padding wherever the scene is at least a tile wide.

Overlapping tiles are blended with a separable weight that ramps up over the overlap from the tile's border to its
interior (:func:`blend_weights`): a pixel's value is the weighted mean of every tile covering it, so a tile's border,
where the model sees the least context, counts least and no seam shows.

:class:`ChunkedBlender` accumulates tiles chunk by chunk (``chunk`` × ``chunk`` output pixels, in row-major order).
A tile belongs to the chunk that holds its origin; its part beyond that chunk is carried: to the right in memory,
downwards in small ``.npy`` files in a scratch folder (one strip of ``tile`` rows per chunk, each written under a
temporary name, fsynced and renamed, so that a strip on disk is always whole; the caller makes a finished chunk
row's strips durable with :meth:`ChunkedBlender.sync_strips` and drops the row above's with
:meth:`ChunkedBlender.drop_strips` once its own state no longer needs them, so a run can resume at any chunk row). Memory is therefore
``(chunk + tile)² × (channels + 2)`` floats whatever the scene's size, and no tile is computed twice.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from skysense.inference.resume import write_durably


def _save_strip(path: Path, array: np.ndarray) -> None:
    """A carried strip as ``.npy``, written durably: a strip file on disk is always complete."""
    write_durably(path, lambda handle: np.save(handle, array), "a carried strip of the blended tiles")


def argmax_classes(values: np.ndarray) -> np.ndarray:
    """(K, h, w) float → (h, w) uint8 index of the largest (the first of equal ones), one plane at a time (numpy's
    argmax over the first axis is several times slower; torch's on a CPU is no faster)."""
    best = values[0].copy()
    classes = np.zeros(best.shape, dtype=np.uint8)
    for index in range(1, values.shape[0]):
        better = values[index] > best
        best[better] = values[index][better]
        classes[better] = index
    return classes


def tile_origins(length: int, tile: int, stride: int, align: int = 1) -> list[int]:
    """Origins of tiles of ``tile`` pixels covering ``length`` pixels, every ``stride`` pixels.

    The last tile is moved back to end at ``length`` (its origin rounded up to a multiple of ``align``, so it may
    reach past the end by less than ``align`` pixels); a scene shorter than a tile gets one tile at 0 (reaching
    past the end).

    Raises:
        ValueError: on a non-positive size, a stride above the tile, or a stride/tile not a multiple of ``align``.
    """
    if length <= 0 or tile <= 0 or stride <= 0:
        raise ValueError(f"length, tile and stride must be positive, got {length}, {tile}, {stride}")
    if stride > tile:
        raise ValueError(f"stride {stride} is larger than the tile {tile}: pixels would be left out")
    if tile % align or stride % align:
        raise ValueError(f"tile {tile} and stride {stride} must be multiples of {align} (the model's token lattice)")
    origins = list(range(0, max(length - tile, 0) + 1, stride))
    if origins[-1] + tile < length:
        last = math.ceil((length - tile) / align) * align
        origins.append(last)
    return origins


def blend_weights(tile: int, overlap: int, floor: float = 1e-3) -> np.ndarray:
    """(tile, tile) float32 weights: 1 in the interior, falling as a raised cosine (Hann) to ``floor`` over
    ``overlap`` pixels at each border (all ones without overlap). Never zero, so a pixel covered by one tile keeps
    its value; where two tiles overlap, the one whose border is nearer counts less, smoothly."""
    if overlap <= 0:
        return np.ones((tile, tile), dtype=np.float32)
    position = np.arange(tile, dtype=np.float64) + 0.5
    distance = np.minimum(1.0, np.minimum(position, tile - position) / overlap)
    ramp = np.maximum(np.sin(0.5 * np.pi * distance) ** 2, floor).astype(np.float32)
    return np.outer(ramp, ramp)


@dataclass(frozen=True)
class TileLayout:
    """Tiles over an (height, width) output grid, grouped by the chunk that holds each tile's origin.

    Attributes:
        height, width: the output grid in pixels.
        tile: tile side in output pixels.
        stride: tile step in output pixels.
        chunk: chunk side in output pixels (at least the tile).
        align: every tile origin is a multiple of it.
    """

    height: int
    width: int
    tile: int
    stride: int
    chunk: int
    align: int = 1

    def __post_init__(self) -> None:
        if self.chunk < self.tile:
            raise ValueError(f"chunk {self.chunk} must be at least the tile {self.tile}")

    @property
    def overlap(self) -> int:
        return self.tile - self.stride

    @property
    def rows(self) -> list[int]:
        return tile_origins(self.height, self.tile, self.stride, self.align)

    @property
    def cols(self) -> list[int]:
        return tile_origins(self.width, self.tile, self.stride, self.align)

    @property
    def chunk_grid(self) -> tuple[int, int]:
        """Chunks along (rows, columns)."""
        return math.ceil(self.height / self.chunk), math.ceil(self.width / self.chunk)

    @property
    def num_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def chunks(self) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
        """(chunk row, chunk column, the (row, col) origins of its tiles) in row-major chunk order; chunks that
        hold no tile origin (at the far edges) are listed too, with no tiles."""
        rows, cols = self.rows, self.cols
        n_rows, n_cols = self.chunk_grid
        for a in range(n_rows):
            chunk_rows = [r for r in rows if r // self.chunk == a]
            for b in range(n_cols):
                chunk_cols = [c for c in cols if c // self.chunk == b]
                yield a, b, [(r, c) for r in chunk_rows for c in chunk_cols]


class ChunkedBlender:
    """Weighted accumulation of tile outputs in row-major chunks; each chunk is handed to ``emit`` as soon as no
    later tile can touch it.

    Args:
        layout: the tiles and chunks.
        channels: channels per tile output.
        emit: called once per chunk, in row-major order, with (row0, col0, values (C, h, w) float32 — NaN where no
            valid tile covered the pixel — or with ``classes`` the class map (1, h, w) uint8, and valid (h, w)
            bool); h, w are clipped to the grid.
        scratch: folder for the carried strips (a temporary one, removed at :meth:`close`, by default).
        device: where the accumulator lives (a GPU's memory when the model runs there: tile outputs then never
            leave it until their chunk is finished).
        classes: emit each chunk's class map instead of its values: (1, h, w) uint8, the index of the largest
            weighted sum (its argmax equals that of the weighted mean, as every pixel's weight is positive), taken
            where the accumulator lives, so a GPU hands one byte per pixel to the host instead of C floats, and no
            division is made.

    Feed every tile of the current chunk with :meth:`add` (in any order), then call :meth:`finish_chunk`; chunks
    come in the order of ``layout.chunks()``.
    """

    def __init__(
        self,
        layout: TileLayout,
        channels: int,
        emit: Callable[[int, int, np.ndarray, np.ndarray], None],
        scratch: str | Path | None = None,
        device: str | torch.device = "cpu",
        classes: bool = False,
    ) -> None:
        self.layout = layout
        self.classes = classes
        self.device = torch.device(device)
        self.channels = channels
        self.emit = emit
        self._own_scratch = scratch is None
        self.scratch = Path(tempfile.mkdtemp(prefix="skysense-blend-")) if scratch is None else Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.weights = torch.from_numpy(blend_weights(layout.tile, layout.overlap)).to(self.device)
        size = layout.chunk + layout.tile
        # values (C), weight sum, validity (1 where some tile saw the pixel valid)
        self._sum = torch.zeros((channels + 2, size, size), dtype=torch.float32, device=self.device)
        self._right: torch.Tensor | None = None  # carried from the chunk to the left: (C + 2, chunk, tile)
        self._position: tuple[int, int] | None = None
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skysense-strip")  # disk writes overlap
        self._saving: dict[Path, Future] = {}

    # ------------------------------------------------------------------------------------------------------------
    def _strip_path(self, a: int, b: int) -> Path:
        return self.scratch / f"strip_{a}_{b}.npy"

    def start_chunk(self, a: int, b: int) -> None:
        """Begin chunk (a, b): collect what the chunks above and to the left carried into it."""
        chunk, tile = self.layout.chunk, self.layout.tile
        self._sum.zero_()
        if b > 0 and self._right is not None:
            self._sum[:, :chunk, :tile] += self._right
        self._right = None
        if a > 0:  # strips of row a - 1 land in this chunk's core columns only (so nothing is counted twice)
            for source_b, columns in ((b, slice(0, chunk)), (b - 1, slice(chunk, chunk + tile))):
                path = self._strip_path(a - 1, source_b)
                if path in self._saving:
                    self._saving.pop(path).result()
                if source_b < 0 or not path.exists():
                    continue
                strip = torch.from_numpy(np.load(path)).to(self.device)  # (C + 2, tile, chunk + tile)
                target = slice(0, chunk) if source_b == b else slice(0, tile)
                self._sum[:, :tile, target] += strip[:, :, columns]
        self._position = (a, b)

    def add(self, row: int, col: int, values: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor) -> None:
        """Add one tile: ``values`` (C, tile, tile), ``valid`` (tile, tile) bool, at origin (row, col) of the grid,
        which must lie in the current chunk (arrays or tensors; moved to the blender's device)."""
        if self._position is None:
            raise RuntimeError("start_chunk before add")
        chunk, tile = self.layout.chunk, self.layout.tile
        a, b = self._position
        r, c = row - a * chunk, col - b * chunk
        if not (0 <= r < chunk and 0 <= c < chunk):
            raise ValueError(f"tile at ({row}, {col}) does not start in chunk ({a}, {b})")
        if tuple(values.shape) != (self.channels, tile, tile) or tuple(valid.shape) != (tile, tile):
            raise ValueError(
                f"tile values {tuple(values.shape)} / valid {tuple(valid.shape)}, expected ({self.channels}, {tile}, "
                f"{tile})"
            )
        values = torch.as_tensor(values).to(self.device, torch.float32)
        valid = torch.as_tensor(valid).to(self.device, torch.float32)
        weights = self.weights * valid
        rows, cols = slice(r, r + tile), slice(c, c + tile)
        self._sum[: self.channels, rows, cols].addcmul_(values, weights)
        self._sum[self.channels, rows, cols] += weights
        torch.maximum(self._sum[self.channels + 1, rows, cols], valid, out=self._sum[self.channels + 1, rows, cols])

    def finish_chunk(self) -> None:
        """Emit the current chunk's core and carry its overhang to the right and downwards."""
        if self._position is None:
            raise RuntimeError("finish_chunk without start_chunk")
        layout = self.layout
        chunk = layout.chunk
        a, b = self._position
        n_rows, n_cols = layout.chunk_grid
        if b + 1 < n_cols:
            self._right = self._sum[:, :chunk, chunk:].clone()
        if a + 1 < n_rows:
            path, strip = self._strip_path(a, b), self._sum[:, chunk:, :].cpu().numpy().copy()
            self._saving[path] = self._saver.submit(_save_strip, path, strip)
        for future in list(self._saving.values())[:-2]:  # at most 2 strips wait in memory for the disk
            future.result()
        row0, col0 = a * chunk, b * chunk
        h, w = min(chunk, layout.height - row0), min(chunk, layout.width - col0)
        core = self._sum[:, :h, :w]
        weight = core[self.channels]
        valid = (core[self.channels + 1] > 0) & (weight > 0)
        self._position = None
        if self.classes:
            if self.device.type == "cpu":
                labels = argmax_classes(core[: self.channels].numpy())[None]
            else:
                labels = core[: self.channels].argmax(dim=0, keepdim=True).to(torch.uint8).cpu().numpy()
            self.emit(row0, col0, labels, valid.cpu().numpy())
            return
        # one new array (the writer may keep it after this returns), filled in one pass: 128 float32 bands per pixel
        # are the bulk of the blend stage
        values = torch.div(core[: self.channels], weight.clamp_min(1e-12), out=torch.empty_like(core[: self.channels]))
        if not bool(valid.all()):
            values.masked_fill_(~valid, torch.nan)
        self.emit(row0, col0, values.cpu().numpy(), valid.cpu().numpy())

    def sync_strips(self) -> None:
        """Wait until every strip handed to the disk is written and fsynced (call at the end of a chunk row, before
        recording the row as done)."""
        for future in self._saving.values():
            future.result()
        self._saving.clear()

    def drop_strips(self, a: int) -> None:
        """Delete the strips chunk row ``a`` carried down (once the row below is finished and recorded)."""
        if a < 0:
            return
        for b in range(self.layout.chunk_grid[1]):
            self._strip_path(a, b).unlink(missing_ok=True)

    def close(self) -> None:
        """Finish pending writes; remove the scratch folder if this blender made it."""
        self._saver.shutdown(wait=True)
        if self._own_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
