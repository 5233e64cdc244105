"""Scene outputs as Zarr data cubes (``--output emb.zarr``), in xarray/rioxarray's conventions.

The run itself is the same as for a GeoTIFF: chunk rows go into durable row files, which are what a ``--resume``
continues from. Publishing reads them through their VRT with rioxarray (one dask chunk per block, read and
compressed on every core) and writes a Zarr store with xarray, in the scratch folder; the store is made durable and
then renamed onto the output. No code here encodes Zarr or CRS metadata itself: xarray writes the store, rioxarray
the grid mapping.

What a reader gets back with ``xarray.open_zarr(path)`` (then ``.rio.crs``, ``.rio.transform()``):

- one data variable named after the output kind: ``embedding`` or ``probabilities`` (``band``, ``y``, ``x``), or
  ``classes`` (``y``, ``x``, uint8, with CF's ``flag_values``/``flag_meanings`` when the classes have names);
- coordinates ``x``/``y`` (pixel centres in CRS units), ``band`` (1…C, or the class names of probabilities) and
  ``spatial_ref`` (CRS as WKT and the GeoTransform: rioxarray's and GDAL's grid mapping);
- ``_FillValue`` nodata: NaN for floats, 255 for class maps (xarray masks them on reading);
- the run's tags (model, inputs, resolution, tiling) as attributes.

Zarr format 2 with consolidated metadata: the format GDAL, QGIS and every xarray version read; chunks of one output
block (``block`` × ``block`` pixels) and up to 16 MiB (e.g. 16 float32 bands of 512²).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from skysense.errors import UsageError
from skysense.files import fsync_path

ZARR_SUFFIX = ".zarr"
CHUNK_BYTES = 16 * 2**20
_MARKERS = (".zgroup", ".zmetadata", "zarr.json")  # what a Zarr store's root holds (formats 2 and 3)


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` names a Zarr output (by its ``.zarr`` suffix)."""
    return Path(path).suffix.lower() == ZARR_SUFFIX


def check_zarr_output(output: Path) -> None:
    """Refuse a Zarr output that cannot be written: missing libraries, or an existing folder that is not a Zarr store
    (it would be replaced whole).

    Raises:
        UsageError: naming the option and what to do.
    """
    missing = []
    for module in ("zarr", "xarray", "rioxarray", "dask"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UsageError(
            f"--output {output}: a Zarr output needs {', '.join(missing)}; install them with "
            "`pip install 'skysense[zarr]'`, or give a .tif output"
        )
    if output.exists() and not (output.is_dir() and any((output / marker).exists() for marker in _MARKERS)):
        raise UsageError(
            f"--output {output}: exists and is not a Zarr store; it would be replaced whole: choose another name"
        )


def publish_zarr(
    vrt: Path,
    staging: Path,
    kind: str,
    class_names: list[str],
    tags: dict[str, str],
    block: int,
    half: bool,
) -> None:
    """Write the mosaic of row files ``vrt`` as a Zarr store at ``staging`` (removed first), flushed to the disk.

    Args:
        vrt: the VRT over the finished row files (the output grid, CRS, nodata).
        staging: where the store is built (inside the scratch folder).
        kind: "classes", "probabilities" or "embedding": the data variable's name.
        class_names: class names (for probabilities: the band coordinate; for classes: ``flag_meanings``).
        tags: attributes of the data set and the variable.
        block: spatial chunk side.
        half: store float16 (``--dtype float16``).
    """
    import dask
    import numpy as np
    import rioxarray

    shutil.rmtree(staging, ignore_errors=True)
    itemsize = 1 if kind == "classes" else 2 if half else 4
    array = rioxarray.open_rasterio(vrt, chunks={"band": 1, "y": block, "x": block}, mask_and_scale=False)
    count = array.sizes["band"]
    band_chunk = max(1, min(count, CHUNK_BYTES // (block * block * itemsize)))
    array = array.chunk({"band": band_chunk})  # one dask chunk per Zarr chunk: each is read and written once
    fill = array.attrs.get("_FillValue", np.nan)
    attrs: dict[str, Any] = {key: value for key, value in array.attrs.items() if key.upper() == key}  # the tags
    attrs.update(tags)
    attrs["long_name"] = {"classes": "class", "probabilities": "class probability", "embedding": "embedding"}[kind]
    if kind == "classes":
        array = array.squeeze("band", drop=True)
        if class_names:
            attrs["flag_values"] = list(range(len(class_names)))
            attrs["flag_meanings"] = " ".join(name.replace(" ", "_") for name in class_names)
    else:
        if kind == "probabilities" and len(class_names) == count:
            array = array.assign_coords(band=list(class_names))
        if half:
            array = array.astype("float16")
    grid_mapping = array.encoding.get("grid_mapping", "spatial_ref")
    array.attrs = attrs
    array.encoding = {
        "chunks": tuple(band_chunk if dim == "band" else min(block, array.sizes[dim]) for dim in array.dims),
        "_FillValue": fill,
        "grid_mapping": grid_mapping,
        # also a coordinate of the variable, so that xarray.open_zarr's default decoding keeps the CRS with it (a
        # grid mapping alone becomes a coordinate only with decode_coords="all")
        "coordinates": grid_mapping,
    }
    dataset = array.to_dataset(name=kind)
    dataset.attrs.update(tags)
    with dask.config.set(scheduler="threads"):
        dataset.to_zarr(staging, mode="w", zarr_format=2, consolidated=True)
    _fsync_tree(staging)


def _fsync_tree(root: Path) -> None:
    """fsync every file of ``root``, then every folder (innermost first), so that a rename of ``root`` publishes
    complete contents."""
    folders = []
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        folders.append(Path(folder))
    for folder in reversed(folders):
        fsync_path(folder)


def replace_tree(staging: Path, final: Path, replaced: Path) -> None:
    """Rename the finished store ``staging`` onto ``final``. An existing ``final`` (a Zarr store) is first renamed to
    ``replaced`` (inside the scratch folder, removed with it): a crash in between leaves no output and the run's
    scratch folder, from which ``--resume`` publishes again."""
    if final.exists():
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(staging, final)
    fsync_path(final.parent)
