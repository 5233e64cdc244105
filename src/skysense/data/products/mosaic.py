"""Sentinel-2 products (or STAC Items) of one date from several MGRS tiles, read as one frame.

A place near a tile edge, or a scene larger than a tile, is covered by two or more tiles of the same orbit: ESA
delivers them as separate products of the same sensing date (often in different UTM zones). A series of such
products is grouped by tile and each date's tiles are read together (:func:`mosaic_by_date`): onto the target grid
every tile is reprojected and each pixel is taken from the tile that is valid there and whose footprint it lies
deepest inside — clouds, nodata and the outside of a tile are not valid, so one tile fills what the other lacks, and
in the overlap the pixel comes from the tile it is farther from the edge of, where resampling (a 20 m or 60 m band
onto 10 m, another UTM zone) has neighbours on every side.

Products of one tile twice on one date (a product delivered twice, or reprocessed) are not a mosaic: they are left
as they are, for the series' duplicate-date check to refuse naming both.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

from skysense.containers import Grid
from skysense.data.products.sentinel2 import S2Product
from skysense.data.products.stac import StacItem
from skysense.data.raster import Raster


@dataclass(frozen=True)
class S2Mosaic:
    """Sentinel-2 products (or STAC Items) of one date and level from different tiles, read as one acquisition.

    Attributes:
        parts: the products, in tile-name order.
    """

    parts: tuple[S2Product | StacItem, ...]

    @property
    def date(self) -> dt.date:
        return self.parts[0].date

    @property
    def level(self) -> str:
        return self.parts[0].level

    @property
    def sensor(self) -> str:
        return self.parts[0].sensor

    @property
    def tile(self) -> str:
        return "+".join(p.tile for p in self.parts)

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.parts)

    @property
    def source(self) -> Path:
        """The first tile's product (named in messages with :attr:`tile`)."""
        return self.parts[0].source

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(f for p in self.parts for f in p.files)

    @property
    def rasters(self) -> list[str]:
        return [r for p in self.parts for r in p.rasters]

    @property
    def assumptions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a for p in self.parts for a in p.assumptions))

    @functools.cached_property
    def footprints(self) -> tuple[Grid, ...]:
        """Each tile's 10 m grid, found once (a product's grid opens every band file; :meth:`read` runs per tile
        of a scene)."""
        return tuple(part.grid() for part in self.parts)

    def grid(self) -> Grid:
        """The union of the tiles on the first tile's 10 m grid (its CRS, pixel size and pixel origin)."""
        first = self.footprints[0]
        left, bottom, right, top = first.bounds
        for other in self.footprints[1:]:
            bounds = other.bounds if other.crs == first.crs else transform_bounds(other.crs, first.crs, *other.bounds)
            left, bottom = min(left, bounds[0]), min(bottom, bounds[1])
            right, top = max(right, bounds[2]), max(top, bounds[3])
        res_x, res_y = first.res
        origin_x, origin_y = first.transform.c, first.transform.f
        col0 = math.floor((left - origin_x) / res_x + 1e-6)
        row0 = math.floor((origin_y - top) / res_y + 1e-6)
        col1 = math.ceil((right - origin_x) / res_x - 1e-6)
        row1 = math.ceil((origin_y - bottom) / res_y - 1e-6)
        transform = first.transform @ Affine.translation(col0, row0)
        return Grid(first.crs, transform, row1 - row0, col1 - col0)

    def read(self, grid: Grid, bands: Sequence[str], resampling: str = "bilinear") -> Raster:
        """``bands`` onto ``grid``, each pixel from the tile valid there (every band valid) whose footprint it lies
        deepest inside — away from a tile's edge, where resampling has neighbours on one side only —; NaN where no
        tile is valid.

        Returns:
            :class:`~skysense.data.raster.Raster`: values (C, H, W) float32, valid (C, H, W) bool.
        """
        best_depth = np.full(grid.shape, -np.inf)  # -inf: no valid tile yet
        values = valid = names = None
        for part, footprint in zip(self.parts, self.footprints, strict=True):
            raster = part.read(grid, bands, resampling)
            depth = np.where(raster.valid.all(axis=0), _depth(footprint, grid), -np.inf)  # invalid: never taken
            take = depth > best_depth  # (H, W): this tile is valid here and deeper inside than the ones before
            if values is None:
                values, valid, names = raster.values.copy(), raster.valid.copy(), raster.band_names
            values[:, take] = raster.values[:, take]
            valid[:, take] = raster.valid[:, take]
            best_depth = np.maximum(best_depth, depth)
        return Raster(values, valid, names, grid.crs, grid.transform, self.source)


def _depth(footprint: Grid, grid: Grid) -> np.ndarray:
    """(H, W) float: how many ``grid`` pixels each pixel centre of ``grid`` lies inside ``footprint``'s bounds
    (negative outside), the bounds taken in ``grid``'s CRS. Only the footprint's edges inside ``grid`` count: beyond
    an edge on or outside the grid's border there is no other tile to prefer."""
    bounds = footprint.bounds
    if footprint.crs != grid.crs:
        bounds = transform_bounds(footprint.crs, grid.crs, *bounds)
    inverse = ~grid.transform
    (c0, r0), (c1, r1) = inverse * (bounds[0], bounds[3]), inverse * (bounds[2], bounds[1])
    top, bottom, left, right = min(r0, r1), max(r0, r1), min(c0, c1), max(c0, c1)
    rows = np.arange(grid.height, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(grid.width, dtype=np.float64)[None, :] + 0.5
    depth = np.full(grid.shape, np.inf)
    for inside, distance in (
        (top > 0.5, rows - top),
        (bottom < grid.height - 0.5, bottom - rows),
        (left > 0.5, cols - left),
        (right < grid.width - 0.5, right - cols),
    ):
        if inside:
            depth = np.minimum(depth, distance)
    outside = (rows < top) | (rows > bottom) | (cols < left) | (cols > right)
    return np.where(outside, -1.0, depth)


def _tiled(item: object) -> bool:
    """A Sentinel-2 product, or a Sentinel-2 STAC Item that names its tile."""
    return isinstance(item, S2Product) or (isinstance(item, StacItem) and bool(item.tile) and bool(item.level))


def mosaic_by_date(items: Sequence) -> list:
    """Sentinel-2 products (and STAC Items that name their tile) of one date, level and several tiles → one
    :class:`S2Mosaic`; everything else (files, other products, one tile twice on a date) passes through, in the
    given order."""
    groups: dict[tuple[dt.date, str], list[S2Product | StacItem]] = {}
    for item in items:
        if _tiled(item):
            groups.setdefault((item.date, item.level), []).append(item)
    merged: dict[tuple[dt.date, str], S2Mosaic] = {}
    for key, products in groups.items():
        tiles = [p.tile for p in products]
        if len(products) > 1 and len(set(tiles)) == len(tiles):
            merged[key] = S2Mosaic(tuple(sorted(products, key=lambda p: p.tile)))
    out, placed = [], set()
    for item in items:
        key = (item.date, item.level) if _tiled(item) else None
        if key in merged:
            if key not in placed:
                out.append(merged[key])
                placed.add(key)
            continue
        out.append(item)
    return out
