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

GDAL's block cache holds two block rows of every input file (:func:`block_cache_mb`), so that each block is decoded
once however many tiles read it; it grows with the scene's width, never with its height.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from skysense.batch import SkySenseInput
from skysense.data.raster import raster_info
from skysense.data.sensors import get_sensor
from skysense.errors import InputError, OutputError, UsageError
from skysense.inference.models import SceneModel
from skysense.inference.resume import RunState, fingerprint_changes, fingerprint_files
from skysense.inference.sources import SceneSources, TileReader, stack_inputs
from skysense.inference.tiling import ChunkedBlender, TileLayout
from skysense.inference.writer import (
    OVERVIEW_BANDS,
    BackgroundWriter,
    SceneWriter,
    check_compress,
    check_dtype,
    output_grid,
    row_block,
    row_file,
    scratch_path,
)
from skysense.inference.zarr_store import check_zarr_output, is_zarr


@dataclass
class SceneReport:
    """What a scene prediction did.

    Attributes:
        output: the written file.
        tiles: tiles in the layout; skipped: those with no valid pixel (not run).
        seconds: wall-clock time; megapixels: reference-grid pixels of the scene.
        resolution: output pixel size (x, y) in CRS units.
        stages: seconds per stage of the pipeline, so that the slowest is visible: "prepare" (checks, fingerprints,
            opening the inputs), "read" (the model's thread waiting for tiles the reader threads had not read yet),
            "run" (the model; on a GPU only launching it, which runs asynchronously), "blend" (accumulating tiles,
            emitting chunks: on a GPU this waits for the model), "write" (row files and the run state), "publish" (the
            final checks and the Cloud-Optimized GeoTIFF). Their sum is about :attr:`seconds`. On a GPU also "run on
            device": the model's time on the device (CUDA events), which overlaps the stages above.
    """

    output: Path
    tiles: int
    skipped: int
    seconds: float
    megapixels: float
    resolution: tuple[float, float]
    stages: dict[str, float] = field(default_factory=dict)

    def stages_line(self) -> str:
        """ "read 0.4 s, run 13.3 s (79 %), …": each stage's seconds and share of the wall-clock time."""
        return ", ".join(
            f"{name} {seconds:.1f} s ({seconds / self.seconds:.0%})" for name, seconds in self.stages.items()
        )

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.seconds if self.seconds else math.nan


SENTINEL_TILE = 128  # default tile side on a Sentinel grid (no HR image): 32 × 32 tokens per frame


def check_free_space(output: Path, pixels_left: int, channels: int, kind: str, dtype: str) -> None:
    """Refuse, before any tile runs, a scene whose uncompressed scratch rows cannot fit on the output's disk.

    Outputs of more than :data:`~skysense.inference.writer.OVERVIEW_BANDS` bands (embeddings) keep their rows
    uncompressed until the publish, so ``pixels_left × channels × value size`` must be free, and then some for the
    compressed output: a run that started without it would fail hours later, at the row that fills the disk. Rows
    of class maps and narrow outputs are compressed, and their size is not known before they are written.

    Raises:
        OutputError: naming the output, the space needed and free, and what to do.
    """
    if kind == "classes" or channels <= OVERVIEW_BANDS:
        return
    need = pixels_left * channels * (2 if dtype == "float16" else 4)
    folder = next(p for p in [output.parent, *output.parent.parents] if p.exists())
    free = shutil.disk_usage(folder).free
    if free < need:
        half = "" if dtype == "float16" else "give --dtype float16 (half the size), "
        raise OutputError(
            f"{output}: the {channels}-band rows still to write take {need / 2**30:.2f} GiB uncompressed until the "
            f"output is published, and {free / 2**30:.2f} GiB are free on that disk; free space, {half}or write the "
            "output to a larger disk"
        )


