"""Streaming, crash-safe GeoTIFF output.

Each chunk row of the output is written into its own tiled GeoTIFF in the run's scratch folder
(``<output>.partial.d/rows/row_<a>.tif``; compressed up to 16 bands, uncompressed beyond), which is closed, checked
(:func:`check_blocks_written`), fsynced and renamed into place when the row is complete
(:meth:`SceneWriter.finish_row`): a row file on disk is always whole. At the end the rows are stacked by a VRT and
copied into ``<output>.partial.d/output.tif`` (a COG: GDAL's COG driver with overviews up to 16 bands, its GTiff
driver in the same layout interleaved by band beyond; see :meth:`SceneWriter._publish_options`), which is checked,
fsynced and renamed onto the output only then: an interrupted run never leaves a corrupt, half-written or mixed
output, and a resumed run (which rewrites only the rows after the last finished one) publishes exactly what an
uninterrupted run would.

Class maps are uint8 with nodata 255 and a colour table; probabilities and embeddings are float32 with nodata NaN.
The CRS is the input's; the transform is the input's scaled by the output stride (the resolution is written into
the tags as ``SKYSENSE_RESOLUTION``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from skysense.containers import Grid
from skysense.errors import OutputError, UsageError
from skysense.files import durable_replace
from skysense.inference.zarr_store import is_zarr, publish_zarr, replace_tree

CLASS_NODATA = 255

# a qualitative palette (ColorBrewer Set1 + Dark2 hues), repeated past 16 classes
_PALETTE = [
    (228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (255, 255, 51), (166, 86, 40),
    (247, 129, 191), (153, 153, 153), (27, 158, 119), (217, 95, 2), (117, 112, 179), (231, 41, 138), (102, 166, 30),
    (230, 171, 2), (166, 118, 29),
]  # fmt: skip


def colour_table(num_classes: int) -> dict[int, tuple[int, int, int, int]]:
    """Class index → RGBA; the nodata value is transparent black."""
    table = {i: (*_PALETTE[i % len(_PALETTE)], 255) for i in range(num_classes)}
    table[CLASS_NODATA] = (0, 0, 0, 0)
    return table


@contextmanager
def _writing(path: str | Path, what: str) -> Iterator[None]:
    """Turn a failed write (a full disk, a file-size limit, permissions: GDAL's or the OS's error) into an
    :class:`~skysense.errors.OutputError` naming the file."""
    try:
        yield
    except (OSError, RasterioError, CPLE_BaseError) as err:
        if isinstance(err, OutputError):
            raise
        raise OutputError.writing(path, what, err) from err


def check_blocks_written(path: Path, what: str) -> None:
    """Refuse a closed GeoTIFF with a block that lies outside the file or was never written.

    GDAL does not raise every failed write: an uncompressed tiled row file that reached a file-size limit closed
    without an error, truncated at the limit and with its directory never rewritten, and was recorded as finished
    (tests/reliability caught it). Every block of every band is checked against the file's size through the block
    offsets and sizes GDAL reports (``BLOCK_OFFSET_x_y`` / ``BLOCK_SIZE_x_y``), which costs no pixel read.

    Raises:
        OutputError: naming the file and the block.
    """
    size = path.stat().st_size
    with _writing(path, what), rasterio.open(path) as src:
        block_rows, block_cols = src.block_shapes[0]
        separate = src.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE") == "BAND"
        for band in range(1, src.count + 1) if separate else (1,):
            for row in range(-(-src.height // block_rows)):
                for col in range(-(-src.width // block_cols)):
                    offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
                    length = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
                    if not offset or not length or int(offset) + int(length) > size:
                        raise OutputError.writing(
                            path, what, OSError(f"block ({row}, {col}) of band {band} lies past the file's end")
                        )


def row_block(chunk: int, block: int) -> int:
    """The row files' tile side: the largest multiple of 16 up to ``block`` that divides ``chunk``.

    Every tile of a row file is then filled by exactly one :meth:`SceneWriter.write` (one chunk). A tile filled by
    two writes stays in GDAL's global block cache between them, and when another thread's reads evict it (the reads
    run beside the writer thread), GDAL can hand the writer its old version back (OSGeo/gdal#2011): a 512² S1 scene
    written with ``--chunk 128`` into 512² tiles lost one band's 128² block in most runs.

    Raises:
        UsageError: ``chunk`` is not a multiple of 16 (GeoTIFF tiles are).
    """
    if chunk % 16:
        raise UsageError(f"--chunk {chunk} is not a multiple of 16 (GeoTIFF tiles); give e.g. {chunk // 16 * 16 or 16}")
    return max(side for side in range(16, min(block, chunk) + 1, 16) if chunk % side == 0)


def scratch_path(output: Path) -> Path:
    """The run's scratch folder beside the output: row files, carried strips, the run state, the COG being made."""
    return output.with_name(output.name + ".partial.d")


def row_file(scratch: Path, a: int) -> Path:
    """Where chunk row ``a`` of a run is kept once finished."""
    return scratch / "rows" / f"row_{a:05d}.tif"


def check_dtype(dtype: str, kind: str) -> None:
    """Refuse an output dtype the kind of output cannot have.

    Raises:
        UsageError: naming ``--dtype`` and what it applies to.
    """
    if dtype not in ("float32", "float16"):
        raise UsageError(f"--dtype: {dtype!r}; give float32 or float16")
    if dtype == "float16" and kind == "classes":
        raise UsageError("--dtype float16: a class map is uint8; --dtype applies to probabilities and embeddings")


# GeoTIFF compressions that keep every value (GDAL ignores a name it does not know, and writes uncompressed)
COMPRESSIONS = ("deflate", "zstd", "lzw", "lzma", "packbits", "lerc", "lerc_deflate", "lerc_zstd", "none")


def check_compress(compress: str) -> None:
    """Refuse a compression GDAL would silently ignore (or a lossy one).

    Raises:
        UsageError: naming ``--compress`` and the choices.
    """
    if compress.lower() not in COMPRESSIONS:
        raise UsageError(
            f"--compress {compress}: not a lossless GeoTIFF compression; give auto, {', '.join(COMPRESSIONS)}"
        )


_GDAL_TYPES = {"uint8": "Byte", "float32": "Float32"}


OVERVIEW_BANDS = 16  # outputs with more bands (embeddings) are published without overviews
PUBLISH_CACHE_MB = 512  # GDAL's block cache while the COG is built (the run's own is sized to its inputs)


class SceneWriter:
    """Write an output raster chunk row by chunk row into durable row files, then publish it as a COG.

    Args:
        output: the final file (``.tif``).
        grid: the output grid (CRS, transform, size).
        kind: "classes" (uint8, one band), "probabilities" or "embedding" (float32, ``channels`` bands).
        channels: bands for probabilities/embeddings; the number of classes for "classes".
        scratch: the run's scratch folder (:func:`scratch_path`).
        band_names: descriptions of the bands (class names for probabilities).
        tags: dataset tags (model, resolution, ...).
        compress: GDAL compression ("deflate", "zstd", "lzw", ...).
        block: internal tile side of the COG (and of the row files, at most).
        chunk: side of the blocks handed to :meth:`write` (default ``block``): the row files' tiles divide it, see
            :func:`row_block`.
        dtype: "float32", or "float16" (probabilities and embeddings stored as half floats, GDAL's ``NBITS=16`` on a
            Float32 band: half the size, ~3 significant digits; read back as float32).
    """

    def __init__(
        self,
        output: str | Path,
        grid: Grid,
        kind: str,
        channels: int,
        scratch: str | Path,
        band_names: list[str] | None = None,
        tags: dict[str, str] | None = None,
        compress: str = "deflate",
        block: int = 512,
        dtype: str = "float32",
        chunk: int | None = None,
    ) -> None:
        if kind not in ("classes", "probabilities", "embedding"):
            raise ValueError(f"kind must be classes, probabilities or embedding, got {kind!r}")
        check_dtype(dtype, kind)
        if kind == "classes" and channels >= CLASS_NODATA:
            raise ValueError(f"{channels} classes do not fit a uint8 class map (255 is nodata)")
        self.output = Path(output)
        self.grid = grid
        self.rows_dir = Path(scratch) / "rows"
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.channels = channels
        self.compress = compress
        self.block = block
        self.count = 1 if kind == "classes" else channels
        self.half = dtype == "float16"  # stored as IEEE half floats (GDAL NBITS=16), read back as float32
        self.band_names = ["class"] if kind == "classes" else list(band_names or [])[: self.count]
        self.class_names = list(band_names or [])  # the model's class names (none for embeddings)
        self.tags = dict(tags or {})
        self.profile: dict[str, Any] = dict(
            driver="GTiff",
            width=grid.width,
            count=self.count,
            dtype="uint8" if kind == "classes" else "float32",
            nodata=CLASS_NODATA if kind == "classes" else float("nan"),
            crs=grid.crs,
            tiled=True,
            blockxsize=row_block(chunk or block, block),
            blockysize=row_block(chunk or block, block),
            interleave="pixel" if self.count <= 4 else "band",
            BIGTIFF="IF_SAFER",
        )
        # Scratch rows of up to OVERVIEW_BANDS bands (class maps, a few probabilities) are compressed, for next to
        # nothing. Wider rows (embeddings) stay uncompressed: 128 noisy floats per pixel shrink by a third at best,
        # and compressing them on the writer thread took CPU from the model (on 2 cores, 1.2 s of a 9.4 s 512² S2
        # run), only to be decompressed again by the publish. The published file gets ``compress``.
        if self.count <= OVERVIEW_BANDS:
            self.profile.update(compress="zstd", ZSTD_LEVEL=1, predictor=2 if kind == "classes" else 3)
        if self.half:
            self.profile["NBITS"] = 16
        self._row: tuple[int, int, int] | None = None  # (chunk row, first output row, rows)
        self._dst: rasterio.io.DatasetWriter | None = None
        self.valid_pixels = 0  # valid pixels written by this writer (not counting rows of an earlier run)

    @property
    def uncompressed_bytes(self) -> int:
        """The output's size before compression (and without overviews)."""
        per_value = 1 if self.kind == "classes" else 2 if self.half else 4
        return self.grid.width * self.grid.height * self.count * per_value

    def row_file(self, a: int) -> Path:
        return row_file(self.rows_dir.parent, a)

    def start_row(self, a: int, row0: int, height: int) -> None:
        """Open chunk row ``a`` (output rows ``row0 … row0 + height``) for writing."""
        if self._dst is not None:
            raise RuntimeError("finish_row before start_row")
        transform = self.grid.transform @ Affine.translation(0, row0)
        temporary = self.row_file(a).with_suffix(".tif.tmp")
        with _writing(temporary, f"chunk row {a} of the output"):
            self._dst = rasterio.open(temporary, "w", height=height, transform=transform, **self.profile)
        self._row = (a, row0, height)

    def write(self, row: int, col: int, values: np.ndarray, valid: np.ndarray) -> None:
        """Write a block of the open chunk row: ``values`` (C, h, w) float32, or for "classes" the (1, h, w) uint8
        class indices (:meth:`~skysense.inference.tiling.ChunkedBlender.finish_chunk`'s argmax, a new array: its
        invalid pixels are set to nodata in place), ``valid`` (h, w) bool, at output pixel (row, col); invalid
        pixels become nodata."""
        if self._dst is None or self._row is None:
            raise RuntimeError("start_row before write")
        window = Window(col, row - self._row[1], values.shape[-1], values.shape[-2])
        if self.kind == "classes":
            if values.dtype != np.uint8 or values.shape[0] != 1:
                raise ValueError(f"a class map block is (1, h, w) uint8 class indices, got {values.dtype} "
                                 f"{tuple(values.shape)}")  # fmt: skip
            out = values
            out[:, ~valid] = CLASS_NODATA
        elif valid.all():  # (the blender's blocks: written as they are, without a copy)
            out = values.astype(np.float32, copy=False)
        else:
            out = np.where(valid[None], values, np.float32(np.nan)).astype(np.float32, copy=False)
        with _writing(self._dst.name, f"chunk row {self._row[0]} of the output"):
            self._dst.write(out, window=window)
        self.valid_pixels += int(valid.sum())

    def finish_row(self) -> Path:
        """Close the open chunk row's file and make it durable under its final name; returns that name."""
        if self._dst is None or self._row is None:
            raise RuntimeError("finish_row without start_row")
        temporary = Path(self._dst.name)
        final = self.row_file(self._row[0])
        what = f"chunk row {self._row[0]} of the output"
        with _writing(temporary, what):
            self._dst.close()
            self._dst = None
        check_blocks_written(temporary, what)
        with _writing(temporary, what):
            durable_replace(temporary, final)
        self._row = None
        return final

    def abort(self) -> None:
        """Close the open row file without keeping it (the finished rows stay, the output is untouched)."""
        if self._dst is not None:
            name = Path(self._dst.name)
            try:
                self._dst.close()
            except (OSError, RasterioError, CPLE_BaseError):
                pass  # the file is dropped anyway
            self._dst = None
            name.unlink(missing_ok=True)

    def _vrt(self, rows: list[tuple[int, int, int]]) -> str:
        """A VRT stacking the row files ``(chunk row, first output row, rows)`` into the whole output grid."""
        root = ET.Element("VRTDataset", rasterXSize=str(self.grid.width), rasterYSize=str(self.grid.height))
        if self.grid.crs is not None:
            ET.SubElement(root, "SRS").text = self.grid.crs.to_wkt()
        t = self.grid.transform
        ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
        metadata = ET.SubElement(root, "Metadata")
        for key, value in self.tags.items():
            ET.SubElement(metadata, "MDI", key=key).text = value
        data_type = _GDAL_TYPES[self.profile["dtype"]]
        for band in range(1, self.count + 1):
            element = ET.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(band))
            if band <= len(self.band_names):
                ET.SubElement(element, "Description").text = self.band_names[band - 1]
            ET.SubElement(element, "NoDataValue").text = "255" if self.kind == "classes" else "nan"
            if self.kind == "classes":
                ET.SubElement(element, "ColorInterp").text = "Palette"
                table = ET.SubElement(element, "ColorTable")
                colours = colour_table(self.channels)
                for index in range(256):
                    r, g, b, alpha = colours.get(index, (0, 0, 0, 255))
                    ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(alpha))
            for a, row0, height in rows:
                source = ET.SubElement(element, "SimpleSource")
                ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = f"rows/{self.row_file(a).name}"
                ET.SubElement(source, "SourceBand").text = str(band)
                size = dict(xSize=str(self.grid.width), ySize=str(height))
                ET.SubElement(source, "SrcRect", xOff="0", yOff="0", **size)
                ET.SubElement(source, "DstRect", xOff="0", yOff=str(row0), **size)
        return ET.tostring(root, encoding="unicode")

    def _publish_options(self) -> dict[str, Any]:
        """GDAL's driver and creation options of the published file.

        Up to :data:`OVERVIEW_BANDS` bands (class maps, a few class probabilities): GDAL's COG driver, with overviews,
        which is what a viewer pans. More bands (embeddings): no overviews — they cost as much as the model did
        (237 s of a 522 s 1933² S2 scene: GDAL rereads the band-interleaved data beyond its block cache) for images
        nobody views, and ``gdaladdo`` adds them when wanted — and GDAL's GTiff driver with ``COPY_SRC_OVERVIEWS``,
        the COG layout the COG driver itself builds on (directories first, then the tiles in order), band by band:
        GDAL 3.10's COG driver interleaves by pixel, whose 128-band tiles compress worse and twice as slowly (512²
        × 128 float32 with ZSTD: 92 MiB in 0.79 s against 87 MiB in 0.38 s by band).
        """
        floats = self.kind != "classes"
        compress = self.compress.upper()
        predicts = compress not in ("NONE", "JPEG", "WEBP")
        # noisy floats compress no better at higher levels (90 vs 89 MiB), only slower
        level = 1 if floats and compress in ("DEFLATE", "ZSTD", "LZMA") else None
        # Compressed on every core (NUM_THREADS): the publish runs after the model, with nothing else to do. With
        # threaded compression a failed write (a full disk) is printed by libtiff but not raised; the published file
        # is therefore checked block by block before it replaces the output (check_blocks_written).
        options: dict[str, Any] = dict(COMPRESS=compress, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
                                       **({"NBITS": 16} if self.half else {}))  # fmt: skip
        if self.count > OVERVIEW_BANDS:
            options.update(driver="GTiff", TILED="YES", BLOCKXSIZE=self.block, BLOCKYSIZE=self.block,
                           INTERLEAVE="BAND", COPY_SRC_OVERVIEWS="YES")  # fmt: skip
            if predicts:
                options["PREDICTOR"] = 3 if floats else 2
            if level is not None:
                options[{"DEFLATE": "ZLEVEL", "ZSTD": "ZSTD_LEVEL", "LZMA": "LZMA_PRESET"}[compress]] = level
            return options
        resampling = "NEAREST" if self.kind == "classes" else "AVERAGE"
        options.update(driver="COG", BLOCKSIZE=self.block, RESAMPLING=resampling, OVERVIEW_RESAMPLING=resampling,
                       OVERVIEWS="AUTO")  # fmt: skip
        if predicts:
            options["PREDICTOR"] = "FLOATING_POINT" if floats else "YES"
        if level is not None:
            options["LEVEL"] = level
        return options

    def finish(self, rows: list[tuple[int, int, int]]) -> Path:
        """Stack the row files ``(chunk row, first output row, rows)`` (every one must be durable), convert them to a
        COG (or, for a ``.zarr`` output, a Zarr store: :mod:`skysense.inference.zarr_store`) inside the scratch
        folder, make it durable and rename it onto the output; returns the output."""
        missing = [str(self.row_file(a)) for a, _, _ in rows if not self.row_file(a).is_file()]
        if missing:
            raise RuntimeError(f"row files missing before publishing: {missing[:3]}")
        scratch = self.rows_dir.parent
        vrt = scratch / "output.vrt"
        vrt.write_text(self._vrt(rows))
        if is_zarr(self.output):
            staging = scratch / "output.zarr"
            with _writing(staging, "the Zarr store"), rasterio.Env(GDAL_CACHEMAX=PUBLISH_CACHE_MB * 2**20):
                publish_zarr(vrt, staging, self.kind, self.class_names, self.tags, self.block, self.half)
            with _writing(self.output, "the output"):
                replace_tree(staging, self.output, scratch / "replaced.zarr")
            return self.output
        staging = scratch / "output.tif"
        # Building overviews under a small block cache rereads the data many times (a 1024² × 128-band test: 43 s
        # under 64 MB against 20 s under 512 MB), so the publish, after the model is done, gets PUBLISH_CACHE_MB.
        with _writing(staging, "the Cloud-Optimized GeoTIFF"), rasterio.Env(GDAL_CACHEMAX=PUBLISH_CACHE_MB * 2**20):
            rasterio.shutil.copy(vrt, staging, **self._publish_options())
        check_blocks_written(staging, "the Cloud-Optimized GeoTIFF")
        with _writing(self.output, "the output"):
            durable_replace(staging, self.output)
        return self.output


