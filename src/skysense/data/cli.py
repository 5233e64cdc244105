"""``skysense data ...``: index a folder of rasters, stream per-band statistics, describe one file.

skysense data index DIR -o manifest.csv [--pattern GLOB] [--filename-regex RE --date-format FMT] [--sidecar FILE]
                    [--no-strict]
skysense data stats manifest.csv [--modality s2] [-o stats.json]
skysense data info FILE

index reads the first and the last block of every band of every file: a file that cannot be opened or read (a
truncated download) stops it with one error naming the files; --no-strict leaves them out of the manifest and lists
them. Errors are one line, `skysense data <command>: <file or option>: <problem>; <what to do>`, exit code 1 (data)
or 2 (options).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from skysense.data.dates import acquisition_date
from skysense.data.manifest import MODALITIES, entry_from_info, index_directory, read_manifest, write_manifest
from skysense.data.manifest.schema import SPLITS, write_atomically
from skysense.data.raster import check_readable, raster_info
from skysense.data.series import cloud_band
from skysense.data.stats import compute_stats, format_stats
from skysense.errors import InputError, UsageError, int_at_least

if TYPE_CHECKING:
    from skysense.data.products.sentinel2 import S2Product


def _check_output(output: Path, suffixes: tuple[str, ...], inputs: Iterable[Path]) -> None:
    """Refuse an ``-o`` output of another kind than ``suffixes``, or that is one of ``inputs`` (a file the command
    reads: a listed raster, an Item JSON, the manifest, the sidecar), before it is written.

    Raises:
        UsageError: naming the option and the file.
    """
    if output.suffix.lower() not in suffixes:
        raise UsageError(f"-o {output}: give a {' or '.join(suffixes)} file (e.g. {output.with_suffix(suffixes[0])})")
    if output.is_dir():
        raise UsageError(f"-o {output}: is a folder; give a file name such as {output / ('out' + suffixes[0])}")
    if not output.exists():
        return
    for path in inputs:
        if Path(path).exists() and os.path.samefile(output, path):
            raise UsageError(f"-o {output} is {path}, which this command reads; writing it would destroy it: choose "
                             "another output file")  # fmt: skip


def cmd_index(args: argparse.Namespace) -> int:
    """Index a folder into a manifest (CSV, or JSON by extension) and print a summary; files that cannot be read
    stop it (default) or, with ``--no-strict``, are left out of the manifest and listed."""
    _check_output(args.output, (".csv", ".json"), [args.sidecar] if args.sidecar else [])
    skipped: dict[Path, str] = {}
    entries = index_directory(
        args.directory,
        args.pattern,
        filename_regex=args.filename_regex,
        date_format=args.date_format,
        sidecar=args.sidecar,
        strict=args.strict,
        skipped=skipped,
    )
    if not entries:
        pattern = f"pattern {args.pattern!r}" if args.pattern else "any raster suffix"
        found = f"all {len(skipped)} rasters found cannot be read" if skipped else f"no raster found ({pattern})"
        raise InputError(f"{args.directory}: {found}; check the folder and --pattern")
    _check_output(args.output, (".csv", ".json"), [Path(e.path) for e in entries])
    output = write_manifest(entries, args.output)
    modalities = Counter(e.modality for e in entries)
    samples = {e.sample for e in entries}
    undated = [e for e in entries if e.date is None and e.modality in ("s2", "s1")]
    print(f"indexed {len(entries)} files under {args.directory} into {output}")
    print("modalities: " + ", ".join(f"{m} {modalities[m]}" for m in MODALITIES if modalities[m]))
    by_split = Counter(split for _, split in {(e.sample, e.split) for e in entries} if split)
    print(f"samples: {len(samples)}" + (f" (by folder: {', '.join(f'{s} {by_split[s]}' for s in SPLITS if by_split[s])})"
                                        if by_split else ""))  # fmt: skip
    if undated:
        print(f"{len(undated)} Sentinel files without a date (give --filename-regex or --sidecar):")
        for entry in undated[:10]:
            print(f"  {entry.path}")
    if skipped:
        print(f"left out of the manifest: {len(skipped)} files that cannot be read (re-download or replace them):")
        for path, problem in skipped.items():
            print(f"  {path}: {problem}")
    noted = [e for e in entries if e.notes]
    if noted:
        print(f"{len(noted)} files with problems:")
        for entry in noted[:20]:
            print(f"  {entry.path}: {entry.notes}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Per-band statistics of one modality's files, streamed window by window."""
    entries = read_manifest(args.manifest)
    if args.output:
        _check_output(args.output, (".json",), [Path(args.manifest), *(Path(e.path) for e in entries)])
    result = compute_stats(entries, args.modality, tile=args.tile)
    print(format_stats(result))
    if args.output:
        write_atomically(args.output, json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.output}")
    return 0