def scene_alignment(model: SceneModel, sources: SceneSources) -> tuple[int, int]:
    """(origin, size) alignment in reference pixels: tile origins must be multiples of the first (the output
    stride, and the Sentinel ViT's patch of 4 Sentinel pixels when Sentinel inputs are read, so that every tile
    keeps the co-registration), tile sizes and overlaps of the second (also the HR encoder's
    :attr:`SceneModel.hr_multiple`: its stride, and ``hr_ratio`` when it fuses)."""
    origin = [model.output_stride]
    if any(m in model.modalities and getattr(sources, m) is not None for m in ("s2", "s1")):
        origin.append(4 * sources.sentinel_scale)
    size = list(origin)
    if "hr" in model.modalities and sources.hr is not None:
        size.append(model.hr_multiple)
    return math.lcm(*origin), math.lcm(*size)


def _default_chunk(channels: int, tile_out: int, block: int, budget_mb: float = 96.0) -> int:
    """Chunk side (output pixels) whose accumulator ((chunk + tile)² × (channels + 2) float32) stays near the
    budget; a multiple of the output block size, at least the tile."""
    side = int(math.sqrt(budget_mb * 2**20 / (4 * (channels + 2)))) - tile_out
    side = max(side // block * block, block)
    while side < tile_out:
        side += block
    return side


def _batches(items: list, size: int, group: Callable[[object], object]) -> Iterator[list]:
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


REGION_MB = 256  # memory of one region's Sentinel series (see _tile_rows_per_region)


def _tile_rows_per_region(
    sources: SceneSources, modalities: list[str], width: int, stride: int, budget_mb: float = REGION_MB
) -> int:
    """How many rows of a chunk's tiles one Sentinel read covers (a region, :meth:`TileReader.read`).

    Each region read pays per-window costs (a SAFE scene's 13 JPEG 2000 windows and 6 resamplings per product, the
    frames' checks), so regions are as tall as a chunk when the series fit ``budget_mb``: a 1932² scene of 3 SAFE
    products read 81 regions of one tile row each, 3,402 band windows. Estimated per row of tiles from the layout
    alone (so a resumed run reads the same regions): ``stride`` reference pixels high, ``width`` wide, every date's
    every band in float32, and twice that again for the reads and masks it is assembled from. A year of Sentinel-2
    dates stays at one row of tiles per region."""
    row_bytes = 0
    for name in ("s2", "s1"):
        source = getattr(sources, name)
        if name in modalities and source is not None:
            pixels = math.ceil(stride / sources.sentinel_scale) * math.ceil(width / sources.sentinel_scale)
            row_bytes += 3 * 4 * pixels * len(get_sensor(source.sensor).bands) * len(source.files)
    return max(1, int(budget_mb * 2**20 // row_bytes)) if row_bytes else 1


def input_files(sources: SceneSources) -> dict[str, list[Path]]:
    """The files on disk each input reads ({"hr": [...], "s2": [...], "s1": [...]}: products' files included)."""
    files = {"hr": [sources.hr]} if sources.hr is not None else {}
    for name in ("s2", "s1"):
        series = getattr(sources, name)
        if series is not None:
            files[name] = series.paths
    return files


def input_rasters(sources: SceneSources) -> list[str | Path]:
    """Every raster the scene's inputs read (GDAL paths: a zipped product's bands are ``/vsizip/`` paths)."""
    rasters: list[str | Path] = [sources.hr] if sources.hr is not None else []
    for name in ("s2", "s1"):
        series = getattr(sources, name)
        if series is not None:
            rasters += series.rasters
    return rasters


MIN_CACHE_MB = 64


def block_cache_mb(rasters: list[str | Path], max_fraction: float = 0.25) -> int:
    """GDAL block cache (MB) that holds two rows of blocks of every raster: at least :data:`MIN_CACHE_MB`, at most
    ``max_fraction`` of the machine's memory.

    Tiles advance row by row, and a tile row reads the same row of blocks of every file, or two where it crosses a
    block boundary. If those blocks do not fit the cache, every tile decodes them again: a Sentinel-2 product's JPEG
    2000 bands come in 1024² blocks, and a 1932² S2 L1C scene of 3 SAFE products read 411 ms per 128² tile under
    GDAL's 64 MB against 150 ms under 512 MB (the model takes about 400 ms per tile on 2 cores). The cache grows with
    the scene's width (two block rows of a full 10980² S2 tile: about 340 MB per date), not with its height.
    """
    total = 0
    for path in rasters:
        info = raster_info(path)
        block_rows = min(max(info.block_shape[0], 1), info.height)
        itemsize = max(np.dtype(dtype).itemsize for dtype in info.dtypes)
        total += 2 * block_rows * info.width * info.count * itemsize
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(max(MIN_CACHE_MB, 1.25 * total / 2**20 + MIN_CACHE_MB), max_fraction * memory / 2**20))


def check_output_path(output: str | Path, inputs: dict[str, list[Path]]) -> Path:
    """Refuse an output that is one of the inputs (symlinks and hard links resolved), an existing folder (unless a
    ``.zarr`` output replaces a Zarr store), or a Zarr output without its libraries.

    Raises:
        UsageError: naming both paths.
    """
    output = Path(output)
    if is_zarr(output):
        check_zarr_output(output)
    elif output.is_dir():
        raise UsageError(f"--output {output}: is a folder; give a file name such as {output / 'map.tif'}")
    resolved = output.resolve()
    for role, paths in inputs.items():
        for path in paths:
            path = Path(path)
            same = resolved == path.resolve()
            if not same and output.exists() and path.exists():
                same = os.path.samefile(output, path)
            if same:
                flag = "--checkpoint" if role == "checkpoint" else f"--{role}"
                raise UsageError(
                    f"--output {output} is the input {flag} {path} (both resolve to {resolved}); writing the map "
                    "would destroy the input: choose another output file"
                )
    return output


def check_scene_options(
    *, tile: int, overlap: int, batch_size: int, chunk: int | None, workers: int, prefetch: int, block: int
) -> None:
    """Refuse option values that are out of range, each with one line saying the allowed range.

    Raises:
        UsageError: naming the option.
    """
    checks = [
        ("--batch-size", batch_size, 1), ("--tile", tile, 1), ("--overlap", overlap, 0), ("--workers", workers, 0),
        ("prefetch", prefetch, 1), ("block", block, 16),
    ]  # fmt: skip
    if chunk is not None:
        checks.append(("--chunk", chunk, 1))
    for name, value, minimum in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UsageError(f"{name}: {value!r} is out of range; give an integer >= {minimum}")
    if block % 16:
        raise UsageError(f"block: {block} is not a multiple of 16 (GeoTIFF tiles); give e.g. 256 or 512")
    if overlap >= tile:
        raise UsageError(f"--overlap {overlap} must be smaller than --tile {tile} (at most half of it)")


def _fit_tile_to_scene(tile: int, overlap: int, length: int, size_align: int, origin_align: int) -> tuple[int, int]:
    """A scene shorter than the tile gets one tile per axis, shrunk to the scene rounded up to the lattice (and the
    overlap shrunk with it, to at most half the tile), instead of a tile that is mostly outside the scene."""
    if length >= tile:
        return tile, overlap
    fitted = max(size_align, math.ceil(length / size_align) * size_align)
    overlap = min(overlap, fitted // 2 // origin_align * origin_align)
    return fitted, overlap


def _called_now(fn: Callable, *args: object) -> Future:
    """``fn(*args)`` called now, its result (or error) in a done future, as a reader thread's would be."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as err:  # re-raised by .result(), like a thread's
        future.set_exception(err)
    return future


def _add_note(err: BaseException, note: str) -> None:
    """``err.add_note`` (Python 3.11+), also on 3.10: the CLI prints notes after the message."""
    err.__notes__ = [*getattr(err, "__notes__", []), note]


def predict_scene(
    model: SceneModel,
    sources: SceneSources,
    output: str | Path,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
    output_kind: str | None = None,
    chunk: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "32",
    compress: str = "auto",
    block: int = 512,
    prefetch: int = 2,
    workers: int | None = None,
    gdal_cache_mb: int | None = None,
    progress: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
    resume: bool = False,
    checkpoint: str | Path | None = None,
    allow_ungeoreferenced: bool = False,
    dtype: str = "float32",
) -> SceneReport:
    """Run ``model`` over a whole scene and write a georeferenced raster.

    Args:
        model: from :func:`~skysense.inference.models.load_scene_model`.
        sources: the scene's inputs; inputs the model does not read are ignored (an HR image, if the model reads
            none, does not define the grid either).
        output: the output GeoTIFF (a COG); never one of the inputs.
        tile: tile side in reference pixels (HR pixels, or Sentinel pixels without HR); default 512 when the HR
            image is read, :data:`SENTINEL_TILE` (128) on a Sentinel grid, where a ViT of patch 4 on 512² would
            attend over 16,384 tokens per frame (16× the cost per pixel of 128²); a multiple of the size
            alignment (:func:`scene_alignment`: the HR encoder's stride, 32, or 16 for the cpu preset without the
            fusion; 128 with Sentinel inputs on an HR grid). A scene smaller than the tile gets one tile shrunk to
            the scene (rounded up to the alignment).
        overlap: pixels shared by neighbouring tiles (blended; default a quarter of the default tile); at most half
            the tile, a multiple of the origin
            alignment. The model's own border effects (zero padding in the head) reach tens of pixels into a tile;
            the blend weighs them down, and an overlap of half the tile (4× the tiles) hides them entirely.
        batch_size: tiles per forward (batches never cross a chunk row, so a resumed run computes the same bits).
        output_kind: "classes" (uint8 class map) or "probabilities" for a segmentation model; "embedding" for an
            embedding model (the default follows the model).
        chunk: chunk side in output pixels, at least the tile in output pixels and a multiple of 16 (default: sized
            for about 100 MB of accumulator).
        device: torch device; precision: "32" or "bf16" (autocast).
        compress: GeoTIFF compression ("deflate", "zstd", "lzw", "none", ...); "auto": DEFLATE for class maps (one
            byte per pixel: small either way, and readable by every GeoTIFF reader), ZSTD for probabilities and
            embeddings, whose float bands it compresses as small as DEFLATE in less than half the time (512² × 128
            float32 bands: 87 MiB either way, 0.38 s against 0.93 s), with GDAL ≥ 2.3 (QGIS, rasterio, xarray).
        block: internal tile size of the output.
        prefetch: batches read ahead (at least ``workers``).
        workers: reader threads, each with its own open files (more when a GPU waits for the CPU); 0 reads in the
            calling thread, between forwards. Default: 1 on a GPU, 0 on a CPU, where the model's threads already
            use every core and a reader thread only preempts them (a 512² S2 scene on 2 cores: 12 % slower
            forwards with one reader thread, 5 % without).
        gdal_cache_mb: GDAL block-cache cap during the run (default :func:`block_cache_mb` of the inputs).
        progress: show a progress bar (tiles/s).
        on_chunk: called with (chunk row, chunk column) after each chunk is written (for progress or tests).
        resume: continue an interrupted run of the same command from its last finished chunk row. The run keeps
            its finished rows, carried strips and state in ``<output>.partial.d/`` when it fails after finishing
            at least one chunk row (and removes it otherwise); a resume whose settings, inputs or checkpoint no
            longer match (by content, see :mod:`skysense.inference.resume`) is refused. Without it, a rerun starts
            over.
        checkpoint: the file the model was loaded from, fingerprinted for ``resume`` (default: the model's weights
            are hashed instead).
        dtype: "float32", or "float16" for probabilities and embeddings (half the size; see
            :class:`~skysense.inference.writer.SceneWriter`).
        allow_ungeoreferenced: accept a reference image without a CRS (pixel coordinates; the output's tags say
            so); refused by default, since the map could not be placed on Earth.

    Returns:
        :class:`SceneReport`.

    Raises:
        UsageError: bad options (tile/overlap off the model's lattice, out-of-range values, an output that is an
            input, a resume that does not match).
        ValueError: inputs the model needs are missing, bad units, an output without any valid pixel.
    """
    output = Path(output)
    reads_hr = "hr" in model.modalities and sources.hr is not None
    default_tile = 512 if reads_hr else SENTINEL_TILE
    if overlap is None:  # a quarter of the default tile, or of a smaller tile given
        overlap = min(default_tile, tile if tile is not None else default_tile) // 4
    tile = tile if tile is not None else default_tile
    if workers is None:
        workers = 0 if torch.device(device).type == "cpu" else 1
    check_scene_options(tile=tile, overlap=overlap, batch_size=batch_size, chunk=chunk, workers=workers,
                        prefetch=prefetch, block=block)  # fmt: skip
    kind = output_kind or model.kind
    allowed = ("classes", "probabilities") if model.kind == "classes" else ("embedding",)
    if kind not in allowed:
        raise UsageError(f"a {model.kind} model writes {allowed}, not {kind!r}")
    if precision not in ("32", "bf16"):
        raise UsageError(f"--precision: must be '32' or 'bf16', got {precision!r}")
    check_dtype(dtype, kind)
    if compress == "auto":
        compress = "deflate" if kind == "classes" else "zstd"
    check_compress(compress)
    keep = {name: getattr(sources, name) if name in model.modalities else None for name in ("hr", "s2", "s1")}
    if not any(keep.values()):
        raise UsageError(f"the model reads {model.modalities}, the scene gives {sources.modalities}")
    if model.source == "hr" and keep["hr"] is None:
        raise UsageError("this model reads the HR image: give --hr")
    inputs = input_files(replace(sources, **keep))
    if checkpoint:
        inputs["checkpoint"] = [Path(checkpoint)]
    check_output_path(output, inputs)
    sources = replace(sources, **keep)
    modalities = sources.modalities
    grid = sources.grid
    if grid.crs is None and not allow_ungeoreferenced:
        raise InputError(
            f"{sources.reference_file}: has no georeferencing (no CRS), so the map could not be placed on Earth; "
            "georeference it first (e.g. `gdal_translate -a_srs EPSG:32633 -a_ullr ...`) or pass "
            "--allow-ungeoreferenced for a map in pixel coordinates"
        )
    origin_align, size_align = scene_alignment(model, sources)
    if tile % size_align or overlap % origin_align or 2 * overlap > tile:
        raise UsageError(
            f"--tile {tile} must be a multiple of {size_align} and --overlap {overlap} a multiple of {origin_align} "
            f"(the model's lattice for {modalities}), with 0 <= overlap <= tile / 2"
        )
    tile, overlap = _fit_tile_to_scene(tile, overlap, max(grid.height, grid.width), size_align, origin_align)
    stride = model.output_stride
    out_grid = output_grid(grid, stride)
    tile_out, overlap_out = tile // stride, overlap // stride
    if chunk is None:
        chunk = _default_chunk(model.channels, tile_out, block)
    elif chunk < tile_out:
        raise UsageError(
            f"--chunk {chunk} must be at least the tile in output pixels ({tile_out} = --tile {tile} / output "
            f"stride {stride})"
        )
    row_block(chunk, block)  # refuses a chunk the row files' tiles cannot divide
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
    if grid.crs is None:
        tags["SKYSENSE_GEOREFERENCED"] = "no: pixel coordinates of the input (--allow-ungeoreferenced)"
    if model.class_names:
        tags["SKYSENSE_CLASSES"] = ",".join(model.class_names)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    start = time.perf_counter()
    stages = dict.fromkeys(("prepare", "read", "run", "blend", "write", "publish"), 0.0)

    @contextmanager
    def timed(stage: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            stages[stage] += time.perf_counter() - began

    def timed_write(row: int, col: int, values, valid) -> None:  # called by the blender inside its own timing
        began = time.perf_counter()
        background.write(row, col, values, valid)  # waits only when the writer thread is behind
        spent = time.perf_counter() - began
        stages["write"] += spent
        stages["blend"] -= spent

    if gdal_cache_mb is None:
        gdal_cache_mb = block_cache_mb(input_rasters(replace(sources, **keep)))
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb * 2**20):
        first = TileReader(sources, modalities, model.hr_channels)  # refuse bad inputs before the first tile
        try:  # until the run's own clean-up takes over, ``first`` is closed here on a failure (a refused resume)
            if workers:  # reader threads open their own files; without them, this thread reads on with ``first``,
                first.close()  # whose block cache still holds the blocks its checks decoded
            if "hr" in modalities:
                tags["SKYSENSE_HR_BANDS"] = ",".join(map(str, first.hr_bands))
            settings = json.loads(json.dumps({
                "model": model.description, "kind": kind, "tile": tile, "overlap": overlap, "chunk": chunk,
                "block": block, "compress": compress, "batch_size": batch_size, "precision": precision, "dtype": dtype,
                "grid": [out_grid.height, out_grid.width, list(out_grid.transform), str(out_grid.crs)],
                "weights": None if checkpoint else _weights_digest(model),
            }))  # fmt: skip
            fingerprints = fingerprint_files(inputs)
            scratch = scratch_path(output)
            state = _resume_state(scratch, settings, fingerprints) if resume else None
            if state is None:
                shutil.rmtree(scratch, ignore_errors=True)
                state = RunState(settings, fingerprints)
            rows_left = max(out_grid.height - (state.rows_done + 1) * chunk, 0)
            check_free_space(output, out_grid.width * rows_left, model.channels, kind, dtype)
            model.network.to(device)
            n_rows, n_cols = layout.chunk_grid
            row_spans = [(a, a * chunk, min(chunk, out_grid.height - a * chunk)) for a in range(n_rows)]
            prefetch = max(prefetch, workers) if workers else 0  # reading in this thread: one batch at a time
            on_gpu = torch.device(device).type == "cuda"
            device_runs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []  # CUDA events around each forward
            local, readers, lock = threading.local(), [], threading.Lock()
            if not workers:
                local.reader = first
                readers.append(first)
        except BaseException:
            first.close()
            raise

        def reader() -> TileReader:  # one per reader thread: open dataset handles are not shared across threads
            if not hasattr(local, "reader"):
                local.reader = TileReader(sources, modalities, model.hr_channels, check_scene=False)
                with lock:
                    readers.append(local.reader)
            return local.reader

        bar = None
        skipped = 0
        discard = False  # a failure after which a resume is impossible: remove the scratch folder in any case
        pending: list[Future] = []
        writer: SceneWriter | None = None
        background: BackgroundWriter | None = None
        finishing: list[tuple[int, Future, int]] = []  # rows handed to the writer thread: (a, its future, tiles)
        blender: ChunkedBlender | None = None
        executor: ThreadPoolExecutor | None = None

        def record(wait: bool) -> None:
            """Record the rows whose files are durable, in order (all of them with ``wait``): the state is
            saved only after a row's file, and the strips of the row above are dropped only after the state."""
            nonlocal state
            while finishing and (wait or finishing[0][1].done()):
                a, future, with_input = finishing.pop(0)
                with timed("write"):
                    valid_pixels = future.result()
                    recorded = replace(
                        state,
                        rows_done=a,
                        valid_pixels=state.valid_pixels + valid_pixels,
                        tiles_with_input=state.tiles_with_input + with_input,
                    )
                    recorded.save(scratch)  # atomic: on a failure the previous state stays, and is reported
                    state = recorded
                    blender.drop_strips(a - 1)

        try:
            scratch.mkdir(parents=True, exist_ok=True)
            writer = SceneWriter(output, out_grid, kind, model.channels, scratch, model.class_names, tags, compress,
                                 block, dtype, chunk)  # fmt: skip
            if progress:  # what will be written, before writing it
                count = 1 if kind == "classes" else model.channels
                print(f"{output}: {out_grid.width}×{out_grid.height} px × {count} band{'s' * (count > 1)} "
                      f"{'uint8' if kind == 'classes' else dtype}, {writer.uncompressed_bytes / 2**30:.2f} GiB before "
                      "compression", file=sys.stderr, flush=True)  # fmt: skip
            background = BackgroundWriter(writer)
            blender = ChunkedBlender(layout, model.channels, timed_write, scratch=scratch, device=device)
            for a in range(state.rows_done + 1, n_rows):  # strips a killed run saved past its last recorded row
                blender.drop_strips(a)
            blender.drop_strips(state.rows_done - 1)
            if workers:
                executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skysense-read")
            chunks = [chunk_tiles for chunk_tiles in layout.chunks() if chunk_tiles[0] > state.rows_done]
            flat = [(index, r, c) for index, (_, _, tiles) in enumerate(chunks) for r, c in tiles]
            # a few rows of tiles of a chunk are one region for the Sentinel reads (see TileReader.read): (row, col,
            # height, width) in reference pixels, from the layout alone, so that a resumed run reads the same ones
            per_region = _tile_rows_per_region(sources, modalities, (chunk + tile_out) * stride, tile - overlap)
            tile_rows: dict[int, list[int]] = {}
            for index, r, _ in flat:
                if r not in tile_rows.setdefault(index, []):
                    tile_rows[index].append(r)
            group = {(index, r): i // per_region for index, rows in tile_rows.items() for i, r in enumerate(rows)}
            spans: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
            for index, r, c in flat:
                rows, cols = spans.setdefault((index, group[index, r]), ([], []))
                rows.append(r)
                cols.append(c)
            boxes = {key: (min(rs) * stride, min(cs) * stride, (max(rs) - min(rs)) * stride + tile,
                           (max(cs) - min(cs)) * stride + tile) for key, (rs, cs) in spans.items()}  # fmt: skip
            regions = {(index, r): boxes[index, g] for (index, r), g in group.items()}  # each tile row's region

            def read_batch(
                items: list[tuple[int, int, int]],
            ) -> tuple[list, list[int], SkySenseInput | None, torch.Tensor | None, int]:
                read, with_input = [], 0
                for index, r, c in items:
                    read.append(reader().read(r * stride, c * stride, tile, regions[index, r]))
                    with_input += reader().input_valid
                run = [i for i, (_, valid) in enumerate(read) if valid.any()]  # tiles with no valid pixel: not run
                if not run:
                    return items, run, None, None, with_input
                # stacked here, off the model's thread, and page-locked for a GPU's asynchronous copy
                stacked = stack_inputs([read[i][0] for i in run])
                valid = torch.from_numpy(np.stack([read[i][1] for i in run]))  # (B, tile, tile) bool
                if on_gpu:
                    stacked, valid = stacked.pin_memory(), valid.pin_memory()
                return items, run, stacked, valid, with_input

            batches = _batches(flat, batch_size, lambda item: chunks[item[0]][0])

            def submit(items: list[tuple[int, int, int]]) -> Future:
                if executor is not None:
                    return executor.submit(read_batch, items)
                with timed("read"):  # read now, in this thread
                    return _called_now(read_batch, items)

            stages["prepare"] = time.perf_counter() - start
            for items in batches:
                pending.append(submit(items))
                if len(pending) > prefetch:
                    break
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(flat), unit="tile", desc=f"{output.name}", smoothing=0.1)
            current = -1
            tiles_with_input = 0  # tiles with some valid input pixel since the last recorded chunk row

            def advance_to(target: int) -> None:
                nonlocal current, tiles_with_input
                while current < target:
                    if current >= 0:
                        with timed("blend"):
                            blender.finish_chunk()
                        a, b = chunks[current][:2]
                        if b == n_cols - 1:  # a whole chunk row: its strips, then its file, durable; then recorded
                            with timed("write"):
                                blender.sync_strips()
                                finishing.append((a, background.finish_row(), tiles_with_input))
                                tiles_with_input = 0
                            record(wait=len(finishing) > 1)  # at most one row in the writer's hands
                        if on_chunk is not None:
                            on_chunk(a, b)
                    current += 1
                    if current < len(chunks):
                        a, b = chunks[current][:2]
                        if b == 0:
                            background.start_row(*row_spans[a])
                        with timed("blend"):
                            blender.start_chunk(a, b)

            while pending:
                with timed("read"):
                    items, run, stacked, valid_batch, with_input = pending.pop(0).result()
                nxt = next(batches, None)
                if nxt is not None:
                    pending.append(submit(nxt))
                skipped += len(items) - len(run)
                tiles_with_input += with_input
                outputs = valid_out = None
                if run:
                    with timed("run"):  # on a GPU: launching the work (the device's own time is "run on device")
                        inputs_batch = stacked.to(device, non_blocking=on_gpu)
                        valid_out = valid_batch.to(device, non_blocking=on_gpu)
                        if on_gpu:
                            events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                            events[0].record()
                        with torch.inference_mode():
                            with autocast:
                                outputs = model(inputs_batch, tile).float()  # stays on the device: blended there
                            if stride > 1:  # an output pixel is valid when most of its reference pixels are
                                valid_out = F.avg_pool2d(valid_out[:, None].float(), stride)[:, 0] >= 0.5
                        if on_gpu:
                            events[1].record()
                            device_runs.append(events)
                slot = {position: k for k, position in enumerate(run)}  # tile → its row in ``outputs``
                for position, (index, r, c) in enumerate(items):
                    advance_to(index)
                    if position in slot:
                        with torch.inference_mode(), timed("blend"):
                            blender.add(r, c, outputs[slot[position]], valid_out[slot[position]])
                if bar is not None:
                    bar.update(len(items))
                    bar.set_postfix(skipped=skipped, refresh=False)
            advance_to(len(chunks))
            record(wait=True)
            background.drain()
            if device_runs:  # every event has completed: the chunks' values were copied to the host after them
                stages["run on device"] = sum(start.elapsed_time(end) for start, end in device_runs) / 1e3
            publishing = time.perf_counter()
            if state.valid_pixels == 0 and state.tiles_with_input > 0:
                discard = True
                raise InputError(
                    f"{output}: the prediction has no valid pixel although {state.tiles_with_input} tiles have valid "
                    f"input pixels (too few valid pixels per output pixel at stride {stride}, or every Sentinel frame "
                    f"below the valid fraction {sources.min_valid_fraction} of a tile); check the inputs' "
                    "nodata/masks and co-registration"
                )
            changed = fingerprint_changes(fingerprints, fingerprint_files(inputs))
            if changed:
                discard = True
                raise InputError(
                    f"{output}: an input changed while the map was computed ({'; '.join(changed)}); nothing was "
                    "published: run again on inputs that stay unchanged"
                )
            writer.finish(row_spans)
            stages["publish"] = time.perf_counter() - publishing
        except BaseException as err:
            for future in pending:
                future.cancel()
            if background is not None:
                background.close()  # the writer thread finishes what it was given before the row file is dropped
                try:
                    record(wait=True)  # rows whose files were made durable before the failure count as done
                except BaseException:  # noqa: BLE001 - a row that failed is not recorded; the first error is raised
                    pass
            if writer is not None:
                writer.abort()
            if executor is not None:
                executor.shutdown(wait=True)
                executor = None
            if blender is not None:
                blender.close()  # its strip writer stops before the scratch folder may be removed
                blender = None
            if state.rows_done >= 0 and not discard:
                _add_note(err, f"kept {state.rows_done + 1} of {n_rows} finished chunk rows in {scratch}; add "
                               "--resume to the same command to continue")  # fmt: skip
            else:
                shutil.rmtree(scratch, ignore_errors=True)
                _add_note(err, f"nothing worth resuming: removed {scratch}")
            raise
        finally:
            if background is not None:
                background.close()
            if executor is not None:
                executor.shutdown(wait=True)
            if bar is not None:
                bar.close()
            if blender is not None:
                blender.close()
            for open_reader in readers:
                open_reader.close()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - start
    return SceneReport(output, layout.num_tiles, skipped, seconds, grid.height * grid.width / 1e6, resolution, stages)


def _weights_digest(model: SceneModel) -> str:
    """SHA-256 of the network's weights (a resume fingerprint when no checkpoint file is named)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _resume_state(scratch: Path, settings: dict, fingerprints: dict) -> RunState | None:
    """The state of an interrupted run of the same command, or None (nothing to resume: start over).

    Raises:
        UsageError: the state belongs to other settings, or an input or the checkpoint changed since.
    """
    state = RunState.load(scratch)
    if state is None:
        return None
    if state.settings != settings:
        differ = sorted(k for k in set(state.settings) | set(settings) if state.settings.get(k) != settings.get(k))
        raise UsageError(
            f"--resume: {scratch} belongs to a run with other settings ({', '.join(differ)} differ); run with the "
            "same options, or without --resume to start over"
        )
    changed = fingerprint_changes(state.inputs, fingerprints)
    if changed:
        raise UsageError(
            f"--resume: the inputs changed since the interrupted run ({'; '.join(changed)}); its finished rows "
            f"would mix old and new data: run without --resume to start over"
        )
    missing = [a for a in range(state.rows_done + 1) if not row_file(scratch, a).is_file()]
    if missing:
        raise UsageError(
            f"--resume: {scratch} lacks the row files of finished chunk rows {missing[:5]}; run without --resume to "
            "start over"
        )
    return state
