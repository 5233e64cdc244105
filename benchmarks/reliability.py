"""What crash safety costs, and kill -9 + `--resume` on the scene of issue 13 (harm 1).

The scene is the issue's own: an HR mosaic of the real ``cogeo.tif`` (rasterio test data) of ``--size``² pixels,
mapped by `skysense predict` at tile 512, overlap 128, with the tiny HR segmentation checkpoint of
``benchmarks/scene.py``. Every run is a fresh process, as a user runs it.

Rows:

- ``reference``: the scene pipeline as it was before issue 13 (``--reference-src``: the ``src`` folder of a checkout
  at the commit before, e.g. ``git worktree add /tmp/ref 315a0e8``), which wrote into one partial GeoTIFF and
  recorded rows before GDAL had flushed them;
- ``crash-safe``: this tree (durable row files, fsynced strips and state, content fingerprints of inputs and
  checkpoint before and after, COG from a VRT of the rows);
- ``kill -9 at p %, then --resume``: this tree killed with SIGKILL after p % of the crash-safe run's wall time (and
  once as soon as its final COG conversion has begun), then resumed; the time is both processes together, and the
  published file is compared byte for byte with the uninterrupted one.

Times are each process's "in X s" (the pipeline, without Python's start-up; for the kill rows, the resumed run's)
and the wall time of the process (for the kill rows, both processes).

    python benchmarks/reliability.py --size 8192 --reference-src /tmp/ref/src --out runs/reliability-bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py (this folder is on sys.path when a script runs)
from scene import build_scene, make_checkpoint


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _command(args: argparse.Namespace, hr: Path, checkpoint: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "skysense.cli", "predict", "--checkpoint", str(checkpoint), "--hr", str(hr),
            "--output", str(output), "--tile", str(args.tile), "--overlap", str(args.overlap), "--no-progress"]  # fmt: skip


def _env(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:  # the reference checkout's package first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _pipeline_seconds(stdout: str) -> float:
    found = re.search(r" in ([0-9.]+) s \(", stdout)
    return float(found.group(1)) if found else float("nan")


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(pipeline seconds, process wall seconds) of one complete run."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return _pipeline_seconds(done.stdout), wall


def kill_and_resume(command: list[str], output: Path, after: float | None) -> tuple[float, float, bool]:
    """SIGKILL the command after ``after`` seconds (None: as soon as its COG conversion has begun), then run it with
    --resume: (pipeline seconds of the resume, wall seconds of both, whether the kill landed before the run
    finished)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publishing = output.with_name(output.name + ".partial.d") / "output.tif"
    killed = False
    while process.poll() is None:
        due = publishing.exists() if after is None else time.perf_counter() - start >= after
        if due:
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    process.wait()
    seconds, _ = run([*command, "--resume"], os.environ.copy())
    return seconds, time.perf_counter() - start, killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--kill-at", type=float, nargs="*", default=[0.25, 0.6],
                        help="fractions of the crash-safe run's wall time at which to kill")  # fmt: skip
    parser.add_argument("--reference-src", type=Path, help="src/ of a checkout before issue 13 (row: reference)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "reliability-bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hr = build_scene(args.size, args.out)
    checkpoint = make_checkpoint(args.out)

    rows = []
    if args.reference_src is not None:
        output = args.out / "reference.tif"
        seconds, wall = run(_command(args, hr, checkpoint, output), _env(args.reference_src))
        rows.append(("reference (before issue 13)", seconds, wall, ""))
    safe = args.out / "crash_safe.tif"
    seconds, wall = run(_command(args, hr, checkpoint, safe), _env(None))
    rows.append(("crash-safe", seconds, wall, ""))
    expected = _sha256(safe)
    for fraction in [*args.kill_at, None]:  # None: during the final COG conversion
        label = "during the COG conversion" if fraction is None else f"at {fraction:.0%}"
        output = args.out / f"killed_{'cog' if fraction is None else f'{fraction:g}'}.tif"
        output.unlink(missing_ok=True)
        after = None if fraction is None else fraction * wall
        resume_seconds, both, killed = kill_and_resume(_command(args, hr, checkpoint, output), output, after)
        same = "bytes equal" if _sha256(output) == expected else "BYTES DIFFER"
        rows.append((f"kill -9 {label}, then --resume", resume_seconds, both,
                     f"{same}{'' if killed else ' (finished before the kill)'}"))  # fmt: skip

    base = rows[0][1]
    print(f"# {args.size}² HR mosaic of cogeo.tif, tile {args.tile}, overlap {args.overlap}, tiny HR segmentation; "
          f"{cpu_name()}, {os.cpu_count()} CPUs, {dt.date.today()}")  # fmt: skip
    print("| run | pipeline s | ratio to first row | process wall s | published file |")
    print("|---|---|---|---|---|")
    for name, seconds, wall, note in rows:
        ratio = "—" if name.startswith("kill") else f"{seconds / base:.2f}"
        print(f"| {name} | {seconds:.1f} | {ratio} | {wall:.1f} | {note} |")


if __name__ == "__main__":
    main()
