"""Rasters inside a zip archive as downloaded (ASF HyP3's RTC products, a zipped folder of GeoTIFFs), read in place
through GDAL's ``/vsizip/`` — nothing is extracted.

A member is addressed as ``/vsizip/{/abs/path/x.zip}/folder/member.tif`` (the braces keep the archive's own path
whole); :func:`on_disk` maps such a path back to the archive for fingerprints and messages. Sentinel-2 ``.SAFE.zip``
products have their own reader (:mod:`skysense.data.products.sentinel2`).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

from skysense.data.raster.litter import is_litter
from skysense.errors import InputError

_VSIZIP = re.compile(r"^/vsizip/\{(?P<archive>[^}]+)\}/")


def zip_rasters(archive: Path, suffixes: Sequence[str]) -> list[Path]:
    """The members of ``archive`` whose suffix is one of ``suffixes`` (any case), as ``/vsizip/`` paths, sorted;
    other members are named in one warning line.

    Raises:
        InputError: the zip cannot be read, or holds no raster.
    """
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [m for m in opened.namelist() if not m.endswith("/") and not is_litter(m)]
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{archive}: not a readable zip ({err}); download it again") from None
    rasters = sorted(m for m in members if Path(m).suffix.lower() in suffixes)
    if not rasters:
        raise InputError(
            f"{archive}: a zip without rasters ({', '.join(suffixes)}); give the zip of the product's GeoTIFFs"
        )
    skipped = [Path(m).name for m in members if m not in rasters]
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"{archive}: skipped {len(skipped)} members that are not rasters: {shown}", stacklevel=2)
    return [Path(f"/vsizip/{{{archive.resolve()}}}/{m}") for m in rasters]


def on_disk(path: Path) -> Path:
    """The file on disk that holds ``path``: the archive for a ``/vsizip/{…}/member``, else ``path`` itself."""
    match = _VSIZIP.match(str(path))
    return Path(match["archive"]) if match else path
