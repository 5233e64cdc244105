"""kill -9 during `skysense predict`, then `--resume`: the uninterrupted output, bit for bit, whatever the moment.

Issue 13, harm 1: a kill -9 then `--resume` on a mosaic of the real `cogeo.tif` gave exit 0 and a map whose first
rows were nodata, because the run state said a chunk row was done before the GeoTIFF writer had flushed it. Here a
real child process is killed with SIGKILL at moments chosen by watching its scratch folder (right after a chunk row
is recorded, in the middle of a row, right after a row file is renamed into place, during the final COG conversion)
and at random moments; each time the resumed run must publish exactly the bytes of an uninterrupted run, and the
killed run must leave either nothing at the output path or the complete, right output.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from skysense.cli import main
from skysense.inference.writer import scratch_path
from tests.reliability.scene_fixtures import mosaic_scene, read_all, segmentation_checkpoint, sha256, skysense_process

pytestmark = pytest.mark.slow


def _rows_done(scratch: Path) -> int:
    try:
        return json.loads((scratch / "state.json").read_text())["rows_done"]
    except (OSError, ValueError, KeyError):
        return -1


KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "right after the first chunk row is recorded": lambda s: _rows_done(s) >= 0,
    "in the middle of chunk row 2": lambda s: (s / "rows" / "row_00002.tif.tmp").exists(),
    "right after row file 1 is renamed into place": lambda s: (s / "rows" / "row_00001.tif").exists(),
    "during the final COG conversion": lambda s: (s / "output.tif").exists(),
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 1536² mosaic of the real cogeo.tif (3 chunk rows of 512 px at tile 256, overlap 64), a tiny segmentation
    checkpoint, and the uninterrupted output (per-class float32 probabilities: the strictest bit-for-bit check)."""
    folder = tmp_path_factory.mktemp("kill")
    image = mosaic_scene(folder / "scene.tif", side=1536)
    checkpoint = segmentation_checkpoint(folder / "seg.ckpt")
    reference = folder / "reference.tif"
    args = ["predict", "--checkpoint", str(checkpoint), "--hr", str(image), "--tile", "256", "--overlap", "64",
            "--chunk", "512", "--probabilities", "--no-progress"]  # fmt: skip
    assert main([*args, "--output", str(reference)]) == 0
    return {"args": args, "reference": reference, "bytes": sha256(reference), "values": read_all(reference)}


def _kill_when(args: list[str], output: Path, ready: Callable[[Path], bool], timeout: float = 120.0) -> bool:
    """Start the command, SIGKILL it as soon as ``ready(scratch)`` holds; True when it was killed (False: it
    finished first)."""
    process = skysense_process([*args, "--output", output])
    scratch = scratch_path(output)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if ready(scratch):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.002)
        assert process.poll() is not None, "the run neither reached the kill point nor finished"
        assert process.returncode == 0, process.stderr.read()
        return False
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def _check_resume(scene: dict, output: Path) -> None:
    """After a kill: the output path holds nothing or the right output; --resume then publishes it bit for bit and
    removes its scratch folder."""
    assert not output.exists() or sha256(output) == scene["bytes"]
    assert set(output.parent.iterdir()) <= {output, scratch_path(output)}  # nothing left beside them
    assert main([*scene["args"], "--output", str(output), "--resume"]) == 0
    assert sha256(output) == scene["bytes"]  # the same file, byte for byte
    assert np.array_equal(read_all(output), scene["values"], equal_nan=True)
    assert not scratch_path(output).exists()


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_resume_gives_the_uninterrupted_output(scene: dict, tmp_path: Path, point: str) -> None:
    output = tmp_path / "map.tif"
    assert _kill_when(scene["args"], output, KILL_POINTS[point]), f"the run finished before {point}"
    _check_resume(scene, output)


def test_kill_9_at_random_moments_then_resume(scene: dict, tmp_path: Path) -> None:
    """Three kills at random moments (seeded) after the run's scratch folder appears, each followed by --resume
    (so later kills can land in a resumed run too), then a final --resume."""
    rng = random.Random(13)
    output = tmp_path / "map.tif"
    for _ in range(3):
        delay = rng.uniform(0.0, 4.0)
        start: list[float] = []

        def ready(scratch: Path, delay: float = delay, start: list[float] = start) -> bool:
            if not start and scratch.exists():
                start.append(time.monotonic())
            return bool(start) and time.monotonic() - start[0] >= delay

        resume = ["--resume"] if scratch_path(output).exists() else []
        _kill_when([*scene["args"], *resume], output, ready)
        assert not output.exists() or sha256(output) == scene["bytes"]
    _check_resume(scene, output)