def _product_info(path: Path) -> None:
    """What :mod:`skysense.data.products.sentinel2` reads from a Sentinel-2 product path."""
    from skysense.data.products import find_s2_products
    from skysense.data.products.safe_manifest import has_manifest, verify_manifest

    verified: set[Path] = set()
    for product in find_s2_products(path):
        _describe_product(product)
        source = Path(product.source)
        if source not in verified and has_manifest(source):  # every file against the product's own checksums
            check = verify_manifest(source)
            verified.add(source)
            print(f"  checksums: the {check.files} files its manifest.safe lists match ({check.algorithm})")


def _describe_product(product: S2Product) -> None:
    """A Sentinel-2 product as `skysense data info` prints it."""
    grid = product.grid()
    offsets = sorted(set(product.offsets.values())) or [0.0]
    print(f"{product.source}: Sentinel-2 {product.level} product {product.name}, tile {product.tile}, "
          f"date {product.date}")  # fmt: skip
    print(f"  bands {list(product.bands)}; grid {grid.width}×{grid.height} of its finest band ({grid.res[0]:g} CRS "
          f"units a pixel), CRS {grid.crs}")  # fmt: skip
    print(f"  reflectance x 1e4 = (DN + offset {', '.join(f'{o:g}' for o in offsets)}) x 10000 / "
          f"{product.quantification:g}; cloud mask {product.mask or 'none'}")  # fmt: skip
    for assumption in product.assumptions:
        print(f"  assumed: {assumption}")


def _stac_info(path: Path) -> None:
    """What :mod:`skysense.data.products.stac` reads from STAC Item/ItemCollection JSONs."""
    from skysense.data.products.sentinel2 import S2Product
    from skysense.data.products.stac import read_stac

    for item in read_stac(path):
        if isinstance(item, S2Product):  # an Item whose assets lie in an EOPF Zarr product
            print(f"{path}: STAC Item {item.name} of an EOPF Zarr product:")
            _describe_product(item)
            continue
        grid = item.grid()
        kind = f"Sentinel-2 {item.level}" if item.level else "Sentinel-1" if "VV" in item.bands else "unknown level"
        print(f"{item.source}: STAC Item {item.name}, {kind}, date {item.date}")
        print(f"  bands {list(item.bands)}; finest grid {grid.width}×{grid.height}, CRS {grid.crs}")
        print(f"  {item.radiometry}")
        print(
            f"  cloud mask {item.mask or 'none'}; assets read from {sorted({a.path for a in item.bands.values()})[0]} …"
        )
        for assumption in item.assumptions:
            print(f"  assumed: {assumption}")


def _s1_info(path: Path) -> bool:
    """What :mod:`skysense.data.products.sentinel1` reads from a folder of per-polarisation files; False when the
    folder holds none."""
    from skysense.data.products.sentinel1 import S1Pair, group_polarisations, polarisation_of

    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".tif", ".tiff", ".vrt"))
    files = [p for p in files if polarisation_of(p) is not None]
    if not files:
        return False
    pairs, _ = group_polarisations(files, [acquisition_date(f) for f in files])
    for pair in (p for p in pairs if isinstance(p, S1Pair)):
        grid = pair.grid()
        print(f"{pair.source}: Sentinel-1 acquisition of {pair.date}, one file per polarisation")
        for polarisation, file in pair.polarisations.items():
            print(f"  {polarisation}: {file}")
        print(f"  grid {grid.width}×{grid.height}, CRS {grid.crs}; units (dB or linear) detected as for stacked files")
    return True


