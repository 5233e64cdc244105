"""What a scene run is decided by, checked before any pixel is read: the options, the tile lattice, the chunks,
the output grid and the inputs' files (:func:`plan_scene`).

Every refusal here is a :class:`~skysense.errors.UsageError` or :class:`~skysense.errors.InputError` naming the
option or file, raised before the output's scratch folder exists.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioError

from skysense.containers import Grid
from skysense.data.raster import raster_info
from skysense.data.sensors import get_sensor
from skysense.errors import InputError, OutputError, UsageError
from skysense.inference.models import SceneModel
from skysense.inference.sources import SceneSources
from skysense.inference.tiling import TileLayout
from skysense.inference.writer import OVERVIEW_BANDS, check_compress, check_dtype, output_grid, row_block
from skysense.inference.zarr_store import check_zarr_output, is_zarr

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


REGION_MB = 256  # memory of one region's Sentinel series (see tile_rows_per_region)


def tile_rows_per_region(
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
    """The files on disk each input reads ({"hr": [...], "s2": [...], "s1": [...]}: products' files included, and
    the files a VRT or another multi-file raster reads: :func:`gdal_files`)."""
    files = {"hr": gdal_files(Path(sources.hr))} if sources.hr is not None else {}
    for name in ("s2", "s1"):
        series = getattr(sources, name)
        if series is not None:
            files[name] = list(dict.fromkeys(f for path in series.paths for f in gdal_files(path)))
    return files


def gdal_files(path: Path) -> list[Path]:
    """``path`` and, for a VRT, the files GDAL reads for it (its sources: the dataset's file list), so that an output
    is never one of them and a resume sees them change; ``[path]`` for other files (opening every band of a year of
    products here would cost seconds for nothing) and when GDAL cannot open it (the reader refuses it later)."""
    if not path.is_file() or path.suffix.lower() != ".vrt":
        return [path]
    try:
        with rasterio.open(path) as dataset:
            listed = [Path(f) for f in dataset.files if not str(f).startswith("/vsi")]
    except (RasterioError, OSError):
        return [path]
    return list(dict.fromkeys([path, *listed]))


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

    folder = next(f for f in [output.parent, *output.parent.parents] if f.exists() or f == f.parent)
    if not folder.is_dir():
        raise UsageError(f"--output {output}: {folder} is a file, not a folder; give an output in a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--output {output}: cannot write in {folder} (no permission); choose a folder you can write")
    resolved = output.resolve()
    for role, paths in inputs.items():
        for path in paths:
            path = Path(path)
            same = resolved == path.resolve()
            if not same and output.exists() and path.exists():
                same = os.path.samefile(output, path)
            if same:
                flag = "--checkpoint" if role == "checkpoint" else f"--{role}"
                given = path == Path(paths[0]) or role != "hr"  # the HR path itself, or one of its VRT's sources
                what = f"the input {flag} {path}" if given else f"{path}, a file the input {flag} {paths[0]} reads"
                raise UsageError(
                    f"--output {output} is {what} (both resolve to {resolved}); writing the map would destroy the "
                    "input: choose another output file"
                )
    if not is_zarr(output) and output.suffix.lower() not in (".tif", ".tiff"):
        raise UsageError(
            f"--output {output}: skysense writes a Cloud-Optimized GeoTIFF (.tif, .tiff) or a Zarr store (.zarr); "
            f"give e.g. {output.with_suffix('.tif')}"
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


@dataclass(frozen=True)
class ScenePlan:
    """A scene run's decided settings (see :func:`plan_scene`).

    Attributes:
        output: the output file.
        sources: the scene's inputs that the model reads (the others set to None); modalities: their names.
        inputs: the files on disk each input reads, and the checkpoint's ({"hr": [...], "checkpoint": [...]}), for
            the fingerprints.
        kind: "classes", "probabilities" or "embedding"; channels: output bands before the argmax of a class map.
        grid: the reference grid (HR pixels, or Sentinel pixels without HR); out_grid: the output's (every
            ``stride`` reference pixels).
        tile, overlap: in reference pixels; stride: the model's output stride; chunk: chunk side in output pixels;
            layout: the tiles and chunks, in output pixels.
        batch_size, device, precision, compress, dtype, block, workers, prefetch: as given to
            :func:`~skysense.inference.scene.predict_scene`, checked ("auto" compression resolved; ``prefetch``
            batches read ahead, 0 when reading in the model's thread).
        tags: the output's ``SKYSENSE_*`` metadata.
    """

    output: Path
    sources: SceneSources
    modalities: list[str]
    inputs: dict[str, list[Path]]
    kind: str
    channels: int
    grid: Grid
    out_grid: Grid
    tile: int
    overlap: int
    stride: int
    chunk: int
    layout: TileLayout
    batch_size: int
    device: torch.device
    precision: str
    compress: str
    dtype: str
    block: int
    workers: int
    prefetch: int
    tags: dict[str, str]

    @property
    def resolution(self) -> tuple[float, float]:
        """Output pixel size (x, y) in CRS units."""
        return pixel_size(self.out_grid)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def row_spans(self) -> list[tuple[int, int, int]]:
        """(chunk row, its first output row, its height in output rows) for every chunk row."""
        chunk, height = self.chunk, self.out_grid.height
        return [(a, a * chunk, min(chunk, height - a * chunk)) for a in range(self.layout.chunk_grid[0])]


def pixel_size(grid: Grid) -> tuple[float, float]:
    """A grid's pixel size (x, y) in CRS units, also when its geotransform is rotated (the length of each pixel
    side, not the transform's a and e terms)."""
    t = grid.transform
    return math.hypot(t.a, t.d), math.hypot(t.b, t.e)


def plan_scene(
    model: SceneModel, sources: SceneSources, output: str | Path, *, tile: int | None, overlap: int | None,
    batch_size: int, output_kind: str | None, chunk: int | None, device: str | torch.device, precision: str,
    compress: str, block: int, prefetch: int, workers: int | None, checkpoint: str | Path | None,
    allow_ungeoreferenced: bool, dtype: str,
) -> ScenePlan:  # fmt: skip
    """Check :func:`~skysense.inference.scene.predict_scene`'s options against the model and the scene and decide
    the run's lattice (its arguments are documented there).

    Raises:
        UsageError: bad options (tile/overlap off the model's lattice, out-of-range values, an output that is an
            input, inputs the model cannot read).
        InputError: a reference image without a CRS (unless ``allow_ungeoreferenced``).
    """
    output = Path(output)
    device = torch.device(device)
    reads_hr = "hr" in model.modalities and sources.hr is not None
    default_tile = 512 if reads_hr else SENTINEL_TILE
    if overlap is None:  # a quarter of the default tile, or of a smaller tile given
        overlap = min(default_tile, tile if tile is not None else default_tile) // 4
    tile = tile if tile is not None else default_tile
    if workers is None:
        workers = 0 if device.type == "cpu" else 1
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
    sources = replace(sources, **keep)
    inputs = input_files(sources)
    if checkpoint:
        inputs["checkpoint"] = [Path(checkpoint)]
    check_output_path(output, inputs)
    modalities = sources.modalities
    grid = sources.grid
    if grid.crs is None and not allow_ungeoreferenced:
        raise InputError(
            f"{sources.reference_file}: has no georeferencing (no CRS), so the map could not be placed on Earth; "
            "georeference it first (e.g. `gdal_translate -a_srs EPSG:32633 -a_ullr ...`) or pass "
            "--allow-ungeoreferenced for a map in pixel coordinates"
        )
    if grid.crs is None and model.kind == "embedding" and model.source == "fused":
        if getattr(model.network, "geo", None) is not None:  # its prototypes are picked by latitude/longitude
            raise UsageError(
                f"{sources.reference_file}: has no CRS, so the fused embedding's geo-context prototypes (picked by "
                "latitude/longitude) cannot be found; give --source hr for the HR encoder's features, or "
                "georeference the image"
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
    resolution = pixel_size(out_grid)
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
    return ScenePlan(
        output=output, sources=sources, modalities=modalities, inputs=inputs, kind=kind, channels=model.channels,
        grid=grid, out_grid=out_grid, tile=tile, overlap=overlap, stride=stride, chunk=chunk, layout=layout,
        batch_size=batch_size, device=device, precision=precision, compress=compress, dtype=dtype, block=block,
        workers=workers, prefetch=max(prefetch, workers) if workers else 0, tags=tags,
    )  # fmt: skip
