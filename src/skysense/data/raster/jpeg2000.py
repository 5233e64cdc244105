"""Whether a JPEG 2000 file holds all of its codestream, checked from its markers without decoding a pixel.

A truncated download keeps its header, so GDAL opens it; only decoding its last tile fails. Decoding is what made
the start-of-run check of JPEG 2000 bands costly (about 5 ms a band even at the coarsest resolution level: 0.2 of the
0.5 s a three-product 510² SAFE scene took to start, 1.1 s of a 1932² one). The file's own structure says whether
every byte it announces is there: the JP2 boxes (ISO/IEC 15444-1 Annex I) give each box's length, and in the
codestream (Annex A) each tile-part's ``SOT`` marker gives the length of the tile-part (``Psot``), the tile it belongs
to (``Isot``) and how many tile-parts that tile has (``TNsot``); ``SIZ`` gives the number of tiles. Walking them
reads 12 bytes per tile-part.

Written by hand because neither GDAL nor rasterio exposes the check (GDAL parses these markers only to decode), and
glymur, which parses them too, needs a file name (a member of a ``.SAFE.zip`` has none) and would be one more
dependency for forty lines.

- :func:`codestream_gap` — what is missing from a JPEG 2000 file (``.jp2`` or a bare ``.j2k`` codestream), or None.
- :func:`readable_here` — whether :func:`codestream_gap` can read a path's bytes (a file, a member of a zip).
"""

from __future__ import annotations

import math
import re
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # the JP2 signature box
_SOC, _SIZ, _SOT, _EOC = 0xFF4F, 0xFF51, 0xFF90, 0xFFD9
_VSIZIP = re.compile(r"^/vsizip/\{(?P<archive>[^}]+)\}/(?P<member>.+)$")


def readable_here(path: Path | str) -> bool:
    """Whether :func:`codestream_gap` reads ``path``'s bytes itself: a file on disk, or a member of a local zip as
    ``/vsizip/{archive}/member`` (not a URL or another GDAL virtual file)."""
    text = str(path)
    return bool(_VSIZIP.match(text)) or (not text.startswith("/vsi") and Path(text).is_file())


@contextmanager
def _opened(path: Path | str) -> Iterator[tuple[BinaryIO, int] | None]:
    """The file's bytes and size: a file on disk, or a member of a zip addressed as ``/vsizip/{archive}/member``;
    None for anything else (a URL, a GDAL connection string), which the caller checks by decoding instead."""
    text = str(path)
    match = _VSIZIP.match(text)
    if match:
        with zipfile.ZipFile(match["archive"]) as archive, archive.open(match["member"]) as member:
            yield member, archive.getinfo(match["member"]).file_size
    elif not readable_here(text):
        yield None
    else:
        with open(text, "rb") as file:
            yield file, Path(text).stat().st_size


def _codestream_bounds(file: BinaryIO, size: int) -> tuple[int, int] | str:
    """(start, end) of the codestream in a JP2 file (its ``jp2c`` box) or a bare codestream; or what is missing."""
    file.seek(0)
    head = file.read(12)
    if head[:2] == b"\xff\x4f":
        return 0, size
    if head != _SIGNATURE:
        return "it is neither a JP2 file nor a JPEG 2000 codestream"
    position, codestream = 0, None
    while position < size:
        file.seek(position)
        header = file.read(8)
        if len(header) < 8:
            return f"its box at byte {position} is cut after {len(header)} of its 8 header bytes"
        length, kind = struct.unpack(">I4s", header)
        start = position + 8
        if length == 1:  # a 64-bit length follows
            extended = file.read(8)
            if len(extended) < 8:
                return f"its box at byte {position} is cut inside its length"
            (length,) = struct.unpack(">Q", extended)
            start += 8
        elif length == 0:  # the last box: up to the end of the file
            length = size - position
        if length < start - position:
            return f"its box at byte {position} declares {length} bytes, fewer than its own header"
        if position + length > size:
            name, left = kind.decode("latin-1"), size - position
            return (
                f"its '{name}' box at byte {position} declares {length} bytes but the file ends {left} bytes after it"
            )
        if kind == b"jp2c" and codestream is None:
            codestream = (start, position + length)
        position += length
    return codestream if codestream is not None else "it has no codestream box ('jp2c')"


