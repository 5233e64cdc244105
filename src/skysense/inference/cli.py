"""``skysense predict-scene …``, ``skysense embed …`` and ``skysense export …``: scene-scale commands.

    skysense predict-scene --checkpoint seg.ckpt --hr scene.tif --output map.tif [--probabilities]
    skysense predict-scene --checkpoint flood.ckpt --s1 s1_dir/ --output water.tif
    skysense embed   --checkpoint pretrain.ckpt --hr scene.tif [--s2 dir/] [--s1 dir/] --output embeddings.tif
    skysense export  --format onnx --checkpoint seg.ckpt --hr tile.tif --output model.onnx

(``skysense predict --config …`` is the LightningCLI command over a data module. ``skysense predict --checkpoint …``
with scene options still runs the scene command, the name it had before ``predict-scene``.)
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path

from skysense.errors import ArgumentParser, Interrupted, UsageError, int_at_least


def _add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="task/pretraining .ckpt or .safetensors")
    parser.add_argument("--hr", type=Path, help="HR image (GeoTIFF/COG of any size, 0-255 RGB[+NIR])")
    parser.add_argument("--hr-bands", help="HR bands in model order, 1-based indexes or names (e.g. 1,2,3)")
    parser.add_argument(
        "--hr-range",
        help="HR imagery that is not 8-bit: LOW,HIGH (the values that become 0 and "
        "255, e.g. 0,2047 for 11-bit DN), or auto (each band's 2-98 %% percentiles over the scene)",
    )
    parser.add_argument("--s2", nargs="+", help="Sentinel-2: .SAFE folders or .SAFE.zip files (or a folder of them), "
                        "EOPF .zarr products (folders, zips or https:// / s3:// URLs), STAC Item JSONs, IMG_DATA "
                        "folders, per-band product files, or per-date GeoTIFFs (files or a folder)")  # fmt: skip
    parser.add_argument("--s2-sensor", default="auto", choices=["auto", "s2_l2a", "s2_l1c"],
                        help="auto: the products' level, else s2_l2a (stacked GeoTIFFs)")  # fmt: skip
    parser.add_argument("--s2-dates", help="comma-separated ISO dates, one per S2 file (default: from the files)")
    parser.add_argument("--s1", nargs="+", help="Sentinel-1 files or a directory of per-date GeoTIFFs")
    parser.add_argument("--s1-sensor", default="auto", choices=["auto", "s1_grd", "s1_grd_linear"],
                        help="auto: power or dB from an ASF HyP3 name, else from the values (a sample that is "
                        "99 %% >= 0 is linear power), said in one line; s1_grd: dB; s1_grd_linear: power")  # fmt: skip
    parser.add_argument("--s1-dates", help="comma-separated ISO dates, one per S1 file (default: from the files)")
    parser.add_argument("--filename-regex", help="regex with a (?P<date>...) group: Sentinel dates from file names")
    parser.add_argument("--date-format", default="%Y%m%d", help="strptime format of that group (default %%Y%%m%%d)")
    parser.add_argument("--sidecar", type=Path, help="JSON/CSV table: Sentinel file name → date")
    parser.add_argument("--allow-duplicate-dates", action="store_true",
                        help="keep several Sentinel files of one date (refused by default)")  # fmt: skip
    parser.add_argument("--ratio", type=int_at_least(1), default=32, help="HR pixels per Sentinel pixel (default 32)")
    parser.add_argument("--output", type=Path, required=True,
                        help="output .tif (a Cloud-Optimized GeoTIFF) or .zarr (a Zarr data cube in xarray/rioxarray "
                        "conventions; needs `pip install 'skysense[zarr]'`)")  # fmt: skip
    parser.add_argument("--tile", type=int_at_least(1), help="tile side in input pixels (default 512 with --hr, "
                        "128 on a Sentinel grid)")  # fmt: skip
    parser.add_argument("--overlap", type=int_at_least(0), help="overlap between tiles in pixels (default 128 with "
                        "--hr, 32 on a Sentinel grid)")  # fmt: skip
    parser.add_argument("--batch-size", type=int_at_least(1), default=4, help="tiles per forward (default 4)")
    parser.add_argument("--chunk", type=int_at_least(1), help="output chunk side, output pixels, >= the tile, a "
                        "multiple of 16 (default: ~100 MB of accumulator)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, …)")
    parser.add_argument("--workers", type=int_at_least(0), help="reader threads (default: 1 on a GPU, 0 on a CPU: "
                        "reads between forwards)")  # fmt: skip
    parser.add_argument("--precision", default="32", choices=["32", "bf16"], help="bf16: autocast")
    parser.add_argument("--compress", default="auto", help="GeoTIFF compression (deflate, zstd, lzw, none; default "
                        "auto: deflate for class maps, zstd for probabilities and embeddings)")  # fmt: skip
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                        help="probabilities/embeddings as float32, or float16 (half the size)")  # fmt: skip
    parser.add_argument("--gdal-cache-mb", type=int_at_least(16), help="GDAL block cache in MB (default: two block "
                        "rows of every input, at least 64, at most a quarter of the memory)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last chunk row")
    parser.add_argument("--allow-ungeoreferenced", action="store_true",
                        help="accept a scene without CRS (a map in pixel coordinates, tagged as such)")  # fmt: skip


def _series(args: argparse.Namespace, name: str):
    from skysense.inference.sources import SeriesSource

    files = getattr(args, name)
    if not files:
        return None
    dates = getattr(args, f"{name}_dates")
    if dates is not None:
        dates = _option_dates(dates, f"--{name}-dates")
    sensor = getattr(args, f"{name}_sensor")
    return SeriesSource.from_arg(
        files[0] if len(files) == 1 else list(files), "s1_auto" if (name, sensor) == ("s1", "auto") else sensor,
        dates, allow_duplicate_dates=args.allow_duplicate_dates,
        filename_regex=args.filename_regex, date_format=args.date_format, sidecar=args.sidecar,
    )  # fmt: skip


def _option_dates(text: str, option: str) -> list[str]:
    """``--s2-dates``/``--s1-dates`` checked as given: each an ISO date (or another form
    :func:`~skysense.data.dates.parse_date` reads), none after today.

    Raises:
        UsageError: naming the option and the value.
    """
    import datetime as dt

    from skysense.data.dates import parse_date

    values = [v.strip() for v in text.split(",")]
    if not any(values):
        raise UsageError(f"{option}: empty; give one ISO date per file, comma-separated (e.g. 2019-09-17,2019-09-29)")
    today = dt.datetime.now(dt.timezone.utc).date()
    for value in values:
        try:
            day = parse_date(value, source=option)
        except ValueError as err:
            raise UsageError(f"{err}; give ISO dates such as 2019-09-17, comma-separated") from None
        if day > today:
            raise UsageError(f"{option}: {value} is after today ({today} UTC); give the acquisition dates")
    return values


def _bands(text: str | None) -> list[int | str] | None:
    if not text:
        return None
    return [int(b) if b.strip().isdigit() else b.strip() for b in text.split(",")]


def _hr_range(text: str | None) -> tuple[float, float] | str | None:
    """``--hr-range``: "auto", or LOW,HIGH as two numbers."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--hr-range: {text!r}; give LOW,HIGH (two numbers, e.g. 0,2047) or auto") from None
    return low, high


