"""Data-loading speed on real files (issue 3).

Measures, in one run:
  1. a plain rasterio loop reading the same windows (S1 chip + label per 64×64 tile of the 12 real Sen1Floods11
     chips) — the floor any loader pays;
  2. our loader (Sen1Floods11 dataset → Normalize → FillInvalid → collate, torch DataLoader) with 0, 1 and 2
     workers, in samples/s, with its chip cache (the chips are single compressed strips: any window read decodes
     the whole band, so tiles of a cached chip are slices) and once without it;
  3. a tiny-model training step (S1 only, forward + backward + AdamW) on batches held in memory, in samples/s,
     and the same training loop fed by the loader, to show whether loading is the bottleneck.

Run: python benchmarks/data.py [--batch-size 16] [--epochs 2] [--markdown docs/benchmarks-data.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from machine import cpu_name  # benchmarks/machine.py (this folder is on sys.path when a script runs)
from torch.utils.data import DataLoader

from skysense import create_model
from skysense.data.collate import collate
from skysense.data.datasets import Sen1Floods11
from skysense.data.sensors import S1_GRD
from skysense.data.transforms import Compose, FillInvalid, Normalize

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sen1floods11_samples"


def plain_rasterio(dataset: Sen1Floods11) -> float:
    """Samples/s of a bare loop: open both files, read the window, to float32 tensors."""
    start = time.perf_counter()
    for chip_index, window in dataset.windows:
        chip = dataset.chips[chip_index]
        with rasterio.open(dataset._file(chip, "s1")) as src:
            s1 = torch.from_numpy(src.read(window=window).astype(np.float32))
        with rasterio.open(dataset._file(chip, "label")) as src:
            label = torch.from_numpy(src.read(1, window=window).astype(np.int64))
        assert s1.shape[0] == 2 and label.ndim == 2
    return len(dataset.windows) / (time.perf_counter() - start)


def loader_rate(dataset: Sen1Floods11, batch_size: int, workers: int, epochs: int) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch)
        rates.append(count / (time.perf_counter() - start))
    return max(rates)  # the first epoch of a persistent loader includes worker start-up


def train_rate(batches: list, steps: int) -> tuple[float, Callable[[Any], None]]:
    """Training samples/s of the tiny model on batches held in memory, and the step function (for reuse)."""
    torch.manual_seed(0)
    model = create_model("tiny", hr=None, s2=None, s2_head=None, geo=None).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch) -> None:
        out = model(batch.inputs)
        loss = out.features.square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return steps * len(batches[0]) / (time.perf_counter() - start), step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if not ROOT.exists():
        raise SystemExit(f"real data not found at {ROOT}")

    transforms = Compose([Normalize(s1=S1_GRD), FillInvalid()])
    dataset = Sen1Floods11(ROOT, mode="s1", tile_size=64, transforms=transforms)
    rows = []
    plain = statistics.median(plain_rasterio(dataset) for _ in range(3))
    rows.append(("plain rasterio loop (same windows, no checks)", "-", f"{plain:,.0f}", "1.00"))
    uncached = Sen1Floods11(ROOT, mode="s1", tile_size=64, transforms=transforms, cache_chips=0)
    rate = loader_rate(uncached, args.batch_size, 0, 1)
    rows.append(
        (
            "skysense loader, 0 workers, chip cache off (every tile decodes its strip)",
            str(args.batch_size),
            f"{rate:,.0f}",
            f"{rate / plain:.2f}",
        )
    )
    loader = {}
    for workers in (0, 1, 2):
        loader[workers] = loader_rate(dataset, args.batch_size, workers, args.epochs)
        rows.append(
            (
                f"skysense loader, {workers} workers",
                str(args.batch_size),
                f"{loader[workers]:,.0f}",
                f"{loader[workers] / plain:.2f}",
            )
        )

    batches = list(DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate))[:8]
    batches = [b for b in batches if len(b) == args.batch_size]
    train, step = train_rate(batches, steps=12)
    rows.append(("tiny-model train step (S1 only), batches in memory", str(args.batch_size), f"{train:,.0f}", "-"))
    fed = DataLoader(
        dataset,
        batch_size=args.batch_size,
        num_workers=1,
        collate_fn=collate,
        persistent_workers=True,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    iterator = iter(fed)
    step(next(iterator))
    start, count = time.perf_counter(), 0
    for _ in range(12):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(fed)
            batch = next(iterator)
        step(batch)
        count += len(batch)
    fed_rate = count / (time.perf_counter() - start)
    rows.append(
        (
            "tiny-model train step fed by the loader (1 worker)",
            str(args.batch_size),
            f"{fed_rate:,.0f}",
            f"{fed_rate / train:.2f} of in-memory",
        )
    )

    header = (
        f"{dt.date.today()} · {cpu_name()} · {torch.get_num_threads()} threads · torch {torch.__version__} · "
        f"{len(dataset)} samples (12 real Sen1Floods11 S1 chips × 64 tiles of 64×64, with labels)"
    )
    lines = [header, "", "| what | batch | samples/s | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    verdict = "loading is NOT the bottleneck" if loader[1] > train else "loading IS the bottleneck"
    lines += ["", f"Loader with 1 worker: {loader[1]:,.0f} samples/s vs training {train:,.0f} samples/s → {verdict}."]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
