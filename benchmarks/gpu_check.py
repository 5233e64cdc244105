"""One-run check of SkySense on one accelerator (issue 15, item 4): how near the hardware every GPU path runs.

Sections (``--sections``, all by default; matmul first, the others in the order given), each guarded so that a failure
still lets the others print, each with its own time budget:

* ``matmul``: bf16 matmul peak (TFLOP/s), N×N×N products (N = 8192 on a GPU), 2·N³ FLOPs each.
* ``encoders``: our encoders against timm's at the paper's configuration, same weights, bf16 autocast, inference:
  HR Swin V2-H (C352, depths 2-2-18-2, window 8) at 256², batch 32, and the S2 ViT-L (D1024, 24 layers, patch 4) at
  64², batch 64 — images/s and ours/timm. The extra norms that the paper's Swin V2-H has every 6 blocks are left out
  on both sides (timm has none; they are LayerNorms, no measurable cost).
* ``forward``: the whole multi-modal paper model (HR + S2 × 10 + S1 × 5 with coordinates, batch 8, HR 512² on a
  16 × 16 grid), bf16 autocast, inference: TFLOP/s counted with ``torch.utils.flop_counter.FlopCounterMode`` and its
  share of the measured matmul peak (``--compile-forward``: also with every block compiled).
* ``pretrain``: paper pretraining steps (``PretrainTask``, the config's ``ModelParallelStrategy`` — FSDP2 — on one
  device, ``bf16-mixed``, activation checkpointing) through Lightning's Trainer, fed synthetic batches of the real
  shapes; ``--pretrain-runs SHAPES:VARIANT ...`` picks them. Shapes: ``paper-yaml`` (``configs/pretrain/paper.yaml``'s
  three sources at batch 3 each), ``paper-crop`` (3 samples of a 512² HR crop with its 16² S2 × 20 and S1 × 10
  window), ``multimodal`` (HR 256² + S2 × 10 + S1 × 5 on an 8 × 8 grid). Variants: ``joined`` (both views in one
  backbone call, the default), ``separate`` (one call per view), ``compiled`` (joined, every block compiled),
  ``fp32-params`` (joined, with FSDP2 gathering float32 parameters and AdamW's foreach step: the task's defaults
  before fused AdamW and bf16 gathered parameters), ``fused-fp32`` (joined, float32 gathered parameters, fused AdamW).
  Time
  per step (median), peak memory, MFU and HFU. FLOPs are counted over one step by FlopCounterMode: HFU uses all of
  them (activation recomputation included); MFU uses model FLOPs = 2 × the forward FLOPs of the step (the student
  and the teacher are the same architecture on the same views, so the student's forward is half the counted
  forward, and its backward twice that). ``--profile DIR`` writes a torch.profiler table of each run's last step.
* ``scene``: ``benchmarks/scene.py``'s scene pipeline against the bare forward, with an HR segmenter of each
  ``--scene-presets`` preset (needs rasterio; skipped with a line when it is missing).
* ``sentinel``: issue 14's CPU target on this host's cores: ``benchmarks/scene.py``'s Sentinel-2 L1C scene as three
  SAFE products of JPEG 2000 bands (1932², tiny preset, tile 128), embedded on the CPU with the model on all cores but
  two and two reader threads on those, against the bare forward on the same model threads. On the 2-core CPUs of
  the development machines JPEG 2000 decoding and the output's compression alone keep it below 0.9 (docs/
  benchmarks.md, twelfth Sentinel scene measurement); a GPU host has the cores for the reads to run beside the model.
  It needs the Sen1Floods11 S2 chip under ``shared/data`` (see gpu_check.sh).

The table (section, metric, value, reference, ratio) is printed at the end and written to ``--out``.

    python benchmarks/gpu_check.py --out runs/gpu_check.md              # the GPU run (about 4 minutes on an H100)
    python benchmarks/gpu_check.py --device cpu --quick                 # tiny sizes: checks that every path runs

FLOPs are 2 per multiply-add (matmul, linear, convolution, attention). FlopCounterMode counts the CUDA attention
kernels but not the CPU fused one, so on a CPU the counted FLOPs are a lower bound.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import os
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("matmul", "encoders", "forward", "pretrain", "scene", "sentinel")


@dataclass
class Row:
    """One line of the table."""

    section: str
    metric: str
    value: float | str | None
    reference: str = "–"
    ratio: float | None = None
    digits: int = 1

    def cells(self) -> tuple[str, ...]:
        value = self.value if isinstance(self.value, str) or self.value is None else f"{self.value:.{self.digits}f}"
        ratio = "–" if self.ratio is None else f"{self.ratio:.2f}"
        return self.section, self.metric, "–" if value is None else value, self.reference, ratio


@dataclass
class Check:
    """Options and results shared by the sections."""

    device: torch.device
    quick: bool
    pretrain_runs: list[tuple[str, str]]  # (shapes, variant)
    compile_forward: bool = False
    profile: Path | None = None  # where the profiles of the pretraining runs' last step go (None: no profile)
    scene_presets: tuple[str, ...] = ("tiny",)
    peak_tflops: float | None = None  # measured by the matmul section
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int, budget: float) -> float:
    """Median seconds of one call after ``warmup`` calls; stops repeating once ``budget`` seconds are spent (at least
    one timed call). CUDA events on a GPU, the wall clock elsewhere."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - started < budget):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            start_time = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start_time)
    return statistics.median(times)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on any device (matmuls, linears and convolutions in bf16; norms and softmax in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16)


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (2 per multiply-add), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------------