def _sources(args: argparse.Namespace):
    from skysense.inference.sources import SceneSources

    return SceneSources(
        hr=args.hr,
        hr_bands=_bands(args.hr_bands),
        hr_range=_hr_range(args.hr_range),
        s2=_series(args, "s2"),
        s1=_series(args, "s1"),
        ratio=args.ratio,
    )


def _resume_command(command: str, argv: Sequence[str]) -> str:
    """The exact command line that resumes this run."""
    words = ["skysense", command, *argv]
    if "--resume" not in argv:
        words.append("--resume")
    return shlex.join(words)


def _run(args: argparse.Namespace, kind: str, command: str, argv: Sequence[str]) -> int:
    from skysense.inference.models import load_scene_model
    from skysense.inference.plan import check_output_path, input_files
    from skysense.inference.scene import predict_scene

    sources = _sources(args)
    check_output_path(args.output, {**input_files(sources), "checkpoint": [args.checkpoint]})  # before any work
    model = load_scene_model(
        args.checkpoint,
        "classes" if kind in ("classes", "probabilities") else "embedding",
        network=getattr(args, "network", "teacher"),
        ratio=args.ratio,
        sentinel_reference=args.hr is None,
        source=getattr(args, "source", "auto"),
    )
    try:
        report = predict_scene(
            model, sources, args.output, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
            output_kind=kind, chunk=args.chunk, device=args.device, precision=args.precision, compress=args.compress,
            progress=not args.no_progress, workers=args.workers, resume=args.resume, checkpoint=args.checkpoint,
            allow_ungeoreferenced=args.allow_ungeoreferenced, dtype=args.dtype, gdal_cache_mb=args.gdal_cache_mb,
        )  # fmt: skip
    except KeyboardInterrupt as err:
        notes = " ".join(getattr(err, "__notes__", []))
        if "--resume" in notes:
            raise Interrupted(
                f"interrupted: {notes.split(';')[0]}; resume with: {_resume_command(command, argv)}"
            ) from None
        kept = f"; {notes}" if notes else ""
        raise Interrupted(f"interrupted before a chunk row was finished{kept}; run the same command again") from None
    print(
        f"wrote {report.output}: {report.tiles} tiles ({report.skipped} without valid pixels skipped), "
        f"{report.megapixels:.2f} MP in {report.seconds:.1f} s ({report.megapixels_per_second:.2f} MP/s); "
        f"output resolution {report.resolution[0]:g} x {report.resolution[1]:g} CRS units per pixel"
    )
    print(f"  time per stage: {report.stages_line()}")
    return 0


