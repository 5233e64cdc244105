"""The stages of a scene run, each with its own clock: read → run → blend → write (then publish, in
:func:`~skysense.inference.scene.predict_scene`).

- :class:`TileReads` (read): batches of tiles in the layout's order, read ahead by reader threads into a bounded
  queue (``prefetch + 1`` batches), or in the model's thread between forwards when there are none;
- :class:`ModelRun` (run): a batch on the device, through the model;
- :class:`ChunkRows` (blend, write): tiles accumulated into their chunk (:class:`~skysense.inference.tiling.ChunkedBlender`),
  finished chunks handed to the writer thread (:class:`~skysense.inference.writer.BackgroundWriter`, whose own queue
  holds at most two), and each finished chunk row recorded in the run state once its file is durable, so that a
  resume continues from it.

:class:`StageClock` adds up each stage's seconds, so that a run reports where its time went and the slowest stage is
visible (:attr:`~skysense.inference.scene.SceneReport.stages`). On a GPU the run stage only launches the work; the
device's own time is measured with CUDA events (:meth:`ModelRun.device_seconds`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from skysense.batch import SkySenseInput
from skysense.inference.models import SceneModel
from skysense.inference.plan import ScenePlan, tile_rows_per_region
from skysense.inference.resume import RunState
from skysense.inference.sources import TileReader, stack_inputs
from skysense.inference.tiling import ChunkedBlender
from skysense.inference.writer import BackgroundWriter

STAGES = ("prepare", "read", "run", "blend", "write", "publish")

Chunk = tuple[int, int, list[tuple[int, int]]]  # (chunk row, chunk column, its tiles' (row, column) origins)
Item = tuple[int, int, int]  # a tile: (index of its chunk in the run's list, tile row, tile column)


class StageClock:
    """Seconds spent per stage (:data:`STAGES`), in the thread that drives the run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - began

    def move(self, seconds: float, source: str, target: str) -> None:
        """Count ``seconds`` already counted in ``source`` (a stage that called into another) in ``target``."""
        self.seconds[source] -= seconds
        self.seconds[target] += seconds