class BackgroundWriter:
    """A :class:`SceneWriter` run on a thread of its own, so that compressing and syncing row files overlaps the model.

    Jobs run in the order they are given (one thread): ``start_row``, ``write``s, ``finish_row``. At most
    ``max_pending`` blocks wait in memory (the model's thread blocks beyond that); an error of a job is raised on the
    calling thread at the next call, or by the :class:`~concurrent.futures.Future` of ``finish_row``.
    """

    def __init__(self, writer: SceneWriter, max_pending: int = 2) -> None:
        self.writer = writer
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skysense-write")
        self._pending: list[Future] = []

    def _submit(self, job: Callable[..., Any], *args: Any) -> Future:
        for future in self._pending:
            if future.done():
                future.result()  # raises the job's error here, on the caller's thread
        self._pending = [f for f in self._pending if not f.done()]
        while len(self._pending) >= self.max_pending:
            self._pending.pop(0).result()
        future = self._executor.submit(job, *args)
        self._pending.append(future)
        return future

    def start_row(self, a: int, row0: int, height: int) -> None:
        self._submit(self.writer.start_row, a, row0, height)

    def write(self, row: int, col: int, values: np.ndarray, valid: np.ndarray) -> None:
        self._submit(self.writer.write, row, col, values, valid)

    def finish_row(self) -> Future:
        """Close and make durable the open row file, after the writes before it; the future's result is the number of
        valid pixels written into that row."""
        return self._submit(self._finish_row)

    def _finish_row(self) -> int:
        self.writer.finish_row()
        count, self.writer.valid_pixels = self.writer.valid_pixels, 0
        return count

    def drain(self) -> None:
        """Wait for every job; raise the first error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """Stop the thread after the jobs given (errors are left to :meth:`drain` and the futures)."""
        self._executor.shutdown(wait=True)


def output_grid(reference: Grid, stride: int) -> Grid:
    """The output grid of a prediction made every ``stride`` reference pixels (same CRS and origin)."""
    height = -(-reference.height // stride)
    width = -(-reference.width // stride)
    return Grid(reference.crs, reference.transform @ Affine.scale(stride), height, width)