def scene_predict_main(argv: Sequence[str], command: str = "predict-scene") -> int:
    """``skysense predict-scene`` (``command``: the name the user typed, ``predict`` for the older spelling
    ``skysense predict --checkpoint …``, so that help, errors and the resume hint repeat it)."""
    parser = ArgumentParser(
        prog=f"skysense {command}", description="class map (or per-class probabilities) over a whole scene"
    )
    _add_scene_arguments(parser)
    parser.add_argument("--probabilities", action="store_true", help="write per-class float32 probabilities")
    args = parser.parse_args(list(argv))
    return _run(args, "probabilities" if args.probabilities else "classes", command, argv)


def embed_main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="skysense embed", description="per-location embeddings over a scene")
    _add_scene_arguments(parser)
    parser.add_argument("--network", default="teacher", choices=["teacher", "student"], help="pretraining network")
    parser.add_argument("--source", default="auto", choices=["auto", "fused", "hr", "s2", "s1"], help="which features")
    return _run(parser.parse_args(list(argv)), "embedding", "embed", argv)


def export_main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="skysense export", description="export an encoder with its head")
    parser.add_argument("--format", default="onnx", choices=["onnx"])
    parser.add_argument("--checkpoint", type=Path, required=True, help="task/pretraining .ckpt or .safetensors")
    parser.add_argument("--hr", type=Path, required=True, help="a real HR image: the check tile is read from it")
    parser.add_argument("--tile", type=int_at_least(32), default=256, help="tile side (the exported input size)")
    parser.add_argument("--kind", default="classes", choices=["classes", "embedding"])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args(list(argv))
    from skysense.inference.export import export_onnx

    result = export_onnx(args.checkpoint, args.output, args.hr, tile=args.tile, kind=args.kind, opset=args.opset)
    print(
        f"wrote {result.path} ({result.megabytes:.1f} MB); checked with onnxruntime on a {args.tile}² tile of "
        f"{args.hr}: max |ONNX - PyTorch| = {result.max_abs_error:.2e}"
    )
    return 0
