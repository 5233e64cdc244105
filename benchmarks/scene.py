"""Scene-scale inference speed and memory (issue 6): ``skysense predict`` over large scenes built by mosaicking real
tiles, against the bare model forward on the same tiles held in memory.

Scenes: the real 1024² aerial COG ``cogeo.tif`` (rasterio test data, 0.6 m, EPSG:3857) repeated into 2k², 4k² and
8k² HR GeoTIFFs (tiled, deflate); for the fused run, S2 L1C and S1 stacks of 3 dates each on the co-registered
32× coarser grid, filled from the real Sen1Floods11 chips (13-band S2 TOA, VV/VH dB). Each measurement runs in a fresh process, so its peak RSS
(``ru_maxrss``) is its own.

TerraTorch (``--terratorch-python``, a Python where ``pip install terratorch`` worked): its ``tiled_inference``
with the same model, tile, stride and batch on the whole scene read into one tensor (as it takes it), timed from
the read to the class map in memory (writing is left to its user).

Rows: the scene pipeline (read → normalise → forward → blend → COG) per scene size, and the bare forward of the
same model on the scene's first ``--bare-tiles`` tiles (0: all of them, the same tiles as the pipeline), pre-read
into memory, same batch size, in the same process right after the pipeline. The ratio compares tiles per second;
with ``--repeat N`` the pipeline and the bare forward alternate N times and the pair with the median ratio is shown
(this shared CPU's speed drifts by ±25 % between runs). The model is the tiny preset with an HR UperNet head (random
init: speed does not depend on the weights).

    python benchmarks/scene.py --sizes 2048 4096 8192 --out runs/scene-bench --terratorch-python venv-tt/bin/python
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_name  # benchmarks/machine.py (this folder is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; a machine that gets only the checkout finds a copy in its shared/ folder
DATA = next(
    (d for d in (REPO.parent / "shared" / "data", REPO / "shared" / "data") if d.is_dir()),
    REPO.parent / "shared" / "data",
)
COG = DATA / "rasterio_testdata" / "tests" / "data" / "cogeo.tif"
S1_DIR = DATA / "sen1floods11_samples" / "sample_data" / "S1"
S2_CHIP = DATA / "sen1floods11_samples" / "cloudtostreet_official_sample" / "S2" / "Spain_7370579_S2Hand.tif"


def build_scene(size: int, out: Path) -> Path:
    """A size² HR mosaic of the real COG (tiled deflate GeoTIFF, the COG's CRS and resolution)."""
    import rasterio
    from rasterio.windows import Window

    path = out / f"hr_{size}.tif"
    if path.exists():
        return path
    with rasterio.open(COG) as src:
        tile = src.read()
        profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=src.crs,
                       transform=src.transform, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                       BIGTIFF="IF_SAFER")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, tile.shape[1]):
            for col in range(0, size, tile.shape[2]):
                h, w = min(tile.shape[1], size - row), min(tile.shape[2], size - col)
                dst.write(tile[:, :h, :w], window=Window(col, row, w, h))
    return path