def matmul_section(check: Check) -> None:
    """bf16 matmul peak: the best of several sizes' median rates."""
    device = check.device
    sizes = (512, 1024) if check.quick else ((4096, 8192) if device.type == "cuda" else (1024, 2048))
    best = 0.0
    for size in sizes:
        a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
        b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
        chain = 10 if device.type == "cuda" else 1  # several products per timed call: launches do not count

        def run(a: torch.Tensor = a, b: torch.Tensor = b, chain: int = chain) -> None:
            for _ in range(chain):
                torch.mm(a, b)

        seconds = seconds_per_call(run, device, warmup=2, repeats=10, budget=10.0)
        rate = 2 * size**3 * chain / seconds / 1e12
        check.rows.append(Row("matmul", f"bf16 {size}³ TFLOP/s", rate, digits=3))
        best = max(best, rate)
        del a, b
    check.peak_tflops = best
    spec = 989.0 if "H100" in device_name(device) else None  # H100 SXM dense bf16, NVIDIA's datasheet
    check.rows.append(
        Row(
            "matmul",
            "bf16 peak TFLOP/s (the reference of the shares below)",
            best,
            "989 (H100 SXM datasheet)" if spec else "–",
            best / spec if spec else None,
        )  # fmt: skip
    )


def _swin_pair(device: torch.device, quick: bool) -> tuple[torch.nn.Module, torch.nn.Module, tuple[int, ...], str]:
    """(ours, timm) HR Swin V2 with the same weights, built on ``device``; input shape and label."""
    from timm.models import swin_transformer_v2 as timm_swin

    from skysense.models.registry import get_config
    from skysense.models.swin_v2 import SwinTransformerV2, convert_timm_swinv2_state_dict

    config = get_config("tiny" if quick else "paper").hr
    config = dataclasses.replace(
        config,
        extra_norm_period=0,
        drop_path_rate=0.0,
        pad_before_shift=False,
        output_norm_indices=(config.num_stages - 1,),
    )  # timm's single final norm
    size = 256
    with torch.device(device):
        reference = timm_swin.SwinTransformerV2(
            img_size=size, in_chans=config.in_chans, patch_size=config.patch_size, window_size=config.window_size,
            embed_dim=config.embed_dim, depths=config.depths, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias, pretrained_window_sizes=config.pretrained_window_sizes, num_classes=0,
        ).eval()  # fmt: skip
        ours = SwinTransformerV2(config).eval()
    ours.load_state_dict(convert_timm_swinv2_state_dict(reference.state_dict()), strict=True)
    label = f"HR Swin V2 C{config.embed_dim} {'-'.join(map(str, config.depths))} w{config.window_size} {size}²"
    return ours, reference, (config.in_chans, size, size), label


