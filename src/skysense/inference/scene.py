"""Scene-scale prediction: a model over a GeoTIFF of any size, tile by tile, into a georeferenced output.

    from skysense.inference import SceneSources, load_scene_model, predict_scene
    model = load_scene_model("runs/seg/last.ckpt")                      # a SegmentationTask checkpoint
    predict_scene(model, SceneSources(hr="scene.tif"), "map.tif", tile=512, overlap=128, batch_size=8)

The pipeline (memory is bounded by the tile, batch and chunk sizes, never by the scene):

1. tiles of ``tile`` reference pixels every ``tile - overlap`` pixels, grouped into chunks
   (:class:`~skysense.inference.tiling.TileLayout`); tiles with no valid pixel are skipped;
2. a reader thread reads the next batches (windowed reads; Sentinel series reprojected onto each tile's grid)
   while the model runs on the current one (optionally under bf16 autocast);
3. outputs are blended with weights that fall off towards each tile's border
   (:class:`~skysense.inference.tiling.ChunkedBlender`), so overlapping tiles leave no seam;
4. each finished chunk is written at once (:class:`~skysense.inference.writer.SceneWriter`), and the output is
   published as a COG only when complete.

GDAL's block cache is capped (``gdal_cache_mb``) so that it, too, does not grow with the scene.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import rasterio
import torch
import torch.nn.functional as F

from skysense.batch import SkySenseInput
from skysense.inference.models import SceneModel
from skysense.inference.sources import SceneSources, TileReader, stack_inputs
from skysense.inference.tiling import ChunkedBlender, TileLayout
from skysense.inference.writer import SceneWriter, output_grid


@dataclass
class SceneReport:
    """What a scene prediction did.

    Attributes:
        output: the written file.
        tiles: tiles in the layout; skipped: those with no valid pixel (not run).
        seconds: wall-clock time; megapixels: reference-grid pixels of the scene.
        resolution: output pixel size (x, y) in CRS units.
    """

    output: Path
    tiles: int
    skipped: int
    seconds: float
    megapixels: float
    resolution: tuple[float, float]

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.seconds if self.seconds else math.nan


def scene_alignment(model: SceneModel, sources: SceneSources) -> tuple[int, int]:
    """(origin, size) alignment in reference pixels: tile origins must be multiples of the first (the output
    stride, and the Sentinel ViT's patch of 4 Sentinel pixels when Sentinel inputs are read, so that every tile
    keeps the co-registration), tile sizes and overlaps of the second (also the HR encoder's stride, 32)."""
    origin = [model.output_stride]
    if any(m in model.modalities and getattr(sources, m) is not None for m in ("s2", "s1")):
        origin.append(4 * sources.sentinel_scale)
    size = list(origin)
    if "hr" in model.modalities and sources.hr is not None:
        size.append(32)
    return math.lcm(*origin), math.lcm(*size)


def _default_chunk(channels: int, tile_out: int, block: int, budget_mb: float = 96.0) -> int:
    """Chunk side (output pixels) whose accumulator ((chunk + tile)² × (channels + 2) float32) stays near the
    budget; a multiple of the output block size, at least the tile."""
    side = int(math.sqrt(budget_mb * 2**20 / (4 * (channels + 2)))) - tile_out
    side = max(side // block * block, block)
    while side < tile_out:
        side += block
    return side


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _input_files(sources: SceneSources) -> list[Path]:
    files = [sources.hr] if sources.hr is not None else []
    for series in (sources.s2, sources.s1):
        if series is not None:
            files += series.files
    return files


def _state_file(scratch: Path) -> Path:
    """Where a run records its settings and last finished chunk row (read by ``resume``)."""
    return scratch / "state.json"


def _resume_point(scratch: Path, fingerprint: dict) -> int:
    """The last chunk row an interrupted run of the same command finished, or -1 (nothing to resume)."""
    state_file = _state_file(scratch)
    if not state_file.exists():
        return -1
    state = json.loads(state_file.read_text())
    rows_done = state.pop("rows_done", -1)
    if state != fingerprint:
        raise ValueError(
            f"{state_file} belongs to a run with other settings or inputs; remove it or run without resume"
        )
    return int(rows_done)


def _submit(executor: ThreadPoolExecutor | None, fn: Callable, *args: object) -> Future:
    """``executor.submit``, or a call made now when there is no executor (the result wrapped in a done future)."""
    if executor is not None:
        return executor.submit(fn, *args)
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as err:  # re-raised by .result(), like a thread's
        future.set_exception(err)
    return future


def predict_scene(
    model: SceneModel,
    sources: SceneSources,
    output: str | Path,
    *,
    tile: int = 512,
    overlap: int = 128,
    batch_size: int = 4,
    output_kind: str | None = None,
    chunk: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "32",
    compress: str = "deflate",
    block: int = 512,
    prefetch: int = 2,
    workers: int = 1,
    gdal_cache_mb: int = 64,
    progress: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
    resume: bool = False,
) -> SceneReport:
    """Run ``model`` over a whole scene and write a georeferenced raster.

    Args:
        model: from :func:`~skysense.inference.models.load_scene_model`.
        sources: the scene's inputs; inputs the model does not read are ignored (an HR image, if the model reads
            none, does not define the grid either).
        output: the output GeoTIFF (a COG).
        tile: tile side in reference pixels (HR pixels, or Sentinel pixels without HR); a multiple of the size
            alignment (:func:`scene_alignment`: 32 for HR models, 128 with Sentinel inputs on an HR grid).
        overlap: pixels shared by neighbouring tiles (blended); at most half the tile, a multiple of the origin
            alignment. The model's own border effects (zero padding in the head) reach tens of pixels into a tile;
            the blend weighs them down, and an overlap of half the tile (4× the tiles) hides them entirely.
        batch_size: tiles per forward.
        output_kind: "classes" (uint8 class map) or "probabilities" for a segmentation model; "embedding" for an
            embedding model (the default follows the model).
        chunk: chunk side in output pixels (default: sized for about 100 MB of accumulator).
        device: torch device; precision: "32" or "bf16" (autocast).
        compress: GeoTIFF compression; block: internal tile size of the output.
        prefetch: batches read ahead (at least ``workers``).
        workers: reader threads, each with its own open files (more when a GPU waits for the CPU); 0 reads in the
            calling thread, between forwards (on a CPU with few cores, where a reader thread slows the model's own
            threads more than it saves).
        gdal_cache_mb: GDAL block-cache cap during the run.
        progress: show a progress bar (tiles/s).
        on_chunk: called with (chunk row, chunk column) after each chunk is written (for progress or tests).
        resume: continue an interrupted run of the same command from its last finished chunk row (the partial
            output and ``<output>.partial.d/`` — carried strips and state — are kept when a run fails). Without it,
            a rerun starts over.

    Returns:
        :class:`SceneReport`.

    Raises:
        ValueError: inputs the model needs are missing, a tile/overlap off the model's lattice, bad units.
    """
    output = Path(output)
    kind = output_kind or model.kind
    allowed = ("classes", "probabilities") if model.kind == "classes" else ("embedding",)
    if kind not in allowed:
        raise ValueError(f"a {model.kind} model writes {allowed}, not {kind!r}")
    keep = {name: getattr(sources, name) if name in model.modalities else None for name in ("hr", "s2", "s1")}
    if not any(keep.values()):
        raise ValueError(f"the model reads {model.modalities}, the scene gives {sources.modalities}")
    if model.source == "hr" and keep["hr"] is None:
        raise ValueError("this model reads the HR image: give --hr")
    sources = replace(sources, **keep)
    modalities = sources.modalities
    origin_align, size_align = scene_alignment(model, sources)
    if tile % size_align or overlap % origin_align or overlap < 0 or 2 * overlap > tile:
        raise ValueError(
            f"tile {tile} must be a multiple of {size_align} and overlap {overlap} of {origin_align} (the model's "
            f"lattice for {modalities}), with 0 <= overlap <= tile / 2"
        )
    stride = model.output_stride
    grid = sources.grid
    out_grid = output_grid(grid, stride)
    tile_out, overlap_out = tile // stride, overlap // stride
    if chunk is None:
        chunk = _default_chunk(model.channels, tile_out, block)
    layout = TileLayout(
        out_grid.height, out_grid.width, tile_out, tile_out - overlap_out, chunk, origin_align // stride
    )
    resolution = (abs(out_grid.transform.a), abs(out_grid.transform.e))
    tags = {
        "SKYSENSE_MODEL": model.description,
        "SKYSENSE_INPUTS": ",".join(modalities),
        "SKYSENSE_RESOLUTION": f"{resolution[0]:g} x {resolution[1]:g} (CRS units per pixel)",
        "SKYSENSE_TILING": f"{tile} px, overlap {overlap} px, blended",
    }
    if model.class_names:
        tags["SKYSENSE_CLASSES"] = ",".join(model.class_names)
    if precision not in ("32", "bf16"):
        raise ValueError(f"precision must be '32' or 'bf16', got {precision!r}")
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    model.network.to(device)

    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb * 2**20):
        TileReader(sources, modalities, model.hr_channels).close()  # refuse bad inputs before the first tile
        local, readers, lock = threading.local(), [], threading.Lock()

        def reader() -> TileReader:  # one per reader thread: open dataset handles are not shared across threads
            if not hasattr(local, "reader"):
                local.reader = TileReader(sources, modalities, model.hr_channels, check_scene=False)
                with lock:
                    readers.append(local.reader)
            return local.reader

        scratch = output.with_name(output.name + ".partial.d")
        fingerprint = json.loads(json.dumps({
            "model": model.description, "kind": kind, "tile": tile, "overlap": overlap, "chunk": chunk,
            "block": block, "compress": compress, "grid": [out_grid.height, out_grid.width, list(out_grid.transform)],
            "inputs": [str(p) for p in _input_files(sources)],
        }))  # fmt: skip
        rows_done = _resume_point(scratch, fingerprint) if resume else -1
        if rows_done < 0:
            shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True, exist_ok=True)
        writer = SceneWriter(output, out_grid, kind, model.channels, model.class_names, tags, compress, block,
                             append=rows_done >= 0)  # fmt: skip
        blender = ChunkedBlender(layout, model.channels, writer.write, scratch=scratch, device=device)
        last_column = layout.chunk_grid[1] - 1
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skysense-read") if workers else None
        prefetch = max(prefetch, workers)
        bar = None
        skipped = 0
        try:
            chunks = [chunk_tiles for chunk_tiles in layout.chunks() if chunk_tiles[0] > rows_done]
            flat = [(index, r, c) for index, (_, _, tiles) in enumerate(chunks) for r, c in tiles]

            def read_batch(items: list[tuple[int, int, int]]) -> tuple[list, list, list[int], SkySenseInput | None]:
                read = [reader().read(r * stride, c * stride, tile) for _, r, c in items]
                run = [i for i, (_, valid) in enumerate(read) if valid.any()]  # tiles with no valid pixel: not run
                stacked = stack_inputs([read[i][0] for i in run]) if run else None  # here, off the model's thread
                return items, read, run, stacked

            pending: list[Future] = []
            batches = _batches(flat, batch_size)
            for items in batches:
                pending.append(_submit(executor, read_batch, items))
                if len(pending) > prefetch:
                    break
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(flat), unit="tile", desc=f"{output.name}", smoothing=0.1)
            current = -1

            def advance_to(target: int) -> None:
                nonlocal current
                while current < target:
                    if current >= 0:
                        blender.finish_chunk()
                        a, b = chunks[current][:2]
                        if b == last_column:  # a whole chunk row is written and its strips are on disk
                            _state_file(scratch).write_text(json.dumps({**fingerprint, "rows_done": a}))
                        if on_chunk is not None:
                            on_chunk(a, b)
                    current += 1
                    if current < len(chunks):
                        blender.start_chunk(*chunks[current][:2])

            while pending:
                items, read, run, stacked = pending.pop(0).result()
                nxt = next(batches, None)
                if nxt is not None:
                    pending.append(_submit(executor, read_batch, nxt))
                skipped += len(items) - len(run)
                outputs = None
                if run:
                    inputs = stacked.to(device)
                    with torch.inference_mode(), autocast:
                        outputs = model(inputs, tile).float()  # stays on the device: blended there
                slot = {position: k for k, position in enumerate(run)}  # tile → its row in ``outputs``
                for position, (index, r, c) in enumerate(items):
                    advance_to(index)
                    if position in slot:
                        values = outputs[slot[position]]
                        valid = torch.from_numpy(read[position][1])
                        if stride > 1:  # an output pixel is valid when most of its reference pixels are
                            valid = F.avg_pool2d(valid[None].float(), stride)[0] >= 0.5
                        with torch.inference_mode():
                            blender.add(r, c, values, valid)
                if bar is not None:
                    bar.update(len(items))
                    bar.set_postfix(skipped=skipped, refresh=False)
            advance_to(len(chunks))
        except BaseException:
            for future in pending:
                future.cancel()
            writer.abort()
            raise
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
            if bar is not None:
                bar.close()
            blender.close()
            for open_reader in readers:
                open_reader.close()
        writer.finish()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - start
    return SceneReport(output, layout.num_tiles, skipped, seconds, grid.height * grid.width / 1e6, resolution)