def build_s1_stack(hr: Path, out: Path, dates: tuple[str, ...] = ("20190104", "20190116", "20190128")) -> Path:
    """Per-date S1 GeoTIFFs on the grid co-registered with ``hr`` (32× coarser), tiled from the real chips."""
    import rasterio
    from rasterio.transform import Affine

    folder = out / f"s1_{hr.stem}"
    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    chips = sorted(p for p in S1_DIR.glob("*_S1Hand.tif") if "Paraguay" not in p.name)  # Paraguay is all NaN
    with rasterio.open(hr) as src:
        crs, transform, size = src.crs, src.transform @ Affine.scale(32), src.width // 32
    for index, date in enumerate(dates):
        with rasterio.open(chips[index % len(chips)]) as chip:
            values = chip.read()[:, :size, :size]
        values = np.tile(values, (1, -(-size // values.shape[1]), -(-size // values.shape[2])))[:, :size, :size]
        profile = dict(driver="GTiff", width=size, height=size, count=2, dtype="float32", crs=crs,
                       transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                       nodata=float("nan"))  # fmt: skip
        with rasterio.open(folder / f"S1_{date}.tif", "w", **profile) as dst:
            dst.write(values.astype(np.float32))
            dst.descriptions = ("VV", "VH")
    return folder


def build_s2_stack(hr: Path, out: Path, dates: tuple[str, ...] = ("20190110", "20190204", "20190301")) -> Path:
    """Per-date 13-band S2 L1C GeoTIFFs (int16 TOA × 1e4) on the grid co-registered with ``hr``, tiled from the real
    Sen1Floods11 S2 chip (rolled by a few pixels per date)."""
    import rasterio
    from rasterio.transform import Affine

    folder = out / f"s2_{hr.stem}"
    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    with rasterio.open(S2_CHIP) as chip:
        values, descriptions = chip.read(), chip.descriptions
    with rasterio.open(hr) as src:
        crs, transform, size = src.crs, src.transform @ Affine.scale(32), src.width // 32
    for index, date in enumerate(dates):
        rolled = np.roll(values, 7 * index, axis=-1)
        tiled = np.tile(rolled, (1, -(-size // values.shape[1]), -(-size // values.shape[2])))[:, :size, :size]
        profile = dict(driver="GTiff", width=size, height=size, count=13, dtype="int16", crs=crs,
                       transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                       nodata=0)  # fmt: skip
        with rasterio.open(folder / f"S2_{date}.tif", "w", **profile) as dst:
            dst.write(tiled)
            dst.descriptions = descriptions
    return folder


def build_sentinel_scene(
    kind: str, size: int, out: Path, dates: tuple[str, ...] = ("20190110", "20190204", "20190301")
) -> Path:
    """A Sentinel-only scene of ``size``² pixels on the real chips' own grid (EPSG:4326, ~10 m): 3 dates of 13-band
    S2 L1C (int16, the Sen1Floods11 Spain chip, rolled per date) or of VV/VH S1 (dB, the Sen1Floods11 chips), tiled."""
    import rasterio

    folder = out / f"{kind}only_{size}"
    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    chips = [S2_CHIP] if kind == "s2" else sorted(p for p in S1_DIR.glob("*_S1Hand.tif") if "Paraguay" not in p.name)
    for index, date in enumerate(dates):
        with rasterio.open(chips[index % len(chips)]) as chip:
            values, descriptions, crs, transform = chip.read(), chip.descriptions, chip.crs, chip.transform
        values = np.roll(values, 7 * index, axis=-1)
        tiled = np.tile(values, (1, -(-size // values.shape[1]), -(-size // values.shape[2])))[:, :size, :size]
        profile = dict(driver="GTiff", width=size, height=size, count=values.shape[0], dtype=values.dtype.name,
                       crs=crs, transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                       nodata=0 if kind == "s2" else float("nan"))  # fmt: skip
        with rasterio.open(folder / f"{kind.upper()}_{date}.tif", "w", **profile) as dst:
            dst.write(tiled)
            dst.descriptions = descriptions if kind == "s2" else ("VV", "VH")
    return folder


S2_RESOLUTION = {"B2": 10, "B3": 10, "B4": 10, "B8": 10, "B1": 60, "B9": 60, "B10": 60}  # the others: 20 m


def build_s2_safe_scene(size: int, out: Path, dates: tuple[str, ...] = ("20190110", "20190204", "20190301")) -> Path:
    """The S2 L1C scene of :func:`build_sentinel_scene` as users download it: one ``.SAFE`` product per date, each
    band a lossless JPEG 2000 file at its own resolution (10/20/60 m: block means of the 10 m values, DN + the 04.00
    offset of 1000), in GDAL's default 1024² JP2 tiles, with ``MTD_MSIL1C.xml`` and a cloud-free ``MSK_CLASSI``.
    ``size`` is rounded down to a multiple of 6 (whole 60 m pixels)."""
    import rasterio
    from rasterio.transform import Affine

    from skysense.data.products.sentinel2 import BANDS

    size = size // 6 * 6
    folder = out / f"s2safe_{size}"
    if folder.exists():
        return folder
    stacks = build_sentinel_scene("s2", size, out, dates)
    partial = folder.with_name(folder.name + ".partial")
    for date in dates:
        with rasterio.open(stacks / f"S2_{date}.tif") as src:
            values, crs, transform = src.read().astype(np.float64), src.crs, src.transform
        time = f"{date}T105619"
        safe = partial / f"S2B_MSIL1C_{time}_N0400_R094_T30SYH_{date}T131452.SAFE"
        images = safe / "GRANULE" / f"L1C_T30SYH_A028000_{time}" / "IMG_DATA"
        images.mkdir(parents=True)
        (images.parent / "QI_DATA").mkdir()
        with rasterio.open(images.parent / "QI_DATA" / "MSK_CLASSI_B00.jp2", "w", driver="JP2OpenJPEG",
                           width=size // 6, height=size // 6, count=3, dtype="uint8", crs=crs,
                           transform=transform @ Affine.scale(6), QUALITY=100, REVERSIBLE="YES") as dst:  # fmt: skip
            dst.write(np.zeros((3, size // 6, size // 6), np.uint8))  # clouds, cirrus, snow: none
        offsets = "".join(f'<RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>' for i in range(13))
        (safe / "MTD_MSIL1C.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2'
            '.eo.esa.int/PSD/User_Product_Level-1C.xsd"><n1:General_Info><Product_Info><PRODUCT_TYPE>S2MSI1C'
            "</PRODUCT_TYPE><PROCESSING_BASELINE>04.00</PROCESSING_BASELINE></Product_Info>"
            '<Product_Image_Characteristics><QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
            f"<Radiometric_Offset_List>{offsets}</Radiometric_Offset_List></Product_Image_Characteristics>"
            "</n1:General_Info></n1:Level-1C_User_Product>"
        )
        for index, band in enumerate(BANDS):
            factor = S2_RESOLUTION.get(band, 20) // 10
            plane = values[index].reshape(size // factor, factor, size // factor, factor).mean(axis=(1, 3))
            code = band if band == "B8A" else f"B{int(band[1:]):02d}"
            with rasterio.open(images / f"T30SYH_{time}_{code}.jp2", "w", driver="JP2OpenJPEG", width=size // factor,
                               height=size // factor, count=1, dtype="uint16", crs=crs,
                               transform=transform @ Affine.scale(factor), QUALITY=100,
                               REVERSIBLE="YES") as dst:  # fmt: skip
                dst.write(np.rint(plane + 1000).astype(np.uint16)[None])
    partial.rename(folder)
    return folder


def make_checkpoint(out: Path, preset: str = "tiny") -> Path:
    import lightning
    import torch

    from skysense.tasks.segmentation import SegmentationTask

    path = out / f"seg_{preset}_hr.ckpt"
    if not path.exists():
        torch.manual_seed(0)
        task = SegmentationTask(num_classes=4, preset=preset, modalities=["hr"], source="hr", head_channels=64,
                                norm="group")  # fmt: skip
        checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                      "pytorch-lightning_version": lightning.__version__}  # fmt: skip
        task.on_save_checkpoint(checkpoint)
        torch.save(checkpoint, path)
    return path


def synchronize(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def warm_up(model, sources, args: argparse.Namespace) -> None:
    """One forward of a batch (the first tile, ``--batch-size`` times) on the device, untimed: the device's one-off
    start (CUDA context, cuBLAS and cuDNN handles, the first kernels' loading) is then outside the pipeline's time,
    as it is outside the bare forward's. A scene run pays it once per process whatever the scene's size."""
    import torch

    from skysense.inference.sources import TileReader, stack_inputs

    modalities = [m for m in model.modalities if m in sources.modalities]
    reader = TileReader(sources, modalities, model.hr_channels, check_scene=False)
    # a whole batch, as the bare forward's warm-up: the first call at a batch size also builds its kernels (oneDNN
    # primitives on a CPU), about 0.5 s for the tiny preset, which the bare forward's timing leaves out too
    batch = stack_inputs([reader.read(0, 0, args.tile)[0]] * args.batch_size)
    reader.close()
    model.network.to(args.device)
    autocast = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    with torch.inference_mode(), autocast:
        model(batch.to(args.device), args.tile)
    synchronize(args.device)


def time_forwards(model, device: str) -> list[float]:
    """Time every forward of ``model`` from now on (on a CPU, where a call returns when its work is done; on a GPU
    the pipeline's "run on device" stage is the model's time): the list the seconds are appended to. The model's
    share of a pipeline run, measured in the run itself, is free of the CPU's drift between a pipeline run and the
    bare run it is paired with."""
    times: list[float] = []
    if torch_device_type(device) != "cpu":
        return times
    base = type(model)

    class Timed(base):
        def __call__(self, inputs, tile):
            began = time.perf_counter()
            try:
                return base.__call__(self, inputs, tile)
            finally:
                times.append(time.perf_counter() - began)

    model.__class__ = Timed
    return times


def torch_device_type(device: str) -> str:
    import torch

    return torch.device(device).type


def bare_forward(model, sources, args: argparse.Namespace) -> tuple[int, float]:
    """The model alone on the scene's first ``--bare-tiles`` tiles of the same layout, pre-read into memory, same
    batch size: (tiles, seconds)."""
    import torch

    from skysense.inference.plan import scene_alignment
    from skysense.inference.sources import TileReader, stack_inputs
    from skysense.inference.tiling import TileLayout

    grid = sources.grid
    modalities = [m for m in model.modalities if m in sources.modalities]
    layout = TileLayout(grid.height, grid.width, args.tile, args.tile - args.overlap, 10**9,
                        scene_alignment(model, sources)[0])  # fmt: skip
    origins = [(r, c) for r in layout.rows for c in layout.cols][: args.bare_tiles or None]  # 0: every tile
    reader = TileReader(sources, modalities, model.hr_channels)
    batches = [
        stack_inputs([reader.read(r, c, args.tile)[0] for r, c in origins[i : i + args.batch_size]])
        for i in range(0, len(origins), args.batch_size)
    ]
    reader.close()
    model.network.to(args.device)
    autocast = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    with torch.inference_mode(), autocast:
        model(batches[0].to(args.device), args.tile)  # warm-up
        synchronize(args.device)
        start = time.perf_counter()
        for batch in batches:  # the host → device copy is part of the forward's cost, as in the pipeline
            model(batch.to(args.device), args.tile).cpu()
        synchronize(args.device)
        seconds = time.perf_counter() - start
    return len(origins), seconds


def measure(args: argparse.Namespace) -> dict:
    """One measurement in this process (called in a child): the scene pipeline or the bare forward."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as `skysense` sets it (huge pages for large tensors)
    import torch

    from skysense.inference import SceneSources, SeriesSource, load_scene_model, predict_scene
    from skysense.inference.sources import TileReader

    torch.set_num_threads(args.threads)
    hr = Path(args.hr)
    if args.mode in ("s2only", "s1only"):  # Sentinel grid: no HR image
        from skysense.models.registry import create_model
        from skysense.models.weights import save_pretrained

        weights = save_pretrained(create_model("tiny"), Path(args.out) / "tiny.safetensors")
        model = load_scene_model(weights, "embedding", sentinel_reference=True)
        kind = args.mode[:2]
        series = SeriesSource.from_arg(hr, "s2_l1c" if kind == "s2" else "s1_grd")
        sources = SceneSources(**{kind: series})
    elif args.mode == "fused":
        from skysense.models.registry import create_model
        from skysense.models.weights import save_pretrained

        weights = save_pretrained(create_model("tiny"), Path(args.out) / "tiny.safetensors")
        model = load_scene_model(weights, "embedding")
        sources = SceneSources(
            hr=hr, s2=SeriesSource.from_arg(args.s2, "s2_l1c"), s1=SeriesSource.from_arg(args.s1, "s1_grd")
        )
    else:
        model = load_scene_model(args.checkpoint)
        sources = SceneSources(hr=hr)
    stages: dict[str, float] = {}  # the pipeline's seconds per stage (scene runs only)
    if args.mode == "terratorch":  # TerraTorch's tiled_inference: the whole scene as one tensor in memory
        from terratorch.tasks.tiled_inference import tiled_inference

        from skysense.batch import SkySenseInput

        model.network.to(args.device)
        start = time.perf_counter()
        reader = TileReader(sources, ["hr"], model.hr_channels)
        grid = sources.grid
        scene, _ = reader.read(0, 0, max(grid.height, grid.width))  # normalised (C, H, W), nodata filled
        reader.close()
        scene = scene["hr"][None, :, : grid.height, : grid.width]

        def forward(x):
            return model(SkySenseInput(hr=x.to(args.device)), x.shape[-1])

        with torch.inference_mode():
            probabilities = tiled_inference(forward, scene, out_channels=model.channels, crop=args.tile,
                                            stride=args.tile - args.overlap, batch_size=args.batch_size,
                                            device=args.device)  # fmt: skip
        classes = probabilities.argmax(dim=1)  # what a user writes out next (not timed: writing is theirs)
        seconds = time.perf_counter() - start
        del classes
        tiles, skipped = 0, 0  # its own tiling (crops with a trimmed border): compare MP/s, not tiles/s
        bare, inside = None, None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    elif args.mode in ("scene", "fused", "s2only", "s1only"):
        warm_up(model, sources, args)  # the bare forward below is timed after its warm-up: so is the pipeline
        pairs = []  # (pipeline report, bare tiles/s, the pipeline's forwards' seconds): alternated (CPU drift)
        peak = None
        forwards = time_forwards(model, args.device)
        for _ in range(args.repeat):
            forwards.clear()
            report = predict_scene(model, sources, Path(args.out) / f"{args.mode}_{hr.stem}.tif", tile=args.tile,
                                   overlap=args.overlap, batch_size=args.batch_size, progress=False,
                                   device=args.device, precision=args.precision, workers=args.workers,
                                   dtype=args.dtype, compress=args.compress)  # fmt: skip
            peak = peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # MiB, before any bare run
            inside = sum(forwards) if forwards else report.stages.get("run on device")
            bare_tiles, bare_seconds = bare_forward(model, sources, args)
            pairs.append((report, bare_tiles / bare_seconds, inside))
        # the pair of the median ratio (its pipeline run's stages with it)
        pairs.sort(key=lambda pair: pair[1] * pair[0].seconds)
        report, bare, inside = pairs[len(pairs) // 2]
        tiles, seconds, skipped = report.tiles - report.skipped, report.seconds, report.skipped
        stages = report.stages
    else:
        tiles, seconds = bare_forward(model, sources, args)
        skipped, bare, inside = 0, None, None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"mode": args.mode, "scene": hr.stem, "tiles": tiles, "skipped": skipped, "seconds": seconds,
            "bare_tiles_per_s": bare, "model_seconds": inside,
            "tiles_per_s": tiles / seconds if tiles else None, "megapixels": None if args.mode == "bare" else
            int(hr.stem.split("_")[1]) ** 2 / 1e6, "peak_rss_mib": peak, "tile": args.tile,
            "stages": stages}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[2048, 4096, 8192], help="HR scenes (none: skip)")
    parser.add_argument("--fused-size", type=int, default=4096, help="scene size of the HR+S1 run (0: none)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--bare-tiles", type=int, default=32, help="tiles of the bare forward (0: the scene's all)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="pipeline and bare runs, alternated in one process; the pair of median ratio is shown",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reader threads of the pipeline (default: predict_scene's, 0 on a CPU, 1 on a GPU)",
    )
    parser.add_argument(
        "--bare-run",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a separate bare-forward run on the largest HR scene, in a process of its own (every pipeline row "
        "also has its ratio to the bare forward measured in its own process)",
    )
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "scene-bench")
    parser.add_argument(
        "--terratorch-python", help="a Python with terratorch installed (its tiled_inference runs there)"
    )
    parser.add_argument("--terratorch-sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--sentinel-sizes", type=int, nargs="*", default=[1024],
                        help="Sentinel-only scenes (S2 L1C and S1, 3 dates each; 0 or none: skip)")  # fmt: skip
    parser.add_argument("--sentinel-tiles", type=int, nargs="+", default=[128, 512],
                        help="tile sides of the Sentinel-only runs (overlap: a quarter)")  # fmt: skip
    parser.add_argument(
        "--s2-layout",
        default="stack",
        choices=["stack", "safe"],
        help="S2 scenes as per-date 13-band GeoTIFFs, or as SAFE products of per-band JPEG 2000",
    )
    parser.add_argument("--sentinel-kinds", nargs="+", default=["s2", "s1"], choices=["s2", "s1"],
                        help="which Sentinel-only scenes to run")  # fmt: skip
    parser.add_argument("--preset", default="tiny", help="the HR segmenter's preset (UperNet head, random init)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="embedding output")
    parser.add_argument("--compress", default="auto", help="the output's GeoTIFF compression")
    parser.add_argument("--mode", choices=["scene", "bare", "fused", "terratorch", "s2only", "s1only"],
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--hr", help=argparse.SUPPRESS)
    parser.add_argument("--s1", help=argparse.SUPPRESS)
    parser.add_argument("--s2", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # child
        print(json.dumps(measure(args)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(args.out, args.preset)
    common = [sys.executable, __file__, "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch-size",
              str(args.batch_size), "--bare-tiles", str(args.bare_tiles), "--threads", str(args.threads),
              "--out", str(args.out), "--checkpoint", str(checkpoint), "--device", args.device,
              "--precision", args.precision, "--dtype", args.dtype, "--compress", args.compress, "--repeat",
              str(args.repeat)] + (["--workers", str(args.workers)] if args.workers is not None else [])  # fmt: skip
    runs = []
    for size in [s for s in args.sentinel_sizes if s]:
        for kind in args.sentinel_kinds:
            if kind == "s2" and args.s2_layout == "safe":
                scene = build_s2_safe_scene(size, args.out)
            else:
                scene = build_sentinel_scene(kind, size, args.out)
            for tile in args.sentinel_tiles:
                tiled = [*common]
                tiled[tiled.index("--tile") + 1], tiled[tiled.index("--overlap") + 1] = str(tile), str(tile // 4)
                done = subprocess.run([*tiled, "--mode", f"{kind}only", "--hr", str(scene)], check=True,
                                      capture_output=True, text=True)  # fmt: skip
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(runs[-1], flush=True)
    plan = [("bare", max(args.sizes), None)] if args.sizes and args.bare_run else []
    plan += [("scene", size, None) for size in args.sizes]
    if args.fused_size:
        plan.append(("fused", args.fused_size, True))
    if args.terratorch_python:
        plan += [("terratorch", size, None) for size in args.terratorch_sizes]
    for mode, size, fused in plan:
        hr = build_scene(size, args.out)
        extra = ["--s1", str(build_s1_stack(hr, args.out)), "--s2", str(build_s2_stack(hr, args.out))] if fused else []
        command = [args.terratorch_python, *common[1:]] if mode == "terratorch" else common
        done = subprocess.run([*command, "--mode", mode, "--hr", str(hr), *extra], check=True, capture_output=True,
                              text=True)  # fmt: skip
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    import torch

    print(f"\n# {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} cores, "
          f"{args.threads} threads, torch {torch.__version__}")  # fmt: skip
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(
        f"# tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}, {args.precision}, {args.dtype} output, "
        f"{args.compress}, {args.preset} preset (HR runs), device warmed up before every timed run, "
        f"device {device}, bare forward on {args.bare_tiles or 'all the'} tiles, median of {args.repeat} "
        f"alternated pair{'s' * (args.repeat > 1)}, pipeline workers "
        f"{args.workers if args.workers is not None else 'default'}\n"
    )
    print(
        "| run | scene | tiles run | seconds | tiles/s | MP/s (scene) | × bare forward (same process) "
        "| model's share of the run | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        scene = run["scene"].replace("hr_", "").split("_")[-1] + "²"
        mp = f"{run['megapixels'] / run['seconds']:.2f}" if run["megapixels"] else "–"
        label = {"bare": f"bare forward, {run['tiles']} tiles in memory", "scene": "skysense predict (HR)",
                 "fused": "skysense embed (HR + S2 L1C + S1, 3 dates each, fused)",
                 "terratorch": "TerraTorch tiled_inference (scene in memory)",
                 "s2only": f"skysense embed (S2 L1C only, 3 dates, fused; tile {run['tile']}"
                           f"{'; SAFE products, JPEG 2000 bands' if 'safe' in run['scene'] else ''})",
                 "s1only": f"skysense embed (S1 only, 3 dates, fused; tile {run['tile']})"}[run["mode"]]  # fmt: skip
        ratio = f"{run['tiles_per_s'] / run['bare_tiles_per_s']:.2f}" if run.get("bare_tiles_per_s") else "–"
        tiles_per_s = f"{run['tiles_per_s']:.2f}" if run["tiles_per_s"] else "–"
        share = f"{run['model_seconds'] / run['seconds']:.2f}" if run.get("model_seconds") else "–"
        print(f"| {label} | {scene} | {run['tiles'] or '–'} | {run['seconds']:.1f} | {tiles_per_s} | {mp} | "
              f"{ratio} | {share} | {run['peak_rss_mib']:.0f} |")  # fmt: skip
    staged = [run for run in runs if run.get("stages")]
    if staged:  # where each pipeline run's time went (SceneReport.stages)
        names = list(staged[0]["stages"])
        print(f"\n| run | scene | {' | '.join(names)} |")
        print("|---|---|" + "---|" * len(names))
        for run in staged:
            scene = run["scene"].replace("hr_", "").split("_")[-1] + "²"
            shares = " | ".join(f"{run['stages'][n]:.1f} s ({run['stages'][n] / run['seconds']:.0%})" for n in names)
            print(f"| {run['mode']} tile {run['tile']} | {scene} | {shares} |")


if __name__ == "__main__":
    main()