def _vit_pair(device: torch.device, quick: bool) -> tuple[torch.nn.Module, torch.nn.Module, tuple[int, ...], str]:
    """(ours, timm) Sentinel-2 ViT with the same weights (the same parameter names), built on ``device``."""
    from timm.models import vision_transformer as timm_vit

    from skysense.models.registry import get_config
    from skysense.models.vit import VisionTransformer

    config = get_config("tiny" if quick else "paper").s2
    config = dataclasses.replace(config, drop_path_rate=0.0)
    with torch.device(device):
        reference = timm_vit.VisionTransformer(
            img_size=config.img_size, patch_size=config.patch_size, in_chans=config.in_chans,
            embed_dim=config.embed_dim, depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias, class_token=config.class_token,
            norm_layer=partial(torch.nn.LayerNorm, eps=config.norm_eps), num_classes=0,
        ).eval()  # fmt: skip
        ours = VisionTransformer(config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    label = f"S2 ViT D{config.embed_dim} x{config.depth} p{config.patch_size} {config.img_size}²"
    return ours, reference, (config.in_chans, config.img_size, config.img_size), label


def encoders_section(check: Check) -> None:
    for build, batch in ((_swin_pair, 32), (_vit_pair, 64)):
        _compare_encoder(check, build, 2 if check.quick else batch)
        free_memory()


def _compare_encoder(check: Check, build: Callable[..., tuple], batch: int) -> None:
    """Images/s of ours and timm's ``forward_features`` (bf16 autocast, inference), and ours' FLOP rate."""
    device = check.device
    ours, reference, shape, label = build(device, check.quick)
    images = torch.randn(batch, *shape, device=device)

    def run(model: torch.nn.Module) -> None:
        with torch.inference_mode(), autocast(device):
            model.forward_features(images)

    rates = [batch / seconds_per_call(partial(run, m), device, 3, 10, budget=15.0) for m in (ours, reference)]
    flops = counted_flops(partial(run, ours)) / batch
    from skysense.models.swin_v2 import WindowAttention

    windows = [m for m in ours.modules() if isinstance(m, WindowAttention)]
    path = ""
    if windows:
        path = " (fused SDPA attention)" if windows[0].uses_fused_attention(device) else " (explicit softmax attention)"
    check.rows.append(Row("encoders", f"{label} B{batch} bf16: ours{path} img/s", rates[0],
                          f"timm {rates[1]:.1f} img/s", rates[0] / rates[1]))  # fmt: skip
    if windows:  # Swin V2: the other attention path too (SDPA with the float bias+mask, or the explicit softmax)
        chosen = windows[0].fused_attn  # None: the per-device default
        fused = windows[0].uses_fused_attention(device)
        for module in windows:
            module.fused_attn = not fused
        other = batch / seconds_per_call(partial(run, ours), device, 3, 10, budget=15.0)
        for module in windows:
            module.fused_attn = chosen
        other_path = "explicit softmax" if fused else "fused SDPA"
        check.rows.append(Row("encoders", f"{label} B{batch} bf16: ours with {other_path} attention img/s", other,
                              f"timm {rates[1]:.1f} img/s", other / rates[1]))  # fmt: skip
    if check.peak_tflops:
        tflops = flops * rates[0] / 1e12
        check.rows.append(Row("encoders", f"{label}: ours TFLOP/s (share of peak)", tflops,
                              f"peak {check.peak_tflops:.3g}", tflops / check.peak_tflops, digits=3))  # fmt: skip


def multimodal_input(batch: int, hr_size: int, s2_frames: int, s1_frames: int, device: torch.device) -> Any:
    """A :class:`~skysense.batch.SkySenseInput`: HR (B, 3, H, H), S2 (B, T2, 10, H/32, H/32), S1 (B, T1, 2, ...),
    dates, and coordinates, on ``device``."""
    from skysense.batch import SkySenseInput

    grid = hr_size // 32
    return SkySenseInput(
        hr=torch.randn(batch, 3, hr_size, hr_size, device=device),
        s2=torch.randn(batch, s2_frames, 10, grid, grid, device=device),
        s2_day_of_year=torch.randint(0, 365, (batch, s2_frames), device=device),
        s1=torch.randn(batch, s1_frames, 2, grid, grid, device=device),
        s1_day_of_year=torch.randint(0, 365, (batch, s1_frames), device=device),
        lat=torch.linspace(-60, 60, batch, device=device),
        lon=torch.linspace(-170, 170, batch, device=device),
    )


def forward_section(check: Check) -> None:
    from skysense.models.registry import create_model

    device = check.device
    preset, batch, hr_size = ("tiny", 2, 128) if check.quick else ("paper", 8, 512)
    with torch.device(device):
        model = create_model(preset).eval()
    inputs = multimodal_input(batch, hr_size, 10, 5, device)

    def run() -> None:
        with torch.inference_mode(), autocast(device):
            model(inputs)

    flops = counted_flops(run)
    variants = ["eager", "compiled blocks"] if check.compile_forward else ["eager"]
    for variant in variants:
        warm = "–"
        if variant == "compiled blocks":
            from skysense.models.compiling import compile_blocks

            compile_blocks(model)
            started = time.perf_counter()
            run()
            synchronize(device)
            warm = f"first call {time.perf_counter() - started:.0f} s (compiling)"
        seconds = seconds_per_call(run, device, warmup=2, repeats=5, budget=20.0)
        tflops = flops / seconds / 1e12
        label = f"{preset} HR {hr_size}² + S2×10 + S1×5, B{batch}, bf16, {variant}"
        check.rows.append(Row("forward", f"{label}: samples/s", batch / seconds, warm))
        check.rows.append(Row("forward", f"{label}: TFLOP/s (share of peak)", tflops,
                              f"peak {check.peak_tflops:.3g}" if check.peak_tflops else "–",
                              tflops / check.peak_tflops if check.peak_tflops else None, digits=3))  # fmt: skip


def _views(source: dict[str, tuple[int, ...]], batch: int, device_seed: int) -> tuple[Any, Any]:
    """Two views (a pair of :class:`~skysense.data.collate.Batch`) of one source: modality → (C, H, W) or
    (T, C, h, w), with dates, coordinates for the Sentinel sources, and two overlapping crop boxes."""
    from skysense.batch import SkySenseInput
    from skysense.data.collate import Batch

    generator = torch.Generator().manual_seed(device_seed)
    fields: dict[str, torch.Tensor] = {}
    for name, shape in source.items():
        fields[name] = torch.randn(batch, *shape, generator=generator)
        if name == "hr":
            fields["hr_valid"] = torch.ones(batch, dtype=torch.bool)
            fields["hr_day_of_year"] = torch.randint(0, 365, (batch,), generator=generator)
        else:
            fields[f"{name}_day_of_year"] = torch.randint(0, 365, (batch, shape[0]), generator=generator)
            fields[f"{name}_valid"] = torch.ones(batch, shape[0], dtype=torch.bool)
    if "s1" in source or "s2" in source:
        fields["lat"] = torch.linspace(-50, 50, batch)
        fields["lon"] = torch.linspace(-120, 120, batch)
    views = []
    for box in ((0.0, 0.0, 0.8, 0.8), (0.1, 0.15, 0.85, 0.8)):
        inputs = SkySenseInput(**{k: v + 0.01 * torch.randn(v.shape, generator=generator) if v.is_floating_point()
                                  and k in source else v for k, v in fields.items()})  # fmt: skip
        views.append(Batch(inputs, None, None, None, None, None, [{"crop_box": box} for _ in range(batch)]))
    return views[0], views[1]


# configs/pretrain/paper.yaml's sources as the data module gives them (modality → per-sample shape), batch 3 each
PAPER_YAML_SOURCES = {
    "eurosat": {"hr": (3, 64, 64)},
    "sen1floods11": {"s1": (1, 2, 64, 64)},
    "presto": {"s2": (12, 10, 4, 4), "s1": (10, 2, 4, 4)},
}
MULTIMODAL_SOURCES = {"multimodal": {"hr": (3, 256, 256), "s2": (10, 10, 8, 8), "s1": (5, 2, 8, 8)}}
# one crop of a paper pretraining sample: a 512² HR crop of the 2048² tile with its 16² Sentinel window (one 10 m
# pixel = 32 HR pixels) and the recipe's frame counts (20 S2, 10 S1)
PAPER_CROP_SOURCES = {"paper-crop": {"hr": (3, 512, 512), "s2": (20, 10, 16, 16), "s1": (10, 2, 16, 16)}}
SHAPES = {"paper-yaml": PAPER_YAML_SOURCES, "multimodal": MULTIMODAL_SOURCES, "paper-crop": PAPER_CROP_SOURCES}
# pretraining variants: the two views in one backbone call (the default), one call per view, compiled blocks
DEFAULT_RUNS = ["paper-yaml:separate", "paper-yaml:joined", "paper-crop:joined"]
# (the task's defaults on a GPU: fused AdamW, FSDP2 computing with bf16 gathered parameters under bf16-mixed)
VARIANTS = {
    "joined": {},
    "separate": {"objectives": {"join_views": False}},
    "compiled": {"compile_blocks": True},
    "fp32-params": {"fused_optimizer": False, "fsdp_param_dtype": "float32"},
    "fused-fp32": {"fsdp_param_dtype": "float32"},
}
VARIANT_LABELS = {
    "joined": "views joined",
    "separate": "one call per view",
    "compiled": "views joined, compiled blocks",
    "fp32-params": "views joined, fp32 gathered params, foreach AdamW",
    "fused-fp32": "views joined, fp32 gathered params, fused AdamW",
}


class StepClock:
    """A Lightning callback: seconds of every training step, FLOPs of step ``count_step`` (forward until
    ``on_before_backward``, and the whole step), peak device memory."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # a Callback subclass, defined when Lightning is imported
        from lightning.pytorch.callbacks import Callback

        class _StepClock(Callback):
            def __init__(self, device: torch.device, count_step: int, profile_step: int | None = None) -> None:
                self.device, self.count_step, self.profile_step = device, count_step, profile_step
                self.profile: Any = None
                self.seconds: list[float] = []
                self.forward_flops = self.total_flops = 0
                self._counter: Any = None
                self._start = 0.0

            def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
                synchronize(self.device)
                if index == self.count_step:
                    from torch.utils.flop_counter import FlopCounterMode

                    self._counter = FlopCounterMode(display=False)
                    self._counter.__enter__()
                if index == self.profile_step:
                    from torch.profiler import ProfilerActivity, profile

                    activities = [ProfilerActivity.CPU] + (
                        [ProfilerActivity.CUDA] if self.device.type == "cuda" else []
                    )
                    self.profile = profile(activities=activities)
                    self.profile.__enter__()
                self._start = time.perf_counter()

            def on_before_backward(self, trainer: Any, module: Any, loss: torch.Tensor) -> None:
                if self._counter is not None:
                    self.forward_flops = self._counter.get_total_flops()

            def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, index: int) -> None:
                synchronize(self.device)
                elapsed = time.perf_counter() - self._start
                if index == self.profile_step and self.profile is not None:
                    self.profile.__exit__(None, None, None)
                    return  # the profiled step is not timed
                if self._counter is not None:
                    self._counter.__exit__(None, None, None)
                    self.total_flops = self._counter.get_total_flops()
                    self._counter = None
                else:
                    self.seconds.append(elapsed)

        return _StepClock(*args, **kwargs)


def pretrain_section(check: Check) -> None:
    """Paper pretraining steps through Lightning's Trainer under ModelParallelStrategy (FSDP2), one device."""
    import lightning.pytorch as pl
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.utils.data import DataLoader

    from skysense.tasks.pretrain import PretrainTask

    device = check.device
    fsdp_opens_dataclasses = _fsdp_opens_dataclasses()
    check.notes.append(
        f"torch {torch.__version__}: FSDP2 {'opens' if fsdp_opens_dataclasses else 'does not open'} dataclass "
        "outputs itself (issue 15's crash needs SkySenseOutput registered with pytree when it does not)"
    )
    preset = "tiny" if check.quick else "paper"
    steps = 3 if check.quick else 6  # step 0 warms up (and compiles), step 1 is counted, the rest are timed
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"  # CPU bf16 without AMX is slower than fp32
    for shapes, variant in check.pretrain_runs:
        sources = SHAPES[shapes]
        batches = [{name: _views(spec, 3, seed) for name, spec in sources.items()} for seed in range(2)]
        loader = DataLoader([batches[i % 2] for i in range(steps)], batch_size=None, collate_fn=_same)
        pl.seed_everything(0, verbose=False)
        with torch.device(device):  # the 4.1 B parameters are initialised on the device (minutes less on a GPU)
            task = PretrainTask(preset, grad_checkpointing=True, warmup_steps=2, **VARIANTS[variant])
        clock = StepClock(device, count_step=1, profile_step=steps - 1 if check.profile else None)
        trainer = pl.Trainer(
            accelerator=device.type,
            devices=1,
            num_nodes=1,
            strategy=ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=1),
            precision=precision,
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[clock],
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        trainer.fit(task, train_dataloaders=loader)
        wall = time.perf_counter() - started
        timed = clock.seconds[1:]  # the first step warms up
        seconds = statistics.median(timed)
        samples = sum(len(first) for first, _ in batches[0].values())
        label = f"{preset}, {shapes} shapes, {samples} samples/step, {VARIANT_LABELS[variant]}, FSDP2 1 device, {precision}, act. ckpt"
        check.rows.append(Row("pretrain", f"{label}: s/step", seconds,
                              f"{len(timed)} timed steps; first step {clock.seconds[0]:.1f} s, run {wall:.0f} s",
                              digits=3))  # fmt: skip
        model_flops = 2 * clock.forward_flops
        if check.peak_tflops:
            for name, flops in (("MFU", model_flops), ("HFU (recomputation counted)", clock.total_flops)):
                tflops = flops / seconds / 1e12
                check.rows.append(Row("pretrain", f"{label}: {name} TFLOP/s (share of peak)", tflops,
                                      f"peak {check.peak_tflops:.3g}", tflops / check.peak_tflops, digits=3))  # fmt: skip
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            check.rows.append(Row("pretrain", f"{label}: peak memory GiB", peak))
        if check.profile and clock.profile is not None:
            write_profile(clock.profile, check.profile / f"pretrain_{shapes}_{variant}.txt", device)
        del task, trainer, loader, batches, clock
        free_memory()


def write_profile(profile: Any, path: Path, device: torch.device) -> None:
    """The profiled step's operators by device time (and by host time), and how many kernels it launched."""
    events = profile.key_averages()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    path.write_text(f"kernel launches: {launches}\n\n" + events.table(sort_by=key, row_limit=40)
                    + "\n\n" + events.table(sort_by="self_cpu_time_total", row_limit=25))  # fmt: skip


def _same(batch: Any) -> Any:
    """The DataLoader's collate: the batches are already collated."""
    return batch


def _fsdp_opens_dataclasses() -> bool:
    """Whether this torch's FSDP2 finds tensors inside dataclass outputs itself (torch ≥ 2.12)."""
    try:
        from torch.distributed.fsdp import _common_utils
    except ImportError:
        return False
    return hasattr(_common_utils, "collect_grad_tensors")


def scene_section(check: Check) -> None:
    """``benchmarks/scene.py``: the scene pipeline against the bare forward on the same tiles (needs rasterio)."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        check.rows.append(Row("scene", "skipped: rasterio is not installed", None))
        return
    device = check.device
    size, tile, batch = (512, 256, 4) if check.quick else (8192, 512, 16)
    for preset in check.scene_presets:
        out = REPO / "runs" / "gpu-check-scene"
        command = [sys.executable, str(REPO / "benchmarks" / "scene.py"), "--sizes", str(size), "--fused-size", "0",
                   "--sentinel-sizes", "--tile", str(tile), "--overlap", str(tile // 4), "--batch-size", str(batch),
                   "--bare-tiles", str(2 * batch), "--no-bare-run", "--device", str(device), "--preset", preset,
                   "--precision", "bf16" if device.type == "cuda" else "32", "--out", str(out)]  # fmt: skip
        if device.type == "cuda":
            command += ["--workers", "8"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=True)
        found = False
        for line in done.stdout.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 9 and cells[0] == "skysense predict (HR)" and re.fullmatch(r"[0-9.]+", cells[4]):
                ratio = float(cells[6]) if re.fullmatch(r"[0-9.]+", cells[6]) else None
                check.rows.append(Row("scene", f"predict {cells[1]} {preset} HR segmenter, tile {tile} B{batch}: tiles/s",
                                      float(cells[4]), "bare forward (same tiles)", ratio, digits=2))  # fmt: skip
                if re.fullmatch(r"[0-9.]+", cells[7]):  # the model's own time (on a GPU: CUDA events) in the run
                    check.rows.append(Row("scene", f"predict {cells[1]} {preset}: the model's share of the run",
                                          float(cells[7]), "–", None, digits=2))  # fmt: skip
                found = True
            elif cells[0].startswith("scene tile"):  # the table of seconds per stage
                check.notes.append(f"scene stages ({preset}): {line.strip()}")
            elif cells[0] == "run" and len(cells) > 2 and cells[2] != "tiles run":
                check.notes.append(f"scene stage names: {line.strip()}")
        if not found:
            raise RuntimeError(f"benchmarks/scene.py printed no 'skysense predict (HR)' row:\n{done.stdout[-2000:]}")


def sentinel_section(check: Check) -> None:
    """``benchmarks/scene.py``'s S2 L1C SAFE scene embedded on this host's CPU (issue 14's ≥ 0.9× the bare forward),
    whatever ``--device`` says: the model on all cores but two, two reader threads (on 2 cores or fewer, or with
    ``--quick``: all cores, no reader thread)."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        check.rows.append(Row("sentinel", "skipped: rasterio is not installed", None))
        return
    cores = os.cpu_count() or 1
    workers = 0 if check.quick or cores <= 2 else 2
    threads = max(cores - workers, 1)
    size = 126 if check.quick else 1932
    command = [sys.executable, str(REPO / "benchmarks" / "scene.py"), "--sizes", "--fused-size", "0",
               "--sentinel-sizes", str(size), "--sentinel-kinds", "s2", "--s2-layout", "safe", "--sentinel-tiles",
               "128", "--bare-tiles", "0", "--no-bare-run", "--device", "cpu", "--threads", str(threads),
               "--workers", str(workers), "--out", str(REPO / "runs" / "gpu-check-sentinel")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=420, check=True)
    found = False
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            len(cells) == 9
            and cells[0].startswith("skysense embed (S2 L1C only")
            and re.fullmatch(r"[0-9.]+", cells[4])
        ):
            ratio = float(cells[6]) if re.fullmatch(r"[0-9.]+", cells[6]) else None
            what = f"embed {cells[1]} S2 L1C SAFE ×3, tiny, CPU {threads} model threads + {workers} readers: tiles/s"
            check.rows.append(Row("sentinel", what, float(cells[4]), "bare forward (same tiles, threads)", ratio,
                                  digits=2))  # fmt: skip
            if re.fullmatch(r"[0-9.]+", cells[7]):
                check.rows.append(Row("sentinel", f"embed {cells[1]}: the model's share of the run", float(cells[7]),
                                      "–", None, digits=2))  # fmt: skip
            found = True
        elif cells[0].startswith("s2only tile"):  # the table of seconds per stage
            check.notes.append(f"sentinel stages: {line.strip()}")
    if not found:
        raise RuntimeError(f"benchmarks/scene.py printed no S2 SAFE embed row:\n{done.stdout[-2000:]}")


RUNNERS: dict[str, Callable[[Check], None]] = {
    "matmul": matmul_section,
    "encoders": encoders_section,
    "forward": forward_section,
    "pretrain": pretrain_section,
    "scene": scene_section,
    "sentinel": sentinel_section,
}


# ----------------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import cpu_name

    return cpu_name()


def markdown(check: Check, seconds: dict[str, float]) -> str:
    header = ("section", "metric", "value", "reference", "ratio")
    lines = [
        f"# gpu_check: {device_name(check.device)} ({check.device}), torch {torch.__version__}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC{', --quick' if check.quick else ''}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row.cells()) + " |" for row in check.rows),
        "",
        "Section times (s): " + ", ".join(f"{name} {value:.0f}" for name, value in seconds.items()),
    ]
    lines += [f"- {note}" for note in check.notes]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def announced(name: str) -> Iterator[None]:
    print(f"[gpu_check] {name} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"[gpu_check] {name} done in {time.perf_counter() - start:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny presets and sizes (CI, CPU)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--pretrain-runs",
        nargs="+",
        default=None,
        metavar="SHAPES:VARIANT",
        help=f"pretraining runs, shapes {sorted(SHAPES)}, variants {sorted(VARIANTS)} (default: "
        f"{' '.join(DEFAULT_RUNS)} on a GPU, paper-yaml:joined with --quick)",
    )
    parser.add_argument("--compile-forward", action="store_true", help="forward: also with compiled blocks")
    parser.add_argument("--profile", type=Path, help="write a profile of every pretraining run's last step here")
    parser.add_argument("--scene-presets", nargs="+", default=["tiny"], help="scene: the segmenter's presets")  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if device.index is None:  # "cuda" → the current device, so that every call below sees one index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    runs = args.pretrain_runs or (["paper-yaml:joined"] if args.quick else DEFAULT_RUNS)
    pairs = [tuple(run.split(":", 1)) if ":" in run else (run, "joined") for run in runs]
    for shapes, variant in pairs:
        if shapes not in SHAPES or variant not in VARIANTS:
            parser.error(
                f"--pretrain-runs {shapes}:{variant}: shapes are {sorted(SHAPES)}, variants {sorted(VARIANTS)}"
            )
    check = Check(device, args.quick, pairs, args.compile_forward, args.profile, tuple(args.scene_presets))
    seconds: dict[str, float] = {}
    # the matmul peak first (the other sections compare with it), then the sections in the order given
    for name in ["matmul"] * ("matmul" in args.sections) + [s for s in dict.fromkeys(args.sections) if s != "matmul"]:
        start = time.perf_counter()
        with announced(name):
            try:
                RUNNERS[name](check)
            except Exception as error:  # one failing section must not hide the others
                message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                check.rows.append(Row(name, f"FAILED: {message}", None))
                traceback.print_exc()
        free_memory()
        seconds[name] = time.perf_counter() - start
        if args.out:  # after every section: a run stopped by a time limit keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(markdown(check, seconds))
    report = markdown(check, seconds)
    print("\n" + report, flush=True)
    return 1 if any(row.metric.startswith("FAILED") for row in check.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
