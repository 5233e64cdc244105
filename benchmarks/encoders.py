"""Forward speed of the SkySense encoders against timm's, on CPU, in one process.

Measures, in this order:

1. the machine's matrix-multiply peak (GFLOP/s, median of several runs) in fp32 and in bf16;
2. inference throughput (images/s, eval mode, ``torch.inference_mode``, after warm-up, median of the timed
   repetitions) of our HR encoder (:class:`skysense.models.swin_v2.SwinTransformerV2`) against timm's
   ``SwinTransformerV2`` and of our Sentinel encoder (:class:`skysense.models.vit.VisionTransformer`) against timm's
   ``VisionTransformer``, with the same weights in both, in fp32 and under bf16 autocast.

Both sides run ``forward_features`` (ours returns the last map NCHW, timm NHWC / tokens). A repetition is a pair,
ours then timm or timm then ours (alternating), so that drifts of the machine hit both alike, and ours/timm is the
median of the within-pair speed ratios. The batch of each row is the power of two that makes one forward of ours take
about ``--target-seconds``; both sides use it. On a shared machine, other processes can slow a forward down tenfold:
the CPU they use is read from /proc/stat around every repetition, disturbed repetitions are measured again (within
``--quiet-budget`` seconds for the whole run), and the table reports what was left ("others' CPU").

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward of our model at batch 1, with the
explicit attention path (``fused_attn=False``, the same arithmetic), because FlopCounterMode does not count the CPU
fused attention kernel. Its convention: a multiply-add counts as 2 FLOPs (matmul, linear and convolution only;
normalisation, softmax and element-wise ops are not counted).

Usage::

    python benchmarks/encoders.py                       # full run (about 6 minutes on 2 quiet cores)
    python benchmarks/encoders.py --quick               # batches of about 0.3 s, 3 repetitions
    python benchmarks/encoders.py --markdown table.md   # also write the table as markdown
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import timm
import torch
import torch.nn.functional as F
from timm.models import swin_transformer_v2 as timm_swin
from timm.models import vision_transformer as timm_vit
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from skysense.models.registry import get_config
from skysense.models.swin_v2 import SwinTransformerV2, SwinV2Config, convert_timm_swinv2_state_dict
from skysense.models.vit import VisionTransformer, ViTConfig

DTYPES = ("fp32", "bf16")


# ----------------------------------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The 'model name' line of /proc/cpuinfo (or the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bf16_hardware() -> str:
    """Whether oneDNN has native bf16 kernels here (AVX-512 BF16 / AMX); without them bf16 is emulated."""
    try:
        return "native" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "emulated (no AVX-512 BF16 / AMX)"
    except (AttributeError, RuntimeError):
        return "unknown"


def machine_lines(threads: int) -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [
        f"date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"cpu: {cpu_model()}, {cores} cores available, SIMD {torch.backends.cpu.get_cpu_capability()}, "
        f"bf16 {bf16_hardware()}",
        f"torch {torch.__version__}, timm {timm.__version__}, python {platform.python_version()}, "
        f"torch threads {threads}",
        f"load average at start (1, 5, 15 min): {load}",
    ]


# ----------------------------------------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------------------------------------


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def precision(dtype: str) -> contextlib.AbstractContextManager:
    """fp32: nothing; bf16: CPU autocast (Linear/matmul/conv in bf16, norms and softmax kept in fp32)."""
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class OtherLoad:
    """Share of the machine's CPU time used by everything but this process (incl. hypervisor steal) while open.

    Timings on a small shared machine mean little if something else ran meanwhile; this says whether it did.
    Reads /proc/stat (Linux); elsewhere ``percent`` stays NaN.
    """

    def __init__(self) -> None:
        self.percent = float("nan")
        self.seconds = 0.0  # wall time the block took

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(value) for value in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> OtherLoad:
        self._start = (time.perf_counter(), self._busy_seconds(), self._own_seconds())
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall_start, busy_start, own_start = self._start
        self.seconds = time.perf_counter() - wall_start
        busy = self._busy_seconds()
        if busy is None or busy_start is None:
            return
        others = (busy - busy_start) - (self._own_seconds() - own_start)
        self.percent = max(0.0, 100 * others / (self.seconds * (os.cpu_count() or 1)))


@dataclass
class QuietPolicy:
    """How hard to try for timings that nothing else disturbed.

    On a small shared machine other jobs come and go, and with every core busy a forward can take 10x longer: a
    measurement during which other processes used more than ``max_other_load`` is thrown away, and the next one
    waits for a quiet second. All this waiting and re-measuring stops once ``budget_seconds`` are spent (over the
    whole run); later measurements are then kept whatever the load, and the table's "others' CPU" shows it.
    """

    max_other_load: float = 10.0  # % of all cores that other processes may use during a kept measurement
    budget_seconds: float = 180.0  # total time the run may spend waiting and re-measuring
    spent_seconds: float = 0.0
    discarded: int = 0  # measurements thrown away so far

    def disturbed(self, load: OtherLoad) -> bool:
        """True (and counted) if ``load`` was above the limit and the budget still allows a re-measurement."""
        if load.percent > self.max_other_load and self.spent_seconds < self.budget_seconds:
            self.discarded += 1
            self.spent_seconds += load.seconds
            return True
        return False

    def wait(self) -> None:
        """Return after the first second in which others used at most ``max_other_load``, or when out of budget."""
        announced = False
        while self.spent_seconds < self.budget_seconds:
            with OtherLoad() as load:
                time.sleep(1.0)
            self.spent_seconds += load.seconds
            if not load.percent > self.max_other_load:  # NaN (cannot tell): go
                return
            if not announced:
                print(f"#   waiting for other processes to go quiet (using {load.percent:.0f}% of the CPU)", flush=True)
                announced = True


@dataclass
class Peak:
    """Measured matmul throughput of one way of multiplying."""

    dtype: str
    method: str
    size: int
    gflops: float


def matmul_peaks(max_size: int, seconds_per_run: float, repeats: int) -> list[Peak]:
    """GFLOP/s (2·n³ per n×n product) of square products, median of ``repeats`` runs, at the best size n.

    The size doubles from 1024 while the next size's run is expected to take at most ``seconds_per_run``, up to
    ``max_size``: a machine that emulates bf16 is 10-100x slower there and would otherwise take minutes.
    bf16 is measured two ways, since autocast sends ``nn.Linear`` to oneDNN and ``torch.matmul`` elsewhere:
    ``torch.matmul`` on bf16 tensors, and ``F.linear`` on fp32 tensors under bf16 autocast.
    """

    def fp32_matmul(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
        return lambda: torch.matmul(a, b)

    def bf16_matmul(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
        a, b = a.bfloat16(), b.bfloat16()
        return lambda: torch.matmul(a, b)

    def bf16_autocast_linear(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return F.linear(a, b)

        return run

    methods = [
        ("fp32", "torch.matmul fp32", fp32_matmul),
        ("bf16", "torch.matmul bf16 tensors", bf16_matmul),
        ("bf16", "F.linear under bf16 autocast", bf16_autocast_linear),
    ]
    peaks = []
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for dtype, method, make in methods:
            best: Peak | None = None
            size = 1024
            while True:
                a = torch.randn(size, size, generator=generator)
                b = torch.randn(size, size, generator=generator)
                run = make(a, b)
                run()  # warm-up
                times = [seconds(run) for _ in range(repeats)]
                gflops = 2 * size**3 / statistics.median(times) / 1e9
                if best is None or gflops > best.gflops:
                    best = Peak(dtype, method, size, gflops)
                if size * 2 > max_size or min(times) * 8 > seconds_per_run:
                    break
                size *= 2
            peaks.append(best)
    return peaks


# ----------------------------------------------------------------------------------------------------------------------
# The compared models
# ----------------------------------------------------------------------------------------------------------------------


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights (timm zero-inits Swin V2's post-norms, which makes every block the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("logit_scale"):
                parameter.copy_(math.log(10.0) + 0.1 * noise)
            elif parameter.ndim == 1 and "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            else:
                parameter.copy_(0.02 * noise)
    return model


@dataclass
class Case:
    """One encoder configuration, built twice (ours, timm) with the same weights."""

    model: str  # table column "model"
    config: str  # table column "config"
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    build: Callable[[bool], tuple[nn.Module, nn.Module]]  # fused_attn → (ours, timm), eval mode, same weights
    # (ours output, timm output) → both in our layout, to check that the weights really are the same
    align: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def swin_case(config: str, swin: SwinV2Config, image_size: int = 256) -> Case:
    # Our output norm on the last stage only is timm's final norm; padding after the shift is timm's order (the two
    # orders agree for 256x256 inputs, whose maps are all window multiples). Neither changes forward_features' cost.
    swin = dataclasses.replace(swin, output_norm_indices=(swin.num_stages - 1,), pad_before_shift=False)

    def build(fused_attn: bool) -> tuple[nn.Module, nn.Module]:
        reference = timm_swin.SwinTransformerV2(
            img_size=image_size,
            in_chans=swin.in_chans,
            patch_size=swin.patch_size,
            window_size=swin.window_size,
            embed_dim=swin.embed_dim,
            depths=swin.depths,
            num_heads=swin.num_heads,
            mlp_ratio=swin.mlp_ratio,
            qkv_bias=swin.qkv_bias,
            pretrained_window_sizes=swin.pretrained_window_sizes,
            num_classes=0,
        )
        randomize(reference).eval()
        ours = SwinTransformerV2(dataclasses.replace(swin, fused_attn=fused_attn)).eval()
        ours.load_state_dict(convert_timm_swinv2_state_dict(reference.state_dict()), strict=True)
        return ours, reference

    def align(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ours, theirs.permute(0, 3, 1, 2)  # timm: (B, H, W, C)

    return Case("HR SwinV2", config, (swin.in_chans, image_size, image_size), build, align)


def vit_case(config: str, vit: ViTConfig) -> Case:
    def build(fused_attn: bool) -> tuple[nn.Module, nn.Module]:
        reference = timm_vit.VisionTransformer(
            img_size=vit.img_size,
            patch_size=vit.patch_size,
            in_chans=vit.in_chans,
            embed_dim=vit.embed_dim,
            depth=vit.depth,
            num_heads=vit.num_heads,
            mlp_ratio=vit.mlp_ratio,
            qkv_bias=vit.qkv_bias,
            class_token=vit.class_token,
            norm_layer=partial(nn.LayerNorm, eps=vit.norm_eps),
            num_classes=0,
        )
        randomize(reference).eval()
        ours = VisionTransformer(dataclasses.replace(vit, fused_attn=fused_attn)).eval()
        ours.load_state_dict(reference.state_dict(), strict=True)  # same names as timm
        return ours, reference

    grid = vit.img_size // vit.patch_size
    prefix = 1 if vit.class_token else 0

    def align(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = theirs[:, prefix:]  # timm: (B, prefix + N, D)
        return ours, tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid)

    return Case("Sentinel ViT", config, (vit.in_chans, vit.img_size, vit.img_size), build, align)


def cases() -> list[Case]:
    small = get_config("small")
    return [
        swin_case(
            "SwinV2-T-like: C96, depths 2-2-6-2, heads 3-6-12-24, w8, 256x256x3",
            SwinV2Config(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=8),
        ),
        swin_case(
            f"preset small HR: C{small.hr.embed_dim}, depths {'-'.join(map(str, small.hr.depths))}, "
            f"heads {'-'.join(map(str, small.hr.num_heads))}, w{small.hr.window_size}, 256x256x{small.hr.in_chans}",
            small.hr,
        ),
        vit_case(
            "ViT-B-like: D768, 12 layers, 12 heads, p4, 64x64x10",
            ViTConfig(in_chans=10, img_size=64, patch_size=4, embed_dim=768, depth=12, num_heads=12),
        ),
        vit_case(
            f"preset small S2: D{small.s2.embed_dim}, {small.s2.depth} layers, {small.s2.num_heads} heads, "
            f"p{small.s2.patch_size}, {small.s2.img_size}x{small.s2.img_size}x{small.s2.in_chans}",
            small.s2,
        ),
    ]


def flops_per_image(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs (2 per multiply-add) of one forward_features at batch 1, in fp32."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.forward_features(torch.randn(1, *input_shape))
    return counter.get_total_flops()


# ----------------------------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: one configuration in one dtype."""

    model: str
    config: str
    dtype: str
    batch: int
    gflop_per_image: float  # counted on ours, 2 FLOPs per multiply-add
    ours_images_per_second: float
    timm_images_per_second: float
    speed_ratio: float  # ours/timm speed: median over repetitions of timm time / ours time within the same pair
    speed_ratio_quartiles: tuple[float, float]  # first and third quartiles of those ratios
    ours_gflops: float  # achieved
    percent_of_peak: float
    ours_seconds: float  # median seconds of one batch
    max_abs_diff: float  # ours vs timm output, batch 1, this dtype
    other_load_percent: float  # CPU used by other processes during the timed repetitions, % of all cores