def batches_of(items: list, size: int, group: Callable[[object], object]) -> Iterator[list]:
    """Consecutive runs of at most ``size`` items that never cross a change of ``group(item)`` (a chunk row), so
    that a resumed run forms exactly the batches an uninterrupted run formed (and computes the same bits)."""
    batch: list = []
    for item in items:
        if batch and (len(batch) == size or group(batch[-1]) != group(item)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def read_regions(plan: ScenePlan, chunks: list[Chunk]) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """The Sentinel region (row, col, height, width in reference pixels) each row of a chunk's tiles is read from
    ({(chunk index, tile row): region}): as many rows of a chunk's tiles as fit :data:`~skysense.inference.plan.REGION_MB`
    (see :meth:`TileReader.read`). From the layout alone, so that a resumed run reads the same regions."""
    stride, tile = plan.stride, plan.tile
    tile_out = tile // stride
    per_region = tile_rows_per_region(plan.sources, plan.modalities, (plan.chunk + tile_out) * stride,
                                      tile - plan.overlap)  # fmt: skip
    tile_rows: dict[int, list[int]] = {}
    for index, (_, _, tiles) in enumerate(chunks):
        for r, _ in tiles:
            if r not in tile_rows.setdefault(index, []):
                tile_rows[index].append(r)
    group = {(index, r): i // per_region for index, rows in tile_rows.items() for i, r in enumerate(rows)}
    spans: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for index, (_, _, tiles) in enumerate(chunks):
        for r, c in tiles:
            rows, cols = spans.setdefault((index, group[index, r]), ([], []))
            rows.append(r)
            cols.append(c)
    boxes = {key: (min(rs) * stride, min(cs) * stride, (max(rs) - min(rs)) * stride + tile,
                   (max(cs) - min(cs)) * stride + tile) for key, (rs, cs) in spans.items()}  # fmt: skip
    return {(index, r): boxes[index, g] for (index, r), g in group.items()}


@dataclass
class ReadBatch:
    """A batch of tiles as read.

    Attributes:
        items: the tiles (chunk index, tile row, tile column).
        run: positions in ``items`` of the tiles with a valid pixel (the others are not run).
        inputs: the run tiles' model inputs, stacked (page-locked for a GPU); None when none is run.
        valid: (B, tile, tile) bool, their valid reference pixels; None when none is run.
        with_input: tiles with some valid input pixel.
    """

    items: list[Item]
    run: list[int]
    inputs: SkySenseInput | None
    valid: torch.Tensor | None
    with_input: int


def _called_now(fn: Callable, *args: object) -> Future:
    """``fn(*args)`` called now, its result (or error) in a done future, as a reader thread's would be."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as err:  # re-raised by .result(), like a thread's
        future.set_exception(err)
    return future


class TileReads:
    """The read stage: the run's batches of tiles, in order.

    With ``plan.workers`` reader threads, each with its own :class:`TileReader` (open dataset handles are not shared
    across threads), the next ``plan.prefetch + 1`` batches are read (or wait to be) while the model runs on one:
    a bounded queue; the clock's "read" is then the model's thread waiting for a batch not read yet. Without them
    the next batch is read in the calling thread, between forwards, with ``first`` (whose block cache still holds
    the blocks the start-of-run checks decoded).

    Args:
        plan: the run's plan.
        chunks: the chunks still to compute.
        first: the reader that checked the inputs (used by this thread, or closed when threads read).
        hr_channels: the model's HR encoder's channels.
        clock: the run's stage clock.
    """

    def __init__(
        self, plan: ScenePlan, chunks: list[Chunk], first: TileReader, hr_channels: int | None, clock: StageClock
    ) -> None:
        self.plan = plan
        self.chunks = chunks
        self.hr_channels = hr_channels
        self.clock = clock
        self.items: list[Item] = [(index, r, c) for index, (_, _, tiles) in enumerate(chunks) for r, c in tiles]
        self.regions = read_regions(plan, chunks)
        self._local = threading.local()
        self._readers: list[TileReader] = []
        self._lock = threading.Lock()
        self._pending: deque[Future] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self.hr_stretch = first.hr_stretch  # resolved once, by the first reader
        if plan.workers:
            first.close()
            self._executor = ThreadPoolExecutor(max_workers=plan.workers, thread_name_prefix="skysense-read")
        else:
            self._local.reader = first
            self._readers.append(first)

    def _reader(self) -> TileReader:
        if not hasattr(self._local, "reader"):
            reader = TileReader(self.plan.sources, self.plan.modalities, self.hr_channels, check_scene=False,
                                hr_stretch_of=self.hr_stretch)  # fmt: skip
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return self._local.reader

    def read_batch(self, items: list[Item]) -> ReadBatch:
        """Read a batch's tiles, stack those with a valid pixel (here, off the model's thread) and page-lock them
        for a GPU's asynchronous copy."""
        plan, reader = self.plan, self._reader()
        read, with_input = [], 0
        for index, r, c in items:  # origins in output pixels, read in reference pixels
            read.append(reader.read(r * plan.stride, c * plan.stride, plan.tile, self.regions[index, r]))
            with_input += reader.input_valid
        run = [i for i, (_, valid) in enumerate(read) if valid.any()]  # tiles with no valid pixel: not run
        if not run:
            return ReadBatch(items, run, None, None, with_input)
        stacked = stack_inputs([read[i][0] for i in run])
        valid = torch.from_numpy(np.stack([read[i][1] for i in run]))  # (B, tile, tile) bool
        if plan.on_gpu:
            stacked, valid = stacked.pin_memory(), valid.pin_memory()
        return ReadBatch(items, run, stacked, valid, with_input)

    def _submit(self, items: list[Item]) -> Future:
        if self._executor is not None:
            return self._executor.submit(self.read_batch, items)
        with self.clock("read"):  # read now, in this thread
            return _called_now(self.read_batch, items)

    def __iter__(self) -> Iterator[ReadBatch]:
        batches = batches_of(self.items, self.plan.batch_size, lambda item: self.chunks[item[0]][0])
        for items in batches:
            self._pending.append(self._submit(items))
            if len(self._pending) > self.plan.prefetch:
                break
        while self._pending:
            with self.clock("read"):
                batch = self._pending.popleft().result()
            following = next(batches, None)
            if following is not None:
                self._pending.append(self._submit(following))
            yield batch

    def cancel(self) -> None:
        """Cancel the batches not started yet (on a failure)."""
        while self._pending:
            self._pending.popleft().cancel()

    def close(self) -> None:
        """Stop the reader threads (after the reads in progress) and close every reader's files."""
        self.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for reader in self._readers:
            reader.close()
        self._readers.clear()


class ModelRun:
    """The run stage: a batch's inputs on the device (copied asynchronously from page-locked memory on a GPU), the
    model under bf16 autocast when ``plan.precision`` is "bf16", and the outputs' validity (an output pixel is valid
    when most of its reference pixels are). The outputs stay on the device, where they are blended."""

    def __init__(self, model: SceneModel, plan: ScenePlan, clock: StageClock) -> None:
        self.model = model
        self.plan = plan
        self.clock = clock
        device = plan.device
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if plan.precision == "bf16" else nullcontext()
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []  # (start, end) of each batch on a GPU

    def __call__(self, batch: ReadBatch) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """(outputs (B, channels, tile / stride, tile / stride) float32, valid (B, tile / stride, tile / stride)
        bool) of the batch's run tiles, on the device; (None, None) when none is run."""
        if not batch.run:
            return None, None
        plan, on_gpu = self.plan, self.plan.on_gpu
        with self.clock("run"):  # on a GPU: launching the work (the device's own time is device_seconds)
            inputs = batch.inputs.to(plan.device, non_blocking=on_gpu)
            valid = batch.valid.to(plan.device, non_blocking=on_gpu)
            if on_gpu:
                events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                events[0].record()
            with torch.inference_mode():
                with self.autocast:
                    outputs = self.model(inputs, plan.tile).float()
                if plan.stride > 1:
                    valid = F.avg_pool2d(valid[:, None].float(), plan.stride)[:, 0] >= 0.5
            if on_gpu:
                events[1].record()
                self._events.append(events)
        return outputs, valid

    def device_seconds(self) -> float | None:
        """The model's time on a GPU, summed over batches (None on a CPU); every batch must have completed."""
        if not self._events:
            return None
        return sum(start.elapsed_time(end) for start, end in self._events) / 1e3


class ChunkRows:
    """The blend and write stages: tiles are accumulated into their chunk, each finished chunk goes to the writer
    thread, and each finished chunk row is recorded in the run state once its file (and its carried strips) are
    durable.

    The state is saved only after a row's file is durable, and the strips of the row above are dropped only after
    the state: a run killed at any point resumes from its last recorded row (:mod:`skysense.inference.resume`).

    Args:
        plan: the run's plan.
        chunks: the chunks still to compute, in the order the tiles come.
        state: the run state (of the resumed run, or a new one).
        scratch: the run's scratch folder.
        background: the writer thread.
        clock: the run's stage clock.
        on_chunk: called with (chunk row, chunk column) after each chunk is finished.
    """

    def __init__(
        self,
        plan: ScenePlan,
        chunks: list[Chunk],
        state: RunState,
        scratch: Path,
        background: BackgroundWriter,
        clock: StageClock,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> None:
        self.plan = plan
        self.chunks = chunks
        self.state = state
        self.scratch = scratch
        self.background = background
        self.clock = clock
        self.on_chunk = on_chunk
        self.n_rows, self.n_cols = plan.layout.chunk_grid
        self.row_spans = plan.row_spans
        self.blender = ChunkedBlender(plan.layout, plan.channels, self._write, scratch=scratch, device=plan.device,
                                      classes=plan.kind == "classes")  # fmt: skip
        for a in range(state.rows_done + 1, self.n_rows):  # strips a killed run saved past its last recorded row
            self.blender.drop_strips(a)
        self.blender.drop_strips(state.rows_done - 1)
        self._current = -1  # index of the chunk being accumulated
        self._tiles_with_input = 0  # tiles with a valid input pixel since the last recorded chunk row
        self._finishing: list[tuple[int, Future, int]] = []  # rows handed to the writer thread: (a, its future, tiles)

    def _write(self, row: int, col: int, values: np.ndarray, valid: np.ndarray) -> None:
        """The blender's output, to the writer thread (waits only when the thread is behind): write time, although
        the blender calls it inside its own."""
        began = time.perf_counter()
        self.background.write(row, col, values, valid)
        self.clock.move(time.perf_counter() - began, "blend", "write")

    def _record(self, wait: bool) -> None:
        """Record the rows whose files are durable, in order (all of them with ``wait``)."""
        while self._finishing and (wait or self._finishing[0][1].done()):
            a, future, with_input = self._finishing.pop(0)
            with self.clock("write"):
                valid_pixels = future.result()
                recorded = replace(
                    self.state,
                    rows_done=a,
                    valid_pixels=self.state.valid_pixels + valid_pixels,
                    tiles_with_input=self.state.tiles_with_input + with_input,
                )
                recorded.save(self.scratch)  # atomic: on a failure the previous state stays
                self.state = recorded
                self.blender.drop_strips(a - 1)

    def _advance_to(self, target: int) -> None:
        """Finish the chunks before chunk ``target`` (writing and recording whole chunk rows) and start it."""
        while self._current < target:
            if self._current >= 0:
                with self.clock("blend"):
                    self.blender.finish_chunk()
                a, b = self.chunks[self._current][:2]
                if b == self.n_cols - 1:  # a whole chunk row: its strips, then its file, durable; then recorded
                    with self.clock("write"):
                        self.blender.sync_strips()
                        self._finishing.append((a, self.background.finish_row(), self._tiles_with_input))
                        self._tiles_with_input = 0
                    self._record(wait=len(self._finishing) > 1)  # at most one row in the writer's hands
                if self.on_chunk is not None:
                    self.on_chunk(a, b)
            self._current += 1
            if self._current < len(self.chunks):
                a, b = self.chunks[self._current][:2]
                if b == 0:
                    self.background.start_row(*self.row_spans[a])
                with self.clock("blend"):
                    self.blender.start_chunk(a, b)

    def add(self, batch: ReadBatch, outputs: torch.Tensor | None, valid: torch.Tensor | None) -> None:
        """Blend a batch's outputs (from :class:`ModelRun`) into their chunks, finishing the chunks before them."""
        self._advance_to(batch.items[0][0])  # a batch never crosses a chunk row: its tiles count in that row
        self._tiles_with_input += batch.with_input
        slot = {position: k for k, position in enumerate(batch.run)}  # tile → its row in ``outputs``
        for position, (index, r, c) in enumerate(batch.items):
            self._advance_to(index)
            if position in slot:
                with torch.inference_mode(), self.clock("blend"):
                    self.blender.add(r, c, outputs[slot[position]], valid[slot[position]])

    def finish(self) -> RunState:
        """Finish every chunk, wait for the writer thread and record every row; the final state."""
        self._advance_to(len(self.chunks))
        self._record(wait=True)
        self.background.drain()
        return self.state

    def salvage(self) -> None:
        """After a failure: record the rows whose files were made durable before it (a row that failed is not
        recorded; the first error is the one raised)."""
        try:
            self._record(wait=True)
        except BaseException:  # noqa: BLE001
            pass

    def close(self) -> None:
        """Stop the blender's strip writer (before the scratch folder may be removed)."""
        self.blender.close()
