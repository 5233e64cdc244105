"""Downstream results table (issue 5): every dataset's test metric from random initialisation and from our
pretraining, several seeds, trained on this CPU through the ``skysense fit`` / ``skysense test`` commands and the
configs in ``configs/`` (so every row is reproducible by the command printed with it).

For each (dataset, preset, init, seed): ``skysense fit --config <config> --seed_everything <seed> [budget overrides]
[--model.init_args.pretrained <weights>]``, then ``skysense test`` on the checkpoint the config's ModelCheckpoint
kept (best validation metric), and the test metric is read from the CSV log. Results go to ``<out>/results.jsonl``
(one line per run, appended: an interrupted sweep resumes where it stopped); ``table`` prints the markdown table
with mean ± std over seeds.

    python benchmarks/downstream.py run --preset tiny --pretrained runs/probe/ours.pt --seeds 0 1 2
    python benchmarks/downstream.py table

On a GPU: ``--extra "--trainer.accelerator gpu --trainer.precision bf16-mixed"`` (appended to every fit and test
command; repeatable), ``--jobs 3`` (runs side by side on the one GPU: their fit times then include the sharing) and
``--deadline <unix time>`` (start no run that the earlier runs of its dataset say would end after it). Each run's
output goes to ``<out>/<run>/fit.log`` and ``test.log``; a failed run is reported and the sweep goes on.

Datasets whose shared sample has no held-out images (Sen1Floods11 S1+S2: one chip; DSIFN: 10 pairs, no split) are
left out: their configs are smoke tests of the recipe, and a number trained and scored on the same images would
not be a result.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py (this folder is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]

# name: (config, metric column in the test log, metric label, budget overrides for this CPU)
DATASETS: dict[str, tuple[str, str, str, list[str]]] = {
    "eurosat": ("configs/classification/eurosat.yaml", "test/OA", "OA %", []),
    "aid": ("configs/classification/aid.yaml", "test/OA", "OA %", []),
    "presto_algae": ("configs/classification/presto_algae.yaml", "test/OA", "OA %", []),
    "sen1floods11_s1": ("configs/segmentation/sen1floods11.yaml", "test/mIoU", "mIoU %", []),
    "levir": ("configs/change_detection/levir.yaml", "test/F1/change", "F1 (change) %", []),
    "nwpu_vhr10": (
        "configs/detection/nwpu_vhr10.yaml",
        "test/mAP50",
        "mAP50 %",
        [
            "--model.init_args.image_size",
            "256",
            "--data.init_args.image_size",
            "256",
            "--trainer.max_epochs",
            "2",
            "--model.init_args.anchor_sizes",
            "[8, 16, 32, 64, 128]",
        ],
    ),  # fmt: skip
}


@cache
def gpu_name(extra: tuple[str, ...]) -> str | None:
    """The CUDA device's name when the extra trainer flags put the runs on a GPU (the configs say cpu), else None."""
    accelerator = "cpu"
    for i, arg in enumerate(extra):
        if arg == "--trainer.accelerator" and i + 1 < len(extra):
            accelerator = extra[i + 1]
        elif arg.startswith("--trainer.accelerator="):
            accelerator = arg.split("=", 1)[1]
    if accelerator not in ("gpu", "cuda", "auto"):
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def last_values(log_dir: Path) -> dict[str, float]:
    """Last logged value of every column of the CSV logs under ``log_dir``."""
    values: dict[str, float] = {}
    for path in sorted(log_dir.rglob("metrics.csv")):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                for key, value in row.items():
                    if value not in ("", None):
                        values[key] = float(value)
    return values


SKYSENSE = [sys.executable, "-m", "skysense.cli"]  # the ``skysense`` command of this interpreter (no PATH needed)
WRITE_LOCK = threading.Lock()


def run_logged(command: list[str], log: Path) -> None:
    """Run ``skysense ...`` with its output in ``log``; on failure raise with the log's last lines."""
    with log.open("w") as handle:
        result = subprocess.run([*SKYSENSE, *command[1:]], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"exit {result.returncode}: {' '.join(command)}\n{tail}")