def timed_quietly(fn: Callable[[], object], quiet: QuietPolicy) -> float:
    """Seconds of one ``fn()``, measured again (after a quiet second) while other processes disturb it."""
    while True:
        with OtherLoad() as load:
            elapsed = seconds(fn)
        if not quiet.disturbed(load):
            return elapsed
        quiet.wait()


def calibrate_batch(
    forward: Callable[[torch.Tensor], object],
    make_input: Callable[[int], torch.Tensor],
    target_seconds: float,
    max_batch: int,
    quiet: QuietPolicy,
) -> torch.Tensor:
    """The input of the smallest power-of-two batch whose forward takes at least ``target_seconds / 1.5``.

    Starts from the largest power of two that one image's time predicts to fit in ``target_seconds`` (time per image
    falls with the batch, so this is too small rather than too large) and doubles; each forward doubles as warm-up.
    """
    seconds_per_image = timed_quietly(lambda: forward(make_input(1)), quiet)
    batch = 2 ** int(math.log2(max(target_seconds / max(seconds_per_image, 1e-9), 1.0)))
    batch = max(1, min(batch, max_batch))
    while True:
        x = make_input(batch)
        if timed_quietly(lambda x=x: forward(x), quiet) >= target_seconds / 1.5 or batch * 2 > max_batch:
            return x
        batch *= 2


