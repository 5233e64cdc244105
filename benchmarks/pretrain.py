"""Pretraining speed (issue 4): training samples/s, achieved GFLOP/s and peak memory, tiny and small presets,
fp32 and bf16 autocast.

One training step is what ``PretrainTask`` does: for every source of ``configs/pretrain/tiny.yaml`` (EuroSAT HR
images, Sen1Floods11 S1 tiles, Presto S1+S2 series — real batches, two views each, loaded once and held in memory so
that only compute is timed), the student and teacher forwards, all losses, backward, AdamW and the EMA teacher
update. FLOPs are counted by ``torch.utils.flop_counter`` over one step (matmuls, convolutions and attention; the
elementwise work is not counted, so GFLOP/s is a lower bound of the work done). Each (preset, precision) runs in its
own process so that its peak resident memory (``ru_maxrss``; ``torch.cuda.max_memory_allocated`` on a GPU) is its
own. The achieved rate is also given against the machine's measured matmul peak.

Run: python benchmarks/pretrain.py [--presets tiny small] [--precisions fp32 bf16] [--steps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoders import machine_lines, matmul_peaks, precision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "pretrain" / "tiny.yaml"


def real_batches(count: int) -> list[dict[str, Any]]:
    """``count`` training batches ({source: (view 1, view 2)}) from the tiny config's real sources."""
    from skysense.pretrain.datamodule import PretrainDataModule

    data_args = dict(yaml.safe_load(CONFIG.read_text())["data"], num_workers=0)
    for spec in data_args["sources"].values():
        spec["init_args"]["root"] = str((REPO / spec["init_args"]["root"]).resolve())
    data = PretrainDataModule(**data_args)
    data.setup("fit")
    loaders = data.train_dataloader().iterables
    iterators = {name: iter(loader) for name, loader in loaders.items()}
    return [{name: next(iterator) for name, iterator in iterators.items()} for _ in range(count)]


def measure(preset: str, dtype: str, steps: int, threads: int, device: str, queue: Any) -> None:
    """Runs in a child process; puts a result row on ``queue``."""
    from torch.utils.flop_counter import FlopCounterMode

    from skysense.tasks.pretrain import PretrainTask

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batches = real_batches(2)
    task = PretrainTask(preset).to(device)
    meta = task.meta.train()
    optimizer = torch.optim.AdamW([p for p in meta.student.parameters() if p.requires_grad], lr=1e-4)
    samples = sum(len(first) for first, _ in batches[0].values())

    def step(batch: dict[str, Any]) -> None:
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        with precision(dtype):
            for first, second in batch.values():
                first, second = first.to(device), second.to(device)
                total = total + meta((first.inputs, second.inputs))["loss"]
        total.backward()
        optimizer.step()
        meta.finish_step()
        meta.update_teacher(0.996)

    step(batches[0])  # warm-up (allocations, kernels)
    counter = FlopCounterMode(display=False)
    with counter:
        step(batches[1])
    flops = counter.get_total_flops()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for index in range(steps):
        step(batches[index % 2])
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    parameters = sum(p.numel() for p in meta.student.parameters())
    queue.put((preset, dtype, parameters, samples, seconds, flops, peak))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for line in machine_lines(args.threads):
        print(f"# {line}")
    peaks: dict[str, float] = {}
    if args.device == "cpu":
        for peak in matmul_peaks(max_size=4096, seconds_per_run=4.0, repeats=3):
            peaks[peak.dtype] = max(peaks.get(peak.dtype, 0.0), peak.gflops)
        print("# matmul peak GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    print()
    print("| preset | precision | student params | samples/step | s/step | samples/s | GFLOP/step | GFLOP/s "
          "| % of matmul peak | peak memory GiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    context = multiprocessing.get_context("spawn")
    for preset in args.presets:
        for dtype in args.precisions:
            queue = context.Queue()
            process = context.Process(
                target=measure, args=(preset, dtype, args.steps, args.threads, args.device, queue)
            )
            process.start()
            process.join()
            if process.exitcode != 0:
                print(f"| {preset} | {dtype} | failed (exit code {process.exitcode}) |||||||")
                continue
            preset, dtype, parameters, samples, seconds, flops, peak = queue.get()
            rate = flops / seconds / 1e9
            share = f"{100 * rate / peaks[dtype]:.0f}" if dtype in peaks else "–"
            print(f"| {preset} | {dtype} | {parameters / 1e6:.1f} M | {samples} | {seconds:.2f} | {samples / seconds:.1f} "
                  f"| {flops / 1e9:.1f} | {rate:.1f} | {share} | {peak:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
