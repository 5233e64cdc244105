"""Crash-consistent file writes, shared by every layer that writes a file a later run relies on (a manifest, a
scene run's state, its carried strips and chunk rows): under a temporary name in the same folder, flushed and
fsynced, renamed into place, the folder fsynced. After a crash or a failed write (a full disk) the file holds its
old content or the new one, never part of it, and no temporary file is left.

Written by hand: the standard library has the pieces (``os.fsync``, ``os.replace``) but not their order, and no
library we use provides it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_path(path: str | Path) -> None:
    """Flush a closed file's data to the disk, or make a rename or deletion in a folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(temporary: str | Path, final: str | Path) -> None:
    """fsync ``temporary`` (a closed, complete file), rename it onto ``final`` and fsync the folder."""
    fsync_path(temporary)
    os.replace(temporary, final)
    fsync_path(Path(final).parent)


def write_durably(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` with ``write(handle)`` (a binary handle) so that it holds either its old content or the new
    one: under a temporary name (``.NAME.PID.tmp`` beside it), flushed and fsynced, renamed, the folder fsynced.
    The temporary file is removed when anything fails, and the error (an ``OSError`` for a full disk) is raised."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_path(path.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
