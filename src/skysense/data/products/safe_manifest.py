"""The checksums a SAFE product carries for its own files (``manifest.safe``), checked against the files.

A JPEG 2000 band whose bytes were damaged in place (a bad sector, a flipped bit in a copy) keeps its size and its
markers, so GDAL decodes it without an error into wrong pixels: only the product's checksums tell. ESA's
``manifest.safe`` (an XFDU) lists every file of the product with its size and checksum::

    <dataObject ID="IMG_DATA_Band_60m_1_Tile1_Data">
      <byteStream mimeType="application/octet-stream" size="3029379">
        <fileLocation locatorType="URL" href="./GRANULE/L1C_…/IMG_DATA/T29SPC_20190701T110621_B01.jp2"/>
        <checksum checksumName="MD5">d300a617c7bc937b6c7e48309c88eaf7</checksum>
      </byteStream>
    </dataObject>

Hashing reads every byte of the product, so it is done on request (``skysense data info``), not on every read.
Written here because no library at hand parses XFDU manifests (sentinelsat verifies the download's own checksum,
not the files of an unpacked product).
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from skysense.errors import InputError

_ALGORITHMS = {"MD5": "md5", "SHA-256": "sha256", "SHA256": "sha256", "SHA3-256": "sha3_256", "SHA3_256": "sha3_256"}
_CHUNK = 1 << 22


@dataclass(frozen=True)
class ManifestCheck:
    """What :func:`verify_manifest` checked: ``files`` files by ``algorithm`` (e.g. "MD5")."""

    files: int
    algorithm: str


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _entries(text: str, where: str) -> list[tuple[str, int | None, str, str]]:
    """(relative path, size or None, algorithm, digest) of every data object of a manifest."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise InputError(f"{where}: not a readable SAFE manifest ({err}); re-download the product") from None
    entries = []
    for stream in (e for e in root.iter() if _local(e.tag) == "byteStream"):
        location = next((e for e in stream if _local(e.tag) == "fileLocation"), None)
        checksum = next((e for e in stream if _local(e.tag) == "checksum"), None)
        if location is None or checksum is None or not (checksum.text or "").strip():
            continue
        algorithm = (checksum.get("checksumName") or "").upper()
        if algorithm not in _ALGORITHMS:
            continue
        size = stream.get("size")
        href = location.get("href", "").removeprefix("./")
        entries.append((href, int(size) if size and size.isdigit() else None, algorithm, checksum.text.strip().lower()))
    return entries


def _digest(stream, algorithm: str) -> tuple[int, str]:
    hasher = hashlib.new(_ALGORITHMS[algorithm])
    size = 0
    while chunk := stream.read(_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher.hexdigest()


def has_manifest(product: Path) -> bool:
    """Whether ``product`` (a ``.SAFE`` folder or its zip) holds a ``manifest.safe``."""
    if product.is_dir():
        return (product / "manifest.safe").is_file()
    try:
        with zipfile.ZipFile(product) as archive:
            return any(name.rsplit("/", 1)[-1] == "manifest.safe" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def verify_manifest(product: Path) -> ManifestCheck:
    """Check every file ``product``'s ``manifest.safe`` lists (a ``.SAFE`` folder, or its zip, read in place)
    against its size and checksum.

    Raises:
        InputError: naming the files that are missing or differ (the first five, and a count), and what to do.
    """
    product = Path(product)
    problems: list[str] = []
    if product.is_dir():
        manifest = product / "manifest.safe"
        entries = _entries(manifest.read_text(encoding="utf-8", errors="replace"), str(manifest))
        for href, size, algorithm, digest in entries:
            path = product / href
            if not path.is_file():
                problems.append(f"{href} is missing")
                continue
            with path.open("rb") as stream:
                problems += _compare(href, (size, digest), _digest(stream, algorithm), algorithm)
    else:
        try:
            with zipfile.ZipFile(product) as archive:
                name = next(n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "manifest.safe")
                top = name[: -len("manifest.safe")]
                entries = _entries(archive.read(name).decode("utf-8", "replace"), f"{product}/{name}")
                members = set(archive.namelist())
                for href, size, algorithm, digest in entries:
                    if top + href not in members:
                        problems.append(f"{href} is missing")
                        continue
                    try:
                        with archive.open(top + href) as stream:
                            got = _digest(stream, algorithm)
                    except (zipfile.BadZipFile, zlib.error) as err:
                        problems.append(f"{href} cannot be read from the zip ({err})")
                        continue
                    problems += _compare(href, (size, digest), got, algorithm)
        except (zipfile.BadZipFile, OSError) as err:
            raise InputError(f"{product}: not a readable zip ({err}); re-download the product") from None
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputError(
            f"{product}: {len(problems)} of its {len(entries)} files do not match its manifest.safe ({shown}): the "
            "product is damaged; re-download it"
        )
    algorithms = sorted({algorithm for _, _, algorithm, _ in entries})
    return ManifestCheck(len(entries), "/".join(algorithms) or "none")


def _compare(href: str, expected: tuple[int | None, str], got: tuple[int, str], algorithm: str) -> list[str]:
    size, digest = expected
    if size is not None and got[0] != size:
        return [f"{href} has {got[0]} bytes, not {size}"]
    if got[1] != digest:
        return [f"{href}: its {algorithm} differs"]
    return []
