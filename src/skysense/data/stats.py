"""Per-band statistics of a manifest's files (count, mean, standard deviation, min, max of the valid pixels), streamed
block by block in constant memory with Chan et al.'s parallel update, for normalisation constants
(``skysense data stats``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.transform import Affine

from skysense.containers import Grid
from skysense.data.manifest.products import product_of
from skysense.data.manifest.schema import PRODUCT_DRIVERS, ManifestEntry
from skysense.data.raster.read import Raster, RasterFile, iter_windows
from skysense.data.series import cloud_band, mask_clouds
from skysense.errors import InputError


@dataclass
class BandStats:
    """Running statistics of one band over valid pixels (Chan et al.'s parallel mean/variance update, float64).

    Attributes:
        band: the band's name.
        count: number of valid values.
        total: number of values seen, valid or not.
        mean, m2: running mean and sum of squared deviations.
        min, max: extremes of the valid values.
    """

    band: str
    count: int = 0
    total: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values: np.ndarray, total: int) -> None:
        """Add valid values (1-D) out of ``total`` seen."""
        self.total += total
        n = values.size
        if n == 0:
            return
        values = values.astype(np.float64)
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        combined = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / combined
        self.m2 += m2 + delta * delta * self.count * n / combined
        self.count = combined
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    def as_dict(self) -> dict[str, Any]:
        """count, mean, std (population), min, max, valid_fraction (None where no value was valid)."""
        empty = self.count == 0
        return {
            "band": self.band,
            "count": self.count,
            "mean": None if empty else self.mean,
            "std": None if empty else math.sqrt(self.m2 / self.count),
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "valid_fraction": self.count / self.total if self.total else 0.0,
        }


def compute_stats(entries: Sequence[ManifestEntry], modality: str | None = None, tile: int = 1024) -> dict[str, Any]:
    """Per-band count/mean/std/min/max/valid fraction over every file of a modality, ignoring invalid pixels,
    streaming window by window (:func:`~skysense.data.raster.iter_windows`; memory does not grow with file size).

    Args:
        entries: manifest entries.
        modality: only files of this modality (None: all, which then must agree in band count).
        tile: window side in pixels.

    Returns:
        {"modality", "files", "bands": [{"band", "count", "mean", "std", "min", "max", "valid_fraction"}, ...]}.

    Raises:
        ValueError: no file of the modality, or files that differ in band count or band names (naming both).
    """
    chosen = [e for e in entries if modality is None or e.modality == modality]
    if not entries:
        raise InputError("the manifest has no rows; index a folder that holds rasters with `skysense data index`")
    if not chosen:
        found = sorted({e.modality for e in entries})
        raise InputError(
            f"no file of modality {modality!r} in the manifest (modalities present: {found}); choose one of those "
            "(--modality), or fix the manifest's 'modality' column"
        )
    scope = f"modality {modality!r}" if modality else "the manifest's files (no modality chosen)"
    reference: tuple[str, tuple[str | None, ...]] | None = None  # (the first file, its band names)
    stats: list[BandStats] = []
    for entry in chosen:
        for names, raster in _windows(entry, tile):
            if reference is None:
                reference = (str(entry.path), names)
                stats = [BandStats(name or f"band_{i}") for i, name in enumerate(names, start=1)]
            elif len(names) != len(stats):
                raise InputError(
                    f"band counts differ within {scope}: {reference[0]} has {len(stats)} bands, "
                    f"{entry.path} has {len(names)}; index them as different modalities or pass --modality"
                )
            elif all(reference[1]) and all(names) and names != reference[1]:
                raise InputError(
                    f"band names differ within {scope}: {reference[0]} has {list(reference[1])}, {entry.path} has "
                    f"{list(names)}"
                )
            for band, band_stats in enumerate(stats):
                band_stats.update(raster.values[band][raster.valid[band]], raster.valid[band].size)
    return {"modality": modality, "files": len(chosen), "bands": [s.as_dict() for s in stats]}


def format_stats(result: dict[str, Any]) -> str:
    """A printable table of :func:`compute_stats`' result."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.6g}"

    header = f"{'band':<12}{'count':>14}{'mean':>14}{'std':>14}{'min':>14}{'max':>14}{'valid':>9}"
    lines = [f"modality {result['modality'] or 'all'}: {result['files']} files", header, "-" * len(header)]
    for band in result["bands"]:
        lines.append(
            f"{band['band']:<12}{band['count']:>14,}{number(band['mean']):>14}{number(band['std']):>14}"
            f"{number(band['min']):>14}{number(band['max']):>14}{band['valid_fraction']:>9.1%}"
        )
    return "\n".join(lines)


def _windows(entry: ManifestEntry, tile: int) -> Iterator[tuple[tuple[str | None, ...], Raster]]:
    """(band names, window) over a manifest row, window by window: a file's data bands as stored; a product row's
    bands (:func:`~skysense.data.manifest.products.product_of`) on the product's own grid (its finest bands'),
    in the units it is read in (Sentinel-2 reflectance × 10⁴ with the product's offset applied; clouds masked)."""
    if entry.driver in PRODUCT_DRIVERS:
        product = product_of(entry)
        grid = product.grid()
        for row in range(0, grid.height, tile):
            for col in range(0, grid.width, tile):
                window = Grid(grid.crs, grid.transform @ Affine.translation(col, row),
                              min(tile, grid.height - row), min(tile, grid.width - col))  # fmt: skip
                yield tuple(entry.band_names), product.read(window, list(entry.band_names))
        return
    with RasterFile(entry.path) as raster_file:  # opened once, read window by window
        info = raster_file.info
        names = tuple(info.descriptions[b - 1] for b in info.data_bands)
        cloud = cloud_band(info) if entry.modality == "s2" else None  # a stack's own SCL/QA60/Fmask, as it is read
        for window in iter_windows(info, tile):
            raster = raster_file.read(info.data_bands, window)
            if cloud is not None:
                raster = mask_clouds(raster, raster_file.read([cloud[0]], window), *cloud[1:])
            yield names, raster
