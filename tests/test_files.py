"""skysense.files: a durable write leaves the old content or the new one, and no temporary file, also when the
disk is full (the file-size limit stands in for it, in a child process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from skysense.data.manifest.schema import write_atomically
from skysense.files import write_durably

_FULL_DISK = """
import resource, signal, sys
from skysense.files import write_durably
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_durably(sys.argv[1], lambda handle: handle.write(b"new" * 10_000))
except OSError as err:
    print(err.errno)
"""


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_durably(target, lambda handle: handle.write(b"old"))
    result = subprocess.run([sys.executable, "-c", _FULL_DISK, str(target)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "27", result.stderr  # EFBIG, raised to the caller
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_text_files_are_written_whole_with_their_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "manifest.csv"
    write_atomically(target, "path,modality\r\nå.tif,hr\n")
    assert target.read_bytes() == "path,modality\r\nå.tif,hr\n".encode()  # no newline translation, UTF-8
    assert [p.name for p in target.parent.iterdir()] == ["manifest.csv"]