def run_one(
    dataset: str, preset: str, init: str, seed: int, pretrained: Path | None, out: Path, extra: list[str] | None = None
) -> dict:
    config, metric, _, budget = DATASETS[dataset]
    extra = list(extra or [])
    name = f"{dataset}-{preset}-{init}-seed{seed}"
    root = out / name
    common = ["--config", config, "--seed_everything", str(seed), "--model.init_args.preset", preset,
              "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false"]  # fmt: skip
    fit = ["skysense", "fit", *common, "--trainer.logger.init_args.save_dir", str(root / "fit"), *budget, *extra]
    if init == "pretrained":
        fit += ["--model.init_args.pretrained", str(pretrained), "--model.init_args.pretrained_network", "student"]
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run_logged(fit, root / "fit.log")
    fit_seconds = time.perf_counter() - start
    kept = [p for p in root.rglob("*.ckpt") if p.name != "last.ckpt"]
    checkpoint = kept[0] if kept else next(root.rglob("last.ckpt"))
    test = ["skysense", "test", *common, "--trainer.logger.init_args.save_dir", str(root / "test"), *budget,
            *extra, "--ckpt_path", str(checkpoint)]  # fmt: skip
    start = time.perf_counter()
    run_logged(test, root / "test.log")
    test_seconds = time.perf_counter() - start
    values = last_values(root / "test")
    gpu = gpu_name(tuple(extra))
    machine = f"{cpu_name()}, {os.cpu_count()} cores"
    record = {
        "dataset": dataset, "preset": preset, "init": init, "seed": seed, "metric": metric,
        "value": values.get(metric, math.nan), "fit_seconds": round(fit_seconds, 1),
        "test_seconds": round(test_seconds, 1), "checkpoint": checkpoint.name, "command": shlex.join(fit),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{gpu} + {machine}" if gpu else machine, "threads": os.environ.get("OMP_NUM_THREADS", "default"),
    }  # fmt: skip
    if gpu:
        record["gpu"] = gpu
    if extra:
        record["extra"] = shlex.join(extra)
    with WRITE_LOCK, (out / "results.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"{name}: {metric} = {record['value']:.4f} ({fit_seconds:.0f} s fit)", flush=True)
    return record


def read_records(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def done(out: Path) -> set[tuple[str, str, str, int]]:
    return {(r["dataset"], r["preset"], r["init"], r["seed"]) for r in read_records(out)}


def expected_seconds(out: Path, dataset: str, preset: str) -> float:
    """The longest fit + test time of the dataset's finished runs in ``out`` (0 when none has finished)."""
    return max(
        (r["fit_seconds"] + r.get("test_seconds", 0.2 * r["fit_seconds"]) for r in read_records(out)
         if r["dataset"] == dataset and r["preset"] == preset),
        default=0.0,
    )  # fmt: skip


def table(out: Path) -> str:
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["preset"]), {}).setdefault(record["init"], []).append(record)
    lines = [
        "| dataset | preset | metric | random init | our pretraining | seeds | fit time (fastest run) |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(runs: list[dict] | None) -> str:
        if not runs:
            return "–"
        values = [100 * r["value"] for r in runs]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
        return f"{mean:.1f} ± {std:.1f}"

    for (dataset, preset), by_init in groups.items():
        runs = [r for rs in by_init.values() for r in rs]
        seeds = sorted({r["seed"] for r in runs})
        minutes = min(r["fit_seconds"] for r in runs) / 60  # other work on the cores slows some runs
        lines.append(
            f"| {dataset} | {preset} | {DATASETS[dataset][2]} | {cell(by_init.get('random'))} | "
            f"{cell(by_init.get('pretrained'))} | {', '.join(map(str, seeds))} | {minutes:.1f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--inits", nargs="+", default=["random", "pretrained"], choices=["random", "pretrained"])
    parser.add_argument("--pretrained", type=Path, help="pretraining checkpoint (.ckpt/.pt) or .safetensors")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "downstream")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="FLAGS",
        help='flags appended to every fit and test command, e.g. "--trainer.accelerator gpu" (repeatable)',
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side")
    parser.add_argument("--deadline", type=float, help="unix time: start no run expected to end after it")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "table":
        print(table(args.out))
        return
    if "pretrained" in args.inits and (args.pretrained is None or not args.pretrained.is_file()):
        sys.exit(f"--pretrained must name a pretraining checkpoint, got {args.pretrained}")
    extra = [flag for flags in args.extra for flag in shlex.split(flags)]
    pretrained = args.pretrained and args.pretrained.resolve()
    finished = done(args.out)
    failures: list[str] = []

    def attempt(dataset: str, init: str, seed: int) -> None:
        name = f"{dataset}-{args.preset}-{init}-seed{seed}"
        if args.deadline is not None:
            left = args.deadline - time.time()
            if expected_seconds(args.out, dataset, args.preset) > left:
                print(f"{name}: not started, {max(left, 0):.0f} s left before the deadline", flush=True)
                return
        try:
            run_one(dataset, args.preset, init, seed, pretrained, args.out, extra)
        except (RuntimeError, OSError, StopIteration) as err:
            failures.append(name)
            print(f"{name}: FAILED {err}", file=sys.stderr, flush=True)

    # seeds outermost: an interrupted sweep still has every dataset at some seeds
    todo = [(dataset, init, seed) for seed in args.seeds for dataset in args.datasets for init in args.inits
            if (dataset, args.preset, init, seed) not in finished]  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(lambda job: attempt(*job), todo))
    if (args.out / "results.jsonl").exists():
        print(table(args.out))
    if failures:
        sys.exit(f"{len(failures)} run(s) failed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
