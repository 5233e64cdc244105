"""Streaming GeoTIFF output: chunks are written as they are finished into a tiled, compressed GeoTIFF beside the
output (``<output>.partial.tif``), which becomes a Cloud-Optimized GeoTIFF (internal tiles, overviews) at the end
and is renamed onto the output only then: an interrupted run never leaves a corrupt or half-written output, and a
rerun starts over from the partial file's place.

Class maps are uint8 with nodata 255 and a colour table; probabilities and embeddings are float32 with nodata NaN.
The CRS is the input's; the transform is the input's scaled by the output stride (the resolution is written into
the tags as ``SKYSENSE_RESOLUTION``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import Affine
from rasterio.windows import Window

from skysense.data.readers import Grid

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


def argmax_classes(values: np.ndarray) -> np.ndarray:
    """(K, h, w) float → (h, w) uint8 index of the largest, one contiguous plane at a time (much faster than an
    argmax over the strided first axis); NaN never wins."""
    best = values[0].copy()
    classes = np.zeros(best.shape, dtype=np.uint8)
    for index in range(1, values.shape[0]):
        better = values[index] > best
        best[better] = values[index][better]
        classes[better] = index
    return classes


def partial_path(output: Path) -> Path:
    """Where the output is written until it is complete."""
    return output.with_name(output.name + ".partial.tif")


class SceneWriter:
    """Write an output raster window by window, then publish it as a COG.

    Args:
        output: the final file (``.tif``).
        grid: the output grid (CRS, transform, size).
        kind: "classes" (uint8, one band), "probabilities" or "embedding" (float32, ``channels`` bands).
        channels: bands for probabilities/embeddings; the number of classes for "classes".
        band_names: descriptions of the bands (class names for probabilities).
        tags: dataset tags (model, resolution, ...).
        compress: GDAL compression ("deflate", "zstd", "lzw", ...).
        block: internal tile side of the partial file and of the COG.
        append: reopen an existing partial file (resuming) instead of creating it.
    """

    def __init__(
        self,
        output: str | Path,
        grid: Grid,
        kind: str,
        channels: int,
        band_names: list[str] | None = None,
        tags: dict[str, str] | None = None,
        compress: str = "deflate",
        block: int = 512,
        append: bool = False,
    ) -> None:
        if kind not in ("classes", "probabilities", "embedding"):
            raise ValueError(f"kind must be classes, probabilities or embedding, got {kind!r}")
        if kind == "classes" and channels >= CLASS_NODATA:
            raise ValueError(f"{channels} classes do not fit a uint8 class map (255 is nodata)")
        self.output = Path(output)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.partial = partial_path(self.output)
        self.kind = kind
        self.compress = compress
        self.block = block
        count = 1 if kind == "classes" else channels
        self.profile: dict[str, Any] = dict(
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=count,
            dtype="uint8" if kind == "classes" else "float32",
            nodata=CLASS_NODATA if kind == "classes" else float("nan"),
            crs=grid.crs,
            transform=grid.transform,
            tiled=True,
            blockxsize=block,
            blockysize=block,
            compress=compress,
            predictor=2 if kind == "classes" else 3,
            interleave="pixel" if count <= 4 else "band",
            BIGTIFF="IF_SAFER",
        )
        if append:
            self._dst = rasterio.open(self.partial, "r+")
            if (self._dst.width, self._dst.height, self._dst.count) != (grid.width, grid.height, count):
                self._dst.close()
                raise ValueError(f"{self.partial} does not match this run's output; remove it or run without resume")
            return
        self._dst = rasterio.open(self.partial, "w", **self.profile)
        if kind == "classes":
            self._dst.write_colormap(1, colour_table(channels))
            self._dst.set_band_description(1, "class")
        elif band_names:
            for index, name in enumerate(band_names[:count], start=1):
                self._dst.set_band_description(index, name)
        if tags:
            self._dst.update_tags(**tags)

    def write(self, row: int, col: int, values: np.ndarray, valid: np.ndarray) -> None:
        """Write a block of the output: ``values`` (C, h, w) float32 (class probabilities for "classes"), ``valid``
        (h, w) bool; invalid pixels become nodata."""
        window = Window(col, row, values.shape[-1], values.shape[-2])
        if self.kind == "classes":
            classes = argmax_classes(values)
            classes[~valid] = CLASS_NODATA
            self._dst.write(classes[None], window=window)
        else:
            out = np.where(valid[None], values, np.nan).astype(np.float32)
            self._dst.write(out, window=window)

    def abort(self) -> None:
        """Close without publishing (the partial file stays, the output is untouched)."""
        if not self._dst.closed:
            self._dst.close()

    def finish(self) -> Path:
        """Close, convert to a COG next to the output, and rename it onto the output; returns the output."""
        self._dst.close()
        staging = self.output.with_name(self.output.name + ".cog.tmp")
        resampling = "NEAREST" if self.kind == "classes" else "AVERAGE"
        predictor = "YES" if self.kind == "classes" else "FLOATING_POINT"
        rasterio.shutil.copy(
            self.partial, staging, driver="COG", COMPRESS=self.compress.upper(), BLOCKSIZE=self.block,
            RESAMPLING=resampling, OVERVIEW_RESAMPLING=resampling, PREDICTOR=predictor, BIGTIFF="IF_SAFER",
        )  # fmt: skip
        os.replace(staging, self.output)
        self.partial.unlink(missing_ok=True)
        return self.output


def output_grid(reference: Grid, stride: int) -> Grid:
    """The output grid of a prediction made every ``stride`` reference pixels (same CRS and origin)."""
    height = -(-reference.height // stride)
    width = -(-reference.width // stride)
    return Grid(reference.crs, reference.transform @ Affine.scale(stride), height, width)
