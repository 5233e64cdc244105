"""Product rows of a manifest: a Sentinel product as users download it is one row (one date of a series), not one
row per band file, and reads back as the product.

- **Sentinel-2** (``driver`` "Sentinel-2 product"): a ``.SAFE`` folder, a ``.SAFE.zip``, or a folder of per-band
  product files (a granule's ``IMG_DATA``); ``path`` is that folder or zip, the date picks the product when it
  holds several.
- **STAC Items** (``driver`` "STAC item"): every Item of the Item/ItemCollection JSONs under the folder whose band
  assets can be opened; ``path`` is the JSON, ``item`` the Item id. Their local asset files get no rows of their own.
- **Sentinel-1 pairs** (``driver`` "Sentinel-1 pair"): single-band files naming their polarisation (``vv.tif`` and
  ``vh.tif`` in one acquisition's folder, ``…-vv-….tiff``/``…-vh-….tiff``) of one date and one name but the
  polarisation, merged into one row; ``path`` is their folder when the files are named just by the polarisation, else
  the first file, and ``item`` lists the file names. A polarisation file without its partner keeps its own row,
  with a note.

:func:`product_of` turns a row back into the product (:class:`~skysense.data.products.sentinel2.S2Product`,
:class:`~skysense.data.products.sentinel1.S1Pair`, :class:`~skysense.data.products.stac.StacItem`), which
:func:`~skysense.data.series.read_time_series` reads like a file.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import replace
from pathlib import Path

from skysense.containers import Grid
from skysense.data.manifest.schema import (
    PRODUCT_DRIVER,
    S1_PAIR_DRIVER,
    STAC_DRIVER,
    ManifestEntry,
    _crs_string,
)
from skysense.data.products.sentinel1 import POLARISATIONS, S1Pair, acquisition_key, polarisation_named
from skysense.data.products.sentinel2 import S2Product
from skysense.data.products.stac import StacItem
from skysense.data.raster import raster_info
from skysense.data.raster.litter import is_litter
from skysense.errors import InputError

Product = S2Product | S1Pair | StacItem


def _row(path: Path, driver: str, grid: Grid, bands: tuple[str, ...], date: dt.date | None, modality: str,
         dtype: str, notes: str = "", item: str = "", nodata: float | None = None) -> ManifestEntry:  # fmt: skip
    left, bottom, right, top = grid.bounds
    return ManifestEntry(
        path=path, driver=driver, width=grid.width, height=grid.height, count=len(bands), dtype=dtype,
        crs=_crs_string(grid.crs), left=left, bottom=bottom, right=right, top=top, res_x=grid.res[0],
        res_y=grid.res[1], nodata=nodata, band_names=bands, date=date, modality=modality, notes=notes, item=item,
    )  # fmt: skip


def s2_entries(root: Path) -> tuple[list[ManifestEntry], set[Path]]:
    """One row per Sentinel-2 product under ``root``, and the files those rows cover."""
    from skysense.data.products.sentinel2 import band_file, files_under, find_s2_products, is_product_holder

    holders = sorted(p for p in root.rglob("*") if is_product_holder(p))
    holders = [p for p in holders if not any(h != p and h in p.parents for h in holders)]
    covered: set[Path] = set()
    for holder in holders:
        if holder.is_dir():
            covered |= set(files_under(holder))
        else:
            covered.add(holder)
    loose: dict[Path, None] = {}
    for found in sorted(p for p in root.rglob("*") if p.is_file() and band_file(p)):
        if found not in covered:  # the folder holding it (IMG_DATA or a scene folder, not R10m): one product folder
            folder = found.parent.parent if re.fullmatch(r"R\d0m", found.parent.name) else found.parent
            loose.setdefault(folder, None)
    entries = []
    for holder in [*holders, *loose]:
        for product in find_s2_products(holder):
            entries.append(_row(holder, PRODUCT_DRIVER, product.grid(), tuple(product.bands), product.date, "s2",
                                "uint16", "; ".join(product.assumptions), nodata=0.0))  # fmt: skip
            covered |= {Path(p) for p in product.files}
    return entries, covered


def stac_entries(root: Path, covered: set[Path]) -> tuple[list[ManifestEntry], set[Path], dict[Path, str]]:
    """One row per STAC Item of the JSONs under ``root`` (JSONs that are not STAC are not rasters: left alone).

    Returns:
        (rows, the files they cover, JSON → problem for Items whose assets cannot be opened).
    """
    from skysense.data.products.stac import read_stac

    entries: list[ManifestEntry] = []
    unreadable: dict[Path, str] = {}
    new_cover: set[Path] = set()
    resolved: set[Path] | None = None  # the covered files, resolved (only for Items of Zarr products)
    for source in sorted(p for p in root.rglob("*.json") if p.is_file() and p not in covered and not is_litter(p)):
        try:
            items = read_stac(source)
        except InputError:
            continue  # not a STAC Item or ItemCollection
        for item in items:
            if isinstance(item, S2Product):  # an Item of an EOPF Zarr product: one row for the product, not two
                if resolved is None:
                    resolved = {p.resolve() for p in covered}
                if {Path(f).resolve() for f in item.files} <= resolved:
                    continue
            try:
                grid = item.grid()
                first = next(iter(item.bands.values()))  # a BandAsset, or an EOPF Zarr product's band (a path)
                dtype = raster_info(first if isinstance(first, str) else first.path).dtypes[0]
            except (InputError, FileNotFoundError) as err:
                unreadable[source] = f"Item {item.name}: {err}"
                continue
            bands = tuple(item.bands)
            modality = "s1" if set(bands) & set(POLARISATIONS) else "s2"
            entries.append(_row(source, STAC_DRIVER, grid, bands, item.date, modality, dtype,
                                "; ".join(item.assumptions), item=item.name))  # fmt: skip
            new_cover |= {Path(f) for f in item.files}
    return entries, new_cover, unreadable


def pair_polarisations(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    """Merge the single-band Sentinel-1 rows of one acquisition (one date, one name but the polarisation, one folder)
    into one "Sentinel-1 pair" row; other rows pass through. A polarisation file without its partner keeps its row,
    with a note."""
    groups: dict[tuple, list[tuple[str, ManifestEntry]]] = {}
    out: list[ManifestEntry] = []
    for entry in entries:
        path = Path(entry.path)
        polarisation = None
        if entry.modality == "s1" and entry.count == 1 and entry.date is not None and entry.driver not in (
            PRODUCT_DRIVER, S1_PAIR_DRIVER, STAC_DRIVER
        ):  # fmt: skip
            polarisation = polarisation_named(entry.band_names[0] if entry.band_names else None, path)  # no reopening
        if polarisation is None:
            out.append(entry)
            continue
        groups.setdefault(acquisition_key(path, entry.date), []).append((polarisation, entry))
    for (_, folder, _, _), members in groups.items():
        polarisations = [p for p, _ in members]
        if len(members) == 1 or len(set(polarisations)) != len(polarisations):
            note = (
                "the only polarisation file of its acquisition; give its partner (VV and VH) with the same name but "
                "the polarisation"
                if len(members) == 1
                else "the same polarisation twice for one acquisition"
            )
            out += [replace(e, notes="; ".join(filter(None, [e.notes, note]))) for _, e in members]
            continue
        members.sort(key=lambda m: POLARISATIONS.index(m[0]))
        first = members[0][1]
        plain = {Path(e.path).stem.lower() for _, e in members} <= {p.lower() for p in POLARISATIONS}
        names = "|".join(Path(e.path).name for _, e in members)
        out.append(replace(first, path=folder if plain else first.path, driver=S1_PAIR_DRIVER,
                           count=len(members), band_names=tuple(p for p, _ in members), item=names))  # fmt: skip
    return out


@functools.lru_cache(maxsize=256)
def _s2_products_at(path: str, mtime_ns: int) -> tuple[S2Product, ...]:
    """Products of a Sentinel-2 path, parsed once per path and modification time (not at every sample)."""
    from skysense.data.products.sentinel2 import find_s2_products

    return tuple(find_s2_products(path))


@functools.lru_cache(maxsize=256)
def _stac_items_at(path: str, mtime_ns: int) -> tuple[StacItem | S2Product, ...]:
    from skysense.data.products.stac import read_stac

    return tuple(read_stac(path))


def product_of(entry: ManifestEntry) -> Product:
    """The product a product row stands for.

    Raises:
        InputError: the product is no longer there (naming it: index the folder again).
    """
    path = Path(entry.path)
    gone = f"{entry.path}: no {entry.driver} of {entry.date}{f' ({entry.item})' if entry.item else ''} any more"
    if entry.driver == S1_PAIR_DRIVER:
        folder = path if path.is_dir() else path.parent
        files = [folder / name for name in entry.item.split("|")]
        if not all(f.is_file() for f in files) or len(files) != len(entry.band_names) or entry.date is None:
            raise InputError(f"{gone}; index the folder again")
        return S1Pair(entry.date, dict(zip(entry.band_names, files, strict=True)), path)
    if not path.exists():
        raise InputError(f"{gone}; index the folder again")
    if entry.driver == STAC_DRIVER:
        found: tuple[Product, ...] = tuple(i for i in _stac_items_at(str(path), path.stat().st_mtime_ns)
                                           if i.name == entry.item)  # fmt: skip
    elif entry.driver == PRODUCT_DRIVER:
        found = tuple(p for p in _s2_products_at(str(path), path.stat().st_mtime_ns)
                      if entry.date is None or p.date == entry.date)  # fmt: skip
    else:
        raise InputError(f"{entry.path}: driver {entry.driver!r} is not a product; this row is a file")
    if not found:
        raise InputError(f"{gone}; index the folder again")
    return found[0]