def codestream_gap(path: Path | str) -> str | None:
    """What is missing from a JPEG 2000 file, in words ("its tile-part at byte … declares … bytes but …"), or None
    when every box, tile and tile-part it announces is present (the codestream's end marker ``EOC`` is not required
    where the codestream's box says it ends there: some writers leave it out).

    Not checked: the entropy-coded bytes themselves (a corrupt, not truncated, tile fails when it is decoded).

    Args:
        path: a ``.jp2``/``.j2k`` file, or a member of a zip as ``/vsizip/{archive}/member``.

    Returns:
        None also when ``path`` is neither (a URL): check it by decoding.

    Raises:
        OSError: the file cannot be read.
    """
    with _opened(path) as opened:
        if opened is None:
            return None
        file, size = opened
        bounds = _codestream_bounds(file, size)
        if isinstance(bounds, str):
            return bounds
        start, end = bounds

        def marker(at: int, count: int) -> bytes:
            file.seek(at)
            return file.read(count) if at + count <= end else b""

        if marker(start, 2) != b"\xff\x4f":
            return f"its codestream at byte {start} does not start with the SOC marker"
        position, tiles = start + 2, None
        while True:  # the main header: marker segments up to the first tile-part
            head = marker(position, 4)
            if len(head) < 4:
                return f"its codestream's main header is cut at byte {position} (the file has {size} bytes)"
            code, length = struct.unpack(">HH", head)
            if code == _SOT:
                break
            if code == _SIZ:
                siz = marker(position + 4, 34)  # Rsiz, then the image's and the tiles' sizes and offsets
                if len(siz) < 34:
                    return f"its codestream's SIZ marker at byte {position} is cut"
                _, width, height, x0, y0, tile_width, tile_height, tile_x0, tile_y0 = struct.unpack(">H8I", siz)
                if tile_width == 0 or tile_height == 0:
                    return f"its codestream's SIZ marker at byte {position} declares a tile of size 0"
                tiles = math.ceil((width - tile_x0) / tile_width) * math.ceil((height - tile_y0) / tile_height)
            position += 2 + length
        if tiles is None:
            return "its codestream has no SIZ marker"
        parts: dict[int, int] = {}  # tile → tile-parts seen
        announced: dict[int, int] = {}  # tile → its number of tile-parts, where a tile-part says it
        while True:
            # the end marker (EOC), or the end of a codestream whose box says it ends here (a writer that leaves EOC
            # out): the tiles counted below then say whether anything is missing
            if position == end or marker(position, 2) == b"\xff\xd9":
                break
            head = marker(position, 12)
            if len(head) < 12:
                return f"its codestream is cut at byte {end} inside a tile-part header; {len(parts)} of its {tiles} tiles start before it"
            code, _, tile, length, _, count = struct.unpack(">HHHIBB", head)
            if code != _SOT:
                return f"its codestream has no tile-part marker (SOT) at byte {position} where one should start"
            if tile >= tiles:
                return f"its codestream's tile-part at byte {position} names tile {tile} of {tiles}"
            parts[tile] = parts.get(tile, 0) + 1
            if count:
                announced[tile] = count
            if length == 0:  # the last tile-part: up to the EOC marker that ends the codestream
                if marker(end - 2, 2) != b"\xff\xd9":
                    return f"its last tile-part (tile {tile}) does not end with the end marker (EOC): the file is cut"
                break
            if position + length > end:
                return (
                    f"its tile-part at byte {position} (tile {tile}) declares {length} bytes but the codestream ends "
                    f"{end - position} bytes after it starts"
                )
            position += length
        missing = tiles - len(parts)
        if missing:
            return f"{missing} of its codestream's {tiles} tiles have no data"
        short = [tile for tile, count in announced.items() if parts[tile] < count]
        if short:
            return f"tile {short[0]} of its codestream has {parts[short[0]]} of its {announced[short[0]]} tile-parts"
        return None
