"""The ``skysense`` command (``--debug`` anywhere: tracebacks for errors that are otherwise one line).

skysense models            presets and their per-module parameter counts
skysense demo              end to end on the shipped real sample: pretrain, probe, metric, prediction image
skysense pretrain          self-supervised pretraining (--config configs/pretrain/tiny.yaml)
skysense data ...          index a folder of rasters, band statistics, file info
skysense predict-scene --checkpoint CKPT --hr scene.tif --output map.tif   class map over a whole scene (COG)
skysense embed --checkpoint CKPT --hr scene.tif --output emb.tif           per-location embeddings over a scene
skysense export --format onnx --checkpoint CKPT --hr tile.tif --output model.onnx
skysense version
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import skysense
from skysense.errors import INTERRUPTED, ArgumentParser, UsageError, expected_exit_code, one_line, raised_in
from skysense.models.registry import count_parameters, create_model, get_config, list_presets


def _millions(count: int) -> str:
    return f"{count / 1e6:,.1f} M"


def cmd_models(args: argparse.Namespace) -> int:
    """Print every preset's per-module parameter counts (built on the meta device: no memory used)."""
    columns = ["hr", "s2", "s1", "fusion", "prototypes", "projection", "total"]
    header = f"{'preset':<8}" + "".join(f"{c:>14}" for c in columns)
    print(header)
    print("-" * len(header))
    for name in list_presets():
        model = create_model(name, device="meta")
        counts = count_parameters(model, get_config(name).projection)
        print(f"{name:<8}" + "".join(f"{_millions(counts[c]):>14}" for c in columns))
    print("\nfusion includes the two up-sampling heads; prototypes count the bank (a buffer) and its read-out;")
    print("projection = the pretraining heads (not part of the encoder). See docs/model.md.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The end-to-end job on the real sample shipped with the package (see :mod:`skysense.demo`)."""
    from skysense.demo import run_demo

    run_demo(args.preset, args.seed, args.steps, args.batch_size, args.probe_epochs, args.out)
    return 0


def _lightning_cli(argv: Sequence[str]) -> type:
    """LightningCLI where ``--trainer.default_root_dir`` moves logs and checkpoints: on the command line without a
    logger ``save_dir`` of its own, it replaces the config's logger ``save_dir`` (Lightning's checkpoints follow the
    logger's directory), as a user who moves the root expects."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import LightningCLI

    def given(option: str) -> bool:
        return any(arg == option or arg.startswith(option + "=") for arg in argv)

    move = given("--trainer.default_root_dir") and not any(
        arg.startswith("--trainer.logger") and arg.split("=")[0].endswith(".save_dir") for arg in argv
    )

    class SkySenseCLI(LightningCLI):
        def instantiate_trainer(self, **kwargs: object) -> Trainer:
            from skysense.tasks.cleanup import FailedRunCleanup, first_missing

            trainer = super().instantiate_trainer(**kwargs)
            # a run that fails before it trains leaves no folder: taken before the logger makes its root
            root = trainer.logger.save_dir if trainer.logger is not None else None
            trainer.callbacks.append(FailedRunCleanup(first_missing(root or trainer.default_root_dir)))
            return trainer

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            root = config.trainer.default_root_dir
            loggers = config.trainer.logger
            if not move or root is None or not loggers or loggers is True:
                return
            for logger in loggers if isinstance(loggers, list) else [loggers]:
                init_args = getattr(logger, "init_args", None)
                if init_args is not None and "save_dir" in init_args:
                    init_args.save_dir = root

    return SkySenseCLI


def pretrain_main(argv: Sequence[str]) -> int:
    """``skysense pretrain --config FILE [--section.key value ...]``: LightningCLI ``fit`` of :class:`PretrainTask`
    with :class:`PretrainDataModule` (YAML with ``class_path``/``init_args``, dotted overrides)."""
    from skysense.pretrain.datamodule import PretrainDataModule
    from skysense.tasks.pretrain import PretrainTask

    with warnings.catch_warnings(), _one_line_parse_errors("skysense pretrain"):
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # we pass argv on on purpose
        _lightning_cli(argv)(
            PretrainTask,
            PretrainDataModule,
            args=["fit", *argv],
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "skysense pretrain", "exit_on_error": False},
        )
    return 0


@contextmanager
def _one_line_parse_errors(prog: str) -> Iterator[None]:
    """LightningCLI's (jsonargparse's) option errors as a :class:`~skysense.errors.UsageError` (one line, exit 2)
    instead of a usage block; so is a worded check of ours that refused an option's value while jsonargparse built
    the model or data module (jsonargparse re-raises it inside its own ValueError, with a dump of every argument)."""
    try:
        yield
    except argparse.ArgumentError as err:
        raise UsageError(f"{err}; see `{prog} --help`") from None
    except ValueError as err:
        import jsonargparse  # LightningCLI's parser, already loaded by the command

        cause = err.__cause__
        from_parser = raised_in(err, Path(jsonargparse.__file__).resolve().parent)
        if cause is None or expected_exit_code(cause) is None or not from_parser:
            raise
        raise UsageError(f"{one_line(cause)}; see `{prog} --help`") from None


TASK_COMMANDS = ("fit", "validate", "test", "predict")


def task_main(command: str, argv: Sequence[str]) -> int:
    """``skysense fit|validate|test|predict --config configs/<task>/<dataset>.yaml [--section.key value ...]``:
    LightningCLI over any task (``model: class_path: skysense.tasks...``) and data module
    (``data: class_path: skysense.data.datamodules...``)."""
    from lightning.pytorch import LightningDataModule, LightningModule

    with warnings.catch_warnings(), _one_line_parse_errors(f"skysense {command}"):
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        _lightning_cli(argv)(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=[command, *argv],
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": f"skysense {command}", "exit_on_error": False},
        )
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(skysense.__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="skysense", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="list presets with per-module parameter counts")
    models.set_defaults(func=cmd_models)
    demo = sub.add_parser(
        "demo", help="end to end on the shipped real sample: pretraining → linear probe → metric and prediction image"
    )
    demo.add_argument("--preset", default="tiny", choices=list_presets())
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--steps", type=int, default=120, help="pretraining steps")
    demo.add_argument("--batch-size", type=int, default=64, help="pretraining images per step")
    demo.add_argument("--probe-epochs", type=int, default=30, help="linear-probe epochs")
    demo.add_argument("--out", type=Path, default=Path("skysense-demo"), help="output folder")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("pretrain", help="self-supervised pretraining (LightningCLI: --config FILE, --help for options)")
    for command in TASK_COMMANDS:
        sub.add_parser(command, help=f"downstream task: {command} (LightningCLI: --config configs/<task>/<data>.yaml)")
    sub.add_parser(
        "predict-scene", help="class map over a whole scene (--checkpoint, --hr/--s2/--s1, --output; --help for all)"
    )
    sub.add_parser("embed", help="per-location embeddings over a whole scene (--checkpoint, --hr/--s2/--s1, --output)")
    sub.add_parser("export", help="export an HR encoder with its head to ONNX, checked on a real tile")
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    from skysense.data.cli import add_data_parser

    add_data_parser(sub)
    return parser


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["pretrain"]:
        return pretrain_main(argv[1:])
    if argv[:1] == ["predict-scene"]:
        from skysense.inference.cli import scene_predict_main

        return scene_predict_main(argv[1:])
    scene_flags = ("--checkpoint", "--hr", "--s2", "--s1", "--output")
    if argv[:1] == ["predict"] and any(a.split("=", 1)[0] in scene_flags for a in argv[1:]):
        from skysense.inference.cli import scene_predict_main

        return scene_predict_main(argv[1:], command="predict")  # the name before predict-scene, kept working
    if argv[:1] == ["predict"] and any(a in ("-h", "--help") for a in argv[1:]):
        print("skysense predict: LightningCLI prediction over a data module (below); a whole scene (GeoTIFF, SAFE, "
              "STAC): skysense predict-scene --help\n")  # fmt: skip
    if argv[:1] == ["embed"]:
        from skysense.inference.cli import embed_main

        return embed_main(argv[1:])
    if argv[:1] == ["export"]:
        from skysense.inference.cli import export_main

        return export_main(argv[1:])
    if argv[:1] and argv[0] in TASK_COMMANDS:
        return task_main(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


def _command_name(argv: Sequence[str]) -> str:
    """ "skysense predict", "skysense data index", or "skysense" (named in one-line error messages)."""
    words = [a for a in argv[:2] if not a.startswith("-")]
    known = {"models", "demo", "pretrain", *TASK_COMMANDS, "predict-scene", "embed", "export", "version", "data"}
    if not words or words[0] not in known:
        return "skysense"
    if words[0] == "data" and len(words) > 1 and words[1] in ("index", "stats", "info"):
        return f"skysense data {words[1]}"
    return f"skysense {words[0]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors the user can fix are printed as one line, ``skysense <command>: <message>``, with
    exit code 2 (options) or 1 (data); ``--debug`` or ``SKYSENSE_DEBUG=1`` shows their traceback (see
    :mod:`skysense.errors`). Unexpected errors keep their traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Transparent huge pages for PyTorch's large CPU tensors (its own switch, read at the first large allocation):
    # a scene tile's activations are hundreds of MB, and faulting them in 4 KiB pages at every forward cost as much
    # system time as the arithmetic (docs/benchmarks.md, issue 14). A user's own setting wins.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    debug = "--debug" in argv or os.environ.get("SKYSENSE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    command = _command_name(argv)
    if not debug:  # GDAL's messages reach the user as the one-line error they cause, not as log lines before it
        logging.getLogger("rasterio").setLevel(logging.CRITICAL)
        # and those GDAL prints itself outside rasterio's handler ("Warning 1: TIFFReadDirectory: …" when a file is
        # opened): its log file, unless the user set one
        os.environ.setdefault("CPL_LOG", os.devnull)
    try:
        with warnings.catch_warnings():
            if not debug:  # a warning (an assumption made about the data) is one line too, and said once
                said: set[str] = set()

                def show(message: Warning | str, *rest: object, **kw: object) -> None:
                    line = f"{command}: warning: {' '.join(str(message).split())}"
                    if line not in said:  # the same file's warning from each of its reads (rasterio's, ours)
                        said.add(line)
                        print(line, file=sys.stderr)

                warnings.showwarning = show
                # libraries' notes to their developers (jsonargparse's, torch's pytree through Lightning): not the
                # user's to act on; skysense says nothing in these categories (--debug shows them)
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
                # rasterio's notes on files without georeferencing: skysense refuses them in its own line, or the
                # user allowed them (--allow-ungeoreferenced) and the output's tags say so
                warnings.filterwarnings("ignore", message="Dataset has no geotransform, gcps, or rpcs")
                warnings.filterwarnings("ignore", message="The given matrix is equal to Affine.identity")
            return _dispatch(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as err:
        code = expected_exit_code(err)
        if debug or code is None:
            raise
        print(f"{command}: {one_line(err)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
