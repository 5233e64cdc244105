"""Files operating systems leave beside data, never data themselves: macOS's AppleDouble ``._<name>`` files (4 KB of
resource fork, written next to every file copied from a Mac onto an exFAT, FAT or SMB drive, and into zips Finder
makes, under ``__MACOSX/``), ``.DS_Store``, and Windows' ``Thumbs.db`` and ``desktop.ini``.

An AppleDouble file carries its original's name behind ``._``, so it matches every pattern the original does
(``._T30SYH_20220917T105619_B02.jp2``, ``._MTD_MSIL1C.xml``): every listing of a product or a folder drops them
first, or a valid product is refused for a file it never held.
"""

from __future__ import annotations

from pathlib import Path

_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


def is_litter(path: str | Path) -> bool:
    """Whether ``path`` (a path, a GDAL path or a zip member name) is such a file or lies under ``__MACOSX/``."""
    parts = str(path).replace("\\", "/").rstrip("/").split("/")
    name = parts[-1]
    return name.startswith("._") or name.lower() in _NAMES or "__MACOSX" in parts