def measure(
    case: Case,
    ours: nn.Module,
    reference: nn.Module,
    dtype: str,
    flops: int,
    peak_gflops: float,
    repeats: int,
    target_seconds: float,
    max_batch: int,
    quiet: QuietPolicy,
) -> Row:
    """Check that ours and timm agree, pick the batch, then time ``repeats`` undisturbed pairs of forwards."""
    generator = torch.Generator().manual_seed(1)
    quiet.wait()
    with torch.inference_mode(), precision(dtype):
        single = torch.randn(1, *case.input_shape, generator=generator)
        ours_out = ours.forward_features(single)  # first call: warm-up and output check
        timm_out = reference.forward_features(single)
        aligned_ours, aligned_timm = case.align(ours_out, timm_out)
        max_abs_diff = (aligned_ours.float() - aligned_timm.float()).abs().max().item()
        x = calibrate_batch(
            ours.forward_features,
            lambda batch: torch.randn(batch, *case.input_shape, generator=generator),
            target_seconds,
            max_batch,
            quiet,
        )
        batch = x.shape[0]
        reference.forward_features(x)  # warm-up at the timed batch size (ours was, in the calibration)
        # Repetitions are pairs (ours, timm), the order alternating; a pair that others disturbed is measured again.
        ours_times, timm_times, loads = [], [], []
        while len(ours_times) < repeats:
            pair = {}
            with OtherLoad() as load:
                for name, model in (("ours", ours), ("timm", reference))[:: 1 if len(ours_times) % 2 == 0 else -1]:
                    pair[name] = seconds(lambda model=model: model.forward_features(x))
            if quiet.disturbed(load):
                print(
                    f"#   others used {load.percent:.0f}% of the CPU during a repetition: measuring it again",
                    flush=True,
                )
                quiet.wait()
                continue
            ours_times.append(pair["ours"])
            timm_times.append(pair["timm"])
            loads.append(load.percent)
    print(
        "#   pairs ours/timm, ms: "
        + " ".join(f"{a * 1e3:.0f}/{b * 1e3:.0f}" for a, b in zip(ours_times, timm_times, strict=True)),
        flush=True,
    )
    other_load_percent = max(loads)
    ours_seconds, timm_seconds = statistics.median(ours_times), statistics.median(timm_times)
    ratios = [theirs / mine for mine, theirs in zip(ours_times, timm_times, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    achieved = flops * batch / ours_seconds / 1e9
    return Row(
        model=case.model,
        config=case.config,
        dtype=dtype,
        batch=batch,
        gflop_per_image=flops / 1e9,
        ours_images_per_second=batch / ours_seconds,
        timm_images_per_second=batch / timm_seconds,
        speed_ratio=statistics.median(ratios),
        speed_ratio_quartiles=(quartiles[0], quartiles[2]),
        ours_gflops=achieved,
        percent_of_peak=100 * achieved / peak_gflops,
        ours_seconds=ours_seconds,
        max_abs_diff=max_abs_diff,
        other_load_percent=other_load_percent,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------------

HEADER = (
    "model",
    "config",
    "dtype",
    "batch",
    "GFLOP/img",
    "ours img/s",
    "timm img/s",
    "ours/timm [IQR]",
    "ours GFLOP/s",
    "% of peak",
    "ours s/batch",
    "max abs diff",
    "others' CPU",
)


def row_cells(row: Row) -> tuple[str, ...]:
    return (
        row.model,
        row.config,
        row.dtype,
        str(row.batch),
        f"{row.gflop_per_image:.2f}",
        f"{row.ours_images_per_second:.2f}",
        f"{row.timm_images_per_second:.2f}",
        f"{row.speed_ratio:.2f} [{row.speed_ratio_quartiles[0]:.2f}-{row.speed_ratio_quartiles[1]:.2f}]",
        f"{row.ours_gflops:.1f}",
        f"{row.percent_of_peak:.0f}%",
        f"{row.ours_seconds:.2f}",
        f"{row.max_abs_diff:.1e}",
        f"{row.other_load_percent:.0f}%",
    )


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    numeric = [i >= 3 for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(cells) for cells in rows)])


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    align = ["---" if i < 3 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def stage(message: str) -> Iterator[None]:
    """Progress lines, prefixed with '#' to set them apart from the report."""
    start = time.perf_counter()
    print(f"# {message} ...", flush=True)
    yield
    print(f"#   done in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="batches of about 0.3 s (not 1.5 s), 3 repetitions (not 9)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the results as markdown to PATH")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per row (default 9, quick 3)")
    parser.add_argument(
        "--target-seconds", type=float, default=None, help="time of one timed batch (default 1.5, quick 0.3)"
    )
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated subset of fp32,bf16")
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=10.0,
        help="%% of the CPU other processes may use during a kept repetition (default 10)",
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=180.0,
        help="seconds the whole run may spend waiting for and re-measuring disturbed repetitions (default 180)",
    )
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 9)
    target_seconds = args.target_seconds or (0.3 if args.quick else 1.5)
    max_batch = 8 if args.quick else 128
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = sorted(set(dtypes) - set(DTYPES))
    if unknown:
        parser.error(f"--dtypes: unknown {unknown}; expected a subset of {list(DTYPES)}")
    quiet = QuietPolicy(max_other_load=args.max_other_load, budget_seconds=args.quiet_budget)
    started = time.perf_counter()

    machine = machine_lines(torch.get_num_threads())
    print("\n".join(machine), flush=True)

    def measure_peaks(when: str) -> list[Peak]:
        with stage(f"matmul peak, {when}"):
            while True:
                quiet.wait()
                with OtherLoad() as load:
                    peaks = matmul_peaks(max_size=4096, seconds_per_run=2.0, repeats=5)
                if not quiet.disturbed(load):
                    break
                print(f"#   others used {load.percent:.0f}% of the CPU meanwhile: measuring again", flush=True)
        for peak in peaks:
            print(f"#   {peak.dtype} {peak.method}, n={peak.size}: {peak.gflops:.1f} GFLOP/s", flush=True)
        return peaks

    peaks_before = measure_peaks("before the models")
    peak_by_dtype = {dtype: max(p.gflops for p in peaks_before if p.dtype == dtype) for dtype in DTYPES}

    rows: list[Row] = []
    for case in cases():
        with stage(f"{case.model} | {case.config}"):
            counting, _ = case.build(False)  # explicit attention: FlopCounterMode does not see CPU fused SDPA
            flops = flops_per_image(counting, case.input_shape)
            del counting
            ours, reference = case.build(True)
            for dtype in dtypes:
                rows.append(
                    measure(
                        case,
                        ours,
                        reference,
                        dtype,
                        flops,
                        peak_by_dtype[dtype],
                        repeats,
                        target_seconds,
                        max_batch,
                        quiet,
                    )
                )
                print("#   " + " | ".join(row_cells(rows[-1])), flush=True)
            print(f"#   {flops / 1e9:.2f} GFLOP per image", flush=True)

    # The machine's speed drifts; the peak is the better of the measurements before and after the models.
    peaks_after = measure_peaks("after the models")
    peak_by_dtype = {dtype: max(p.gflops for p in peaks_before + peaks_after if p.dtype == dtype) for dtype in DTYPES}
    for row in rows:
        row.percent_of_peak = 100 * row.ours_gflops / peak_by_dtype[row.dtype]
    peak_lines = [
        f"{before.dtype} {before.method}: {before.gflops:.1f} GFLOP/s (n={before.size}) before the models, "
        f"{after.gflops:.1f} (n={after.size}) after; median of 5 runs at the fastest size n"
        for before, after in zip(peaks_before, peaks_after, strict=True)
    ]
    peak_lines.append(
        "peak used for '% of peak': "
        + ", ".join(f"{dtype} {peak_by_dtype[dtype]:.1f} GFLOP/s" for dtype in DTYPES)
        + " (the best of the above)"
    )

    notes = [
        f"Throughput: forward_features in eval mode under torch.inference_mode, median of {repeats} timed "
        f"repetitions (pairs ours/timm, the order alternating) after warm-up; ours/timm = median over the pairs of "
        "the speed ratio within a pair (steadier on a noisy machine than the ratio of the medians), with the "
        "interquartile range of those ratios in brackets; batch = the "
        f"smallest power of two whose forward of ours takes at least {target_seconds / 1.5:.2g} s (aiming at "
        f"{target_seconds:g} s).",
        "GFLOP/img: torch.utils.flop_counter.FlopCounterMode on one forward of our model (explicit attention "
        "path), 2 FLOPs per multiply-add, matmul/linear/conv only; the same count is used for fp32 and bf16. "
        "ours GFLOP/s = GFLOP/img x ours img/s.",
        "% of peak: ours GFLOP/s over the measured matmul peak of that dtype. "
        "bf16 = torch.autocast('cpu', dtype=torch.bfloat16). max abs diff: largest absolute difference of the "
        "two outputs at batch 1 in that dtype (same weights). others' CPU: CPU time used by other processes (and "
        "hypervisor steal) during the row's kept repetitions, the worst one, in % of all cores. A repetition during "
        f"which others used more than {quiet.max_other_load:g}% was thrown away and measured again after a quiet "
        f"second ({quiet.discarded} thrown away, {quiet.spent_seconds:.0f} s of the {quiet.budget_seconds:g} s "
        "budget spent on waiting and re-measuring); rows still above that limit are suspect.",
        f"Total run time {time.perf_counter() - started:.0f} s.",
    ]
    table_rows = [row_cells(row) for row in rows]
    print()
    print("\n".join(peak_lines))
    print()
    print(text_table(HEADER, table_rows))
    print()
    print("\n".join(notes))

    if args.markdown:
        with open(args.markdown, "w") as markdown:
            markdown.write("\n".join(f"- {line}" for line in machine + peak_lines) + "\n\n")
            markdown.write(markdown_table(HEADER, table_rows) + "\n\n")
            markdown.write("\n".join(f"- {line}" for line in notes) + "\n")
        print(f"# markdown written to {args.markdown}")


if __name__ == "__main__":
    main()
