"""Scene-scale prediction: a model over a GeoTIFF of any size, tile by tile, into a georeferenced output.

    from skysense.inference import SceneSources, load_scene_model, predict_scene
    model = load_scene_model("runs/seg/last.ckpt")                      # a SegmentationTask checkpoint
    predict_scene(model, SceneSources(hr="scene.tif"), "map.tif", tile=512, overlap=128, batch_size=8)

The pipeline (memory is bounded by the tile, batch and chunk sizes, never by the scene), each stage in
:mod:`skysense.inference.stages` with its own clock:

0. plan (:func:`~skysense.inference.plan.plan_scene`): the options checked, tiles of ``tile`` reference pixels every
   ``tile - overlap`` pixels, grouped into chunks (:class:`~skysense.inference.tiling.TileLayout`);
1. read (:class:`~skysense.inference.stages.TileReads`): reader threads read the next batches (windowed reads;
   Sentinel series reprojected onto each tile's grid) while the model runs on the current one; tiles with no valid
   pixel are skipped;
2. run (:class:`~skysense.inference.stages.ModelRun`): the model, optionally under bf16 autocast;
3. blend (:class:`~skysense.inference.stages.ChunkRows`): outputs are blended with weights that fall off towards each
   tile's border (:class:`~skysense.inference.tiling.ChunkedBlender`), so overlapping tiles leave no seam;
4. write: each finished chunk goes to the writer thread (:class:`~skysense.inference.writer.SceneWriter`), and each
   finished chunk row is recorded for a resume once durable;
5. publish: the output is written as a COG only when complete.

GDAL's block cache holds two block rows of every input file (:func:`~skysense.inference.plan.block_cache_mb`), so that each block is decoded
once however many tiles read it; it grows with the scene's width, never with its height.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
import torch

from skysense.errors import InputError, OutputError, UsageError
from skysense.inference.models import SceneModel
from skysense.inference.plan import ScenePlan, block_cache_mb, check_free_space, input_rasters, plan_scene
from skysense.inference.resume import RunState, fingerprint_changes, fingerprint_files
from skysense.inference.sources import SceneSources, TileReader
from skysense.inference.stages import ChunkRows, ModelRun, StageClock, TileReads
from skysense.inference.writer import BackgroundWriter, SceneWriter, row_file, scratch_path


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
        gdal_cache_mb: GDAL block-cache cap during the run (default :func:`~skysense.inference.plan.block_cache_mb` of the inputs).
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
    plan = plan_scene(model, sources, output, tile=tile, overlap=overlap, batch_size=batch_size,
                      output_kind=output_kind, chunk=chunk, device=device, precision=precision, compress=compress,
                      block=block, prefetch=prefetch, workers=workers, checkpoint=checkpoint,
                      allow_ungeoreferenced=allow_ungeoreferenced, dtype=dtype)  # fmt: skip
    output, out_grid = plan.output, plan.out_grid
    clock = StageClock()
    start = time.perf_counter()
    if gdal_cache_mb is None:
        gdal_cache_mb = block_cache_mb(input_rasters(plan.sources))
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb * 2**20):
        first = TileReader(plan.sources, plan.modalities, model.hr_channels)  # refuse bad inputs before the first tile
        try:  # until the read stage takes ``first`` over, it is closed here on a failure (a refused resume)
            if "hr" in plan.modalities:
                plan.tags["SKYSENSE_HR_BANDS"] = ",".join(map(str, first.hr_bands))
                if first.hr_stretch is not None:  # the values read as 0 and 255 (a resume must use the same)
                    plan.tags["SKYSENSE_HR_RANGE"] = first.hr_stretch.describe()
            settings = _settings(plan, model, checkpoint)
            fingerprints = fingerprint_files(plan.inputs)
            scratch = scratch_path(output)
            state = _resume_state(scratch, settings, fingerprints) if resume else None
            if state is None:
                shutil.rmtree(scratch, ignore_errors=True)
                state = RunState(settings, fingerprints)
            rows_left = max(out_grid.height - (state.rows_done + 1) * plan.chunk, 0)
            check_free_space(output, out_grid.width * rows_left, model.channels, plan.kind, plan.dtype)
            model.network.to(plan.device)
            chunks = [chunk_tiles for chunk_tiles in plan.layout.chunks() if chunk_tiles[0] > state.rows_done]
            reads = TileReads(plan, chunks, first, model.hr_channels, clock)
        except BaseException:
            first.close()
            raise

        n_rows = plan.layout.chunk_grid[0]
        bar = None
        skipped = 0
        discard = False  # a failure after which a resume is impossible: remove the scratch folder in any case
        writer: SceneWriter | None = None
        background: BackgroundWriter | None = None
        rows: ChunkRows | None = None
        try:
            try:
                scratch.mkdir(parents=True, exist_ok=True)
            except OSError as err:  # a folder that refuses new files (/proc, a read-only mount)
                discard = True
                raise OutputError(
                    f"--output {output}: cannot create its working folder {scratch} ({err.strerror or err}); choose "
                    "a folder you can write"
                ) from None
            writer = SceneWriter(output, out_grid, plan.kind, model.channels, scratch, model.class_names, plan.tags,
                                 plan.compress, plan.block, plan.dtype, plan.chunk)  # fmt: skip
            if progress:  # what will be written, before writing it
                count = 1 if plan.kind == "classes" else model.channels
                print(f"{output}: {out_grid.width}×{out_grid.height} px × {count} band{'s' * (count > 1)} "
                      f"{'uint8' if plan.kind == 'classes' else plan.dtype}, "
                      f"{writer.uncompressed_bytes / 2**30:.2f} GiB before compression", file=sys.stderr,
                      flush=True)  # fmt: skip
            background = BackgroundWriter(writer)
            rows = ChunkRows(plan, chunks, state, scratch, background, clock, on_chunk)
            run = ModelRun(model, plan, clock)
            clock.seconds["prepare"] = time.perf_counter() - start
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(reads.items), unit="tile", desc=f"{output.name}", smoothing=0.1)
            for batch in reads:  # read → run → blend → write, one batch at a time
                skipped += len(batch.items) - len(batch.run)
                outputs, valid = run(batch)
                rows.add(batch, outputs, valid)
                if bar is not None:
                    bar.update(len(batch.items))
                    bar.set_postfix(skipped=skipped, refresh=False)
            state = rows.finish()
            device_seconds = run.device_seconds()  # every batch has completed: its chunk was copied to the host
            if device_seconds is not None:
                clock.seconds["run on device"] = device_seconds
            publishing = time.perf_counter()
            if state.valid_pixels == 0 and state.tiles_with_input > 0:
                discard = True
                raise InputError(
                    f"{output}: the prediction has no valid pixel although {state.tiles_with_input} tiles have valid "
                    f"input pixels (too few valid pixels per output pixel at stride {plan.stride}, or every Sentinel "
                    f"frame below the valid fraction {plan.sources.min_valid_fraction} of a tile); check the inputs' "
                    "nodata/masks and co-registration"
                )
            changed = fingerprint_changes(fingerprints, fingerprint_files(plan.inputs))
            if changed:
                discard = True
                raise InputError(
                    f"{output}: an input changed while the map was computed ({'; '.join(changed)}); nothing was "
                    "published: run again on inputs that stay unchanged"
                )
            writer.finish(plan.row_spans)
            clock.seconds["publish"] = time.perf_counter() - publishing
        except BaseException as err:
            reads.cancel()
            if background is not None:
                background.close()  # the writer thread finishes what it was given before the row file is dropped
                if rows is not None:
                    rows.salvage()  # rows whose files were made durable before the failure count as done
            if writer is not None:
                writer.abort()
            reads.close()
            if rows is not None:
                rows.close()  # its strip writer stops before the scratch folder may be removed
                state = rows.state
            if state.rows_done >= 0 and not discard:
                _add_note(err, f"kept {state.rows_done + 1} of {n_rows} finished chunk rows in {scratch}; add "
                               "--resume to the same command to continue")  # fmt: skip
            elif scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
                _add_note(err, f"nothing worth resuming: removed {scratch}")
            raise
        finally:
            if background is not None:
                background.close()
            if bar is not None:
                bar.close()
            if rows is not None:
                rows.close()
            reads.close()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - start
    return SceneReport(output, plan.layout.num_tiles, skipped, seconds, plan.grid.height * plan.grid.width / 1e6,
                       plan.resolution, clock.seconds)  # fmt: skip


def _settings(plan: ScenePlan, model: SceneModel, checkpoint: str | Path | None) -> dict:
    """Everything that shapes the output, JSON-ready: a resume must match it."""
    grid = plan.out_grid
    stretch = {"hr_range": plan.tags["SKYSENSE_HR_RANGE"]} if "SKYSENSE_HR_RANGE" in plan.tags else {}
    return json.loads(json.dumps({
        "model": model.description, "kind": plan.kind, "tile": plan.tile, "overlap": plan.overlap,
        "chunk": plan.chunk, "block": plan.block, "compress": plan.compress, "batch_size": plan.batch_size,
        "precision": plan.precision, "dtype": plan.dtype, "grid": [grid.height, grid.width, list(grid.transform),
        str(grid.crs)], "weights": None if checkpoint else _weights_digest(model),
        **stretch,  # only when given: the state of a run without it keeps the settings of earlier versions
    }))  # fmt: skip


def _add_note(err: BaseException, note: str) -> None:
    """``err.add_note`` (Python 3.11+), also on 3.10: the CLI prints notes after the message."""
    err.__notes__ = [*getattr(err, "__notes__", []), note]


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
        warnings.warn(f"--resume: no interrupted run at {scratch}; starting from the beginning", stacklevel=3)
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
