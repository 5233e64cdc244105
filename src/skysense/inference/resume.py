"""What makes an interrupted scene prediction safe to resume: content fingerprints of its inputs, a run state that
is written atomically, and files that are on disk (fsync) before the state says they are.

The rules (kill -9 at any moment leaves either the right result or nothing wrong):

1. A file the state refers to is written under a temporary name, flushed and fsynced, then renamed into place, and
   its folder is fsynced (:func:`skysense.files.durable_replace`): after a crash it is either complete or absent.
2. The state (:class:`RunState`) is written the same way, and only after every file it lists is durable; files a
   later state no longer needs are deleted only after that state is durable.
3. The state records the run's settings and a fingerprint of every input file and of the checkpoint
   (:func:`file_fingerprint`): size, modification time and a SHA-256 of the whole file (files up to
   :data:`FULL_HASH_BYTES`) or of :data:`SAMPLES` evenly spaced 1 MiB pieces plus the first and last MiB (larger
   files). A resume whose inputs no longer match is refused, naming what changed (:func:`fingerprint_changes`).
   A file that was only touched (new modification time, same full hash) still matches; for a sampled hash a new
   modification time is refused too, since a change between the samples cannot be ruled out.

Written by hand because no library we use does crash-consistent, fingerprinted checkpointing of files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from skysense import files
from skysense.errors import OutputError

FULL_HASH_BYTES = 1 << 30  # files up to 1 GiB are hashed whole (about 0.5-1 s per GiB)
SAMPLES = 256  # pieces hashed in larger files
PIECE = 1 << 20
STATE_VERSION = 2


def write_durably(path: str | Path, write: Callable[[BinaryIO], object], what: str) -> None:
    """:func:`skysense.files.write_durably`, its failure an :class:`OutputError` naming ``path`` and ``what``.

    Raises:
        OutputError: the write failed (a full disk, a file-size limit, permissions).
    """
    try:
        files.write_durably(path, write)
    except OSError as err:
        raise OutputError.writing(Path(path), what, err) from err


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """{"size", "mtime_ns", "sha256", "hashed": "full" | "sampled"} of a file (see the module docstring)."""
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if stat.st_size <= FULL_HASH_BYTES:
            for piece in iter(lambda: handle.read(8 * PIECE), b""):
                digest.update(piece)
            hashed = "full"
        else:
            last = stat.st_size - PIECE
            offsets = [0, *(round(i * last / (SAMPLES + 1)) for i in range(1, SAMPLES + 1)), last]
            for offset in offsets:
                handle.seek(offset)
                digest.update(handle.read(PIECE))
            hashed = "sampled"
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest(), "hashed": hashed}


def fingerprint_files(files: Mapping[str, Sequence[Path]]) -> dict[str, list[dict[str, Any]]]:
    """{role: [{"path", **file_fingerprint}, ...]} for every file of every role ("hr", "s2", "s1", "checkpoint")."""
    return {
        role: [{"path": str(Path(p).resolve()), **file_fingerprint(p)} for p in paths] for role, paths in files.items()
    }


def fingerprint_changes(recorded: Mapping[str, list[dict]], current: Mapping[str, list[dict]]) -> list[str]:
    """What differs between two :func:`fingerprint_files` results, one phrase per difference (empty: they match)."""
    changes = []
    for role in sorted(set(recorded) | set(current)):
        old, new = recorded.get(role, []), current.get(role, [])
        old_paths, new_paths = [f["path"] for f in old], [f["path"] for f in new]
        if old_paths != new_paths:
            changes.append(f"the {role} files are not the same list ({old_paths} then, {new_paths} now)")
            continue
        for before, now in zip(old, new, strict=True):
            where = f"{role} file {now['path']}"
            if before["size"] != now["size"]:
                changes.append(f"{where} changed size ({before['size']} → {now['size']} bytes)")
            elif before["sha256"] != now["sha256"]:
                changes.append(f"{where} changed content (same size, different {before['hashed']} SHA-256)")
            elif before["mtime_ns"] != now["mtime_ns"] and now["hashed"] == "sampled":
                changes.append(f"{where} was modified (new modification time; too large to hash whole)")
    return changes


@dataclass
class RunState:
    """The resumable state of a scene prediction, kept in ``<scratch>/state.json``.

    Attributes:
        settings: everything that shapes the output (model, kind, tiling, grid, ...), JSON-ready.
        inputs: :func:`fingerprint_files` of the input files and the checkpoint.
        rows_done: the last chunk row whose output and carried strips are durable (-1: none).
        valid_pixels: valid output pixels written in rows ``0 … rows_done``.
        tiles_with_input: tiles with some valid input pixel in rows ``0 … rows_done``.
    """

    settings: dict[str, Any]
    inputs: dict[str, list[dict[str, Any]]]
    rows_done: int = -1
    valid_pixels: int = 0
    tiles_with_input: int = 0
    version: int = field(default=STATE_VERSION)

    @staticmethod
    def path(scratch: Path) -> Path:
        return scratch / "state.json"

    def save(self, scratch: Path) -> None:
        """Write atomically and durably (rule 2 of the module docstring)."""
        payload = {"version": self.version, "settings": self.settings, "inputs": self.inputs,
                   "rows_done": self.rows_done, "valid_pixels": self.valid_pixels,
                   "tiles_with_input": self.tiles_with_input}  # fmt: skip
        data = json.dumps(payload, indent=1).encode()
        write_durably(self.path(scratch), lambda handle: handle.write(data), "the run state")

    @classmethod
    def load(cls, scratch: Path) -> RunState | None:
        """The saved state, or None when there is none.

        Raises:
            ValueError: the state file is unreadable or from another version of skysense.
        """
        path = cls.path(scratch)
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text())
            if payload.get("version") != STATE_VERSION:
                raise ValueError(f"version {payload.get('version')}, expected {STATE_VERSION}")
            return cls(payload["settings"], payload["inputs"], int(payload["rows_done"]),
                       int(payload["valid_pixels"]), int(payload["tiles_with_input"]), STATE_VERSION)  # fmt: skip
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path}: not a resumable run state of this skysense version ({err}); run without --resume to "
                f"start over"
            ) from None