def cmd_info(args: argparse.Namespace) -> int:
    """Metadata, date and inferred modality of one file, then a read of the first and last block of every band
    (a file whose header reads but whose pixels do not is described, then refused with exit code 1); for a product
    — a Sentinel-2 ``.SAFE`` folder or zip or ``IMG_DATA``, a STAC Item or ItemCollection JSON, a folder of
    Sentinel-1 polarisation files — what skysense reads from it."""
    from skysense.data.products import is_s2_product_path
    from skysense.data.products.stac import is_stac_path

    path = Path(args.file)
    if is_s2_product_path(path):
        _product_info(path)
        return 0
    if is_stac_path(path):
        _stac_info(path)
        return 0
    if path.is_dir() and _s1_info(path):
        return 0
    if path.is_dir():
        raise InputError(f"{path}: a folder that is no product (no .SAFE, band files, STAC JSON or polarisation "
                         "files); give one raster file or a product")  # fmt: skip
    info = raster_info(args.file)
    entry = entry_from_info(info, folders=Path(args.file).parent.parts[-1:])
    print(f"{info.path}: {info.driver}, {info.width}×{info.height}, {info.count} bands {list(info.band_names)}")
    print(f"  dtype {', '.join(sorted(set(info.dtypes)))}, nodata {info.nodata}, CRS {entry.crs or 'none'}")
    print(f"  bounds {tuple(round(v, 6) for v in info.bounds)}, resolution {tuple(round(v, 9) for v in info.res)}")
    print(f"  blocks {info.block_shape}, overviews {info.overviews}, colour {list(info.colorinterp)}")
    try:
        date = acquisition_date(info.path, tags=info.tags).isoformat()
    except ValueError as err:
        date = f"none ({err})"
    print(f"  date {date}; modality (inferred) {entry.modality}")
    cloud = cloud_band(info)
    if cloud is not None and entry.modality == "s2":
        print(f"  cloud mask: band {cloud[0]} ({info.band_names[cloud[0] - 1]}), its flagged pixels read as invalid")
    check_readable(info.path)
    print("  pixels: the first and the last block of every band read")
    return 0


def add_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` and its subcommands on the ``skysense`` command's subparsers."""
    data = subparsers.add_parser(
        "data",
        help="index, describe and summarise raster folders",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    commands = data.add_subparsers(dest="data_command", required=True)

    index = commands.add_parser("index", help="write a manifest of the rasters under a folder")
    index.add_argument("directory", type=Path)
    index.add_argument("-o", "--output", type=Path, required=True, help="manifest path (.csv, or .json)")
    index.add_argument("--pattern", default=None, help="glob relative to DIR (default: every raster, recursively)")
    index.add_argument("--filename-regex", default=None, help="regex with a (?P<date>...) group for dates in names")
    index.add_argument("--date-format", default="%Y%m%d", help="strptime format of the date group")
    index.add_argument("--sidecar", type=Path, default=None, help="JSON/CSV table: file name → date")
    index.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refuse the folder if any file cannot be opened or read (default); --no-strict leaves such files out "
        "of the manifest and lists them",
    )
    index.set_defaults(func=cmd_index)

    stats = commands.add_parser("stats", help="per-band statistics over a manifest's files (streamed)")
    stats.add_argument("manifest", type=Path)
    stats.add_argument("--modality", choices=MODALITIES, default=None)
    stats.add_argument("-o", "--output", type=Path, default=None, help="write the statistics as JSON")
    stats.add_argument("--tile", type=int_at_least(1), default=1024, help="window side in pixels")
    stats.set_defaults(func=cmd_stats)

    info = commands.add_parser("info", help="metadata, date and modality of one raster")
    info.add_argument("file", type=Path)
    info.set_defaults(func=cmd_info)
    return data
