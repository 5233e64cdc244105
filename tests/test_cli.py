"""Each command run in-process, as a user would."""

import os
from pathlib import Path

import pytest

from skysense.cli import main
from tests.conftest import shared_path


def test_models_lists_presets_with_counts(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for preset in ("tiny", "small", "base", "paper"):
        assert preset in out
    assert "655.1 M" in out and "2,062.7 M" in out


def test_demo_runs_end_to_end_on_the_shipped_sample(capsys, tmp_path) -> None:
    """The demo's whole path (shortened): multi-modal forward, pretraining, two probes, the prediction image."""
    from PIL import Image

    from skysense.demo import run_demo

    assert main(["demo", "--steps", "2", "--batch-size", "16", "--probe-epochs", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "concat[F, F_geo] (1, 128, 64, 64)" in out
    assert "pretrained 2 steps" in out and out.count("test accuracy") == 2
    assert (tmp_path / "pretrain.ckpt").is_file()
    with Image.open(tmp_path / "predictions.png") as image:  # 200 test images, 20 per row, 64 px + label
        assert image.size == (20 * 64, 10 * 76)
    results = run_demo(steps=1, batch_size=8, probe_epochs=1, out=tmp_path / "again")
    assert set(results) == {"random_init", "pretrained"} and all(0.0 <= v <= 1.0 for v in results.values())


def test_version(capsys) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip()


def test_unknown_command_is_one_line_with_exit_code_2(capsys) -> None:
    assert main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("skysense: ") and "invalid choice: 'nonsense'" in err


def test_a_refused_option_value_of_a_task_is_one_line_with_exit_code_2(capsys, monkeypatch, tmp_path) -> None:
    """A task's own worded check that fails while LightningCLI builds the model (here: two anchor sizes for the
    cpu preset's four pyramid levels) reaches the user as that one line, not as jsonargparse's traceback and dump of
    every argument; nothing is written."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the config's paths are relative to the repository
    argv = ["fit", "--config", "configs/detection/nwpu_vhr10.yaml", "--model.init_args.preset", "cpu",
            "--model.init_args.anchor_sizes", "[8, 16]", "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Namespace" not in err  # (Lightning's "Seed set" line may come before it)
    last = err.splitlines()[-1]
    assert last.startswith("skysense fit: anchor_sizes needs one size per pyramid level (4, strides [4, 8, 16, 32])")
    assert last.endswith("see `skysense fit --help`")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("logger", ["csv", "tensorboard"])
def test_pretrain_command_runs_on_real_sources(tmp_path, logger: str) -> None:
    """`skysense pretrain --config configs/pretrain/tiny.yaml` for two steps on EuroSAT, Sen1Floods11 and Presto
    (or their excerpts), logging to CSV (the config's logger) or to TensorBoard (switched on the command line). With
    CSV only `--trainer.default_root_dir` is given: logs and checkpoints move there, not to the config's logger
    directory."""
    from pathlib import Path

    from tests.config_roots import root_overrides

    config = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "tiny.yaml"
    logger_args = ["--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger"] if logger == "tensorboard" else []
    arguments = [
        "pretrain",
        "--config",
        str(config),
        *root_overrides(config, source_batch_size=8),  # the config's 128 EuroSAT images a step: not what is tested
        "--trainer.max_steps",
        "2",
        "--trainer.default_root_dir",
        str(tmp_path),
        *logger_args,
        *(["--trainer.logger.init_args.save_dir", str(tmp_path)] if logger == "tensorboard" else []),
        "--data.num_workers",
        "0",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert main(arguments) == 0
    expected = ("train/eurosat/image/hr", "train/sen1floods11/pixel/s1", "train/presto/cross_modal/s1-s2")
    if logger == "csv":
        metrics = (next(tmp_path.rglob("metrics.csv"))).read_text()
        assert next(tmp_path.rglob("*.ckpt")).is_file()  # the config's ModelCheckpoint(save_last) followed the logs
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
        events.Reload()
        metrics = " ".join(events.Tags()["scalars"])
        assert len(events.Scalars("loss")) == 2
    for column in expected:
        assert column in metrics, column


def test_scene_prediction_has_its_own_name_and_help(capsys) -> None:
    """`skysense predict-scene --help` lists the scene options; `skysense predict --help` (LightningCLI over a data
    module) points to it first."""
    with pytest.raises(SystemExit) as exit_info:
        main(["predict-scene", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: skysense predict-scene") and "--checkpoint" in out and "--probabilities" in out
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("skysense predict-scene --help") and "--trainer" in out


def test_gdal_prints_nothing_of_its_own_beside_the_output(tmp_path: Path) -> None:
    """eo-learn's real 5-band float GeoTIFF makes libtiff warn on opening ("Warning 1: TIFFReadDirectory: Sum of
    Photometric type-related color channels …"), which GDAL printed on stderr before skysense's own lines; `--debug`
    keeps it."""
    import subprocess
    import sys

    tiff = shared_path("eolearn_testeopatch", "example_data", "import-tiff-test2.tiff")
    command = [sys.executable, "-m", "skysense.cli", "data", "info", str(tiff)]
    env = {k: v for k, v in os.environ.items() if k != "CPL_LOG"}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and "TIFFReadDirectory" not in quiet.stderr, quiet.stderr
    loud = subprocess.run([*command, "--debug"], capture_output=True, text=True, env=env)
    assert "TIFFReadDirectory" in loud.stderr


def test_a_warning_is_said_once(capsys) -> None:
    """The same warning raised by each read of a file (rasterio's, ours) is one line, not one per read."""
    import warnings

    def warn_twice(argv: list[str]) -> int:  # from three places, as three reads of one file warn
        message = "a.tif: its bands have no names; read by position"
        warnings.warn(message, stacklevel=1)
        warnings.warn(message, stacklevel=1)
        warnings.warn(message, stacklevel=1)
        return 0

    assert _main_dispatching_to(warn_twice, ["models"]) == 0
    assert capsys.readouterr().err.count("its bands have no names") == 1


def test_library_deprecation_notes_are_not_the_users_warnings(capsys) -> None:
    """jsonargparse's and torch's deprecation notes (emitted through Lightning) are for their developers: a command
    prints none of them, and the warnings it prints are one line each."""
    import warnings as _warnings

    def noisy(argv: list[str]) -> int:
        _warnings.warn("\n    ``instantiate_classes`` was deprecated in v4.49.0\n", DeprecationWarning, stacklevel=1)
        _warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        _warnings.warn("\n  a note about the data:\n  over two lines", UserWarning, stacklevel=1)
        return 0

    assert _main_dispatching_to(noisy, ["version"]) == 0
    err = capsys.readouterr().err
    assert "deprecated" not in err
    assert "skysense version: warning: a note about the data: over two lines\n" in err


def _main_dispatching_to(command, argv: list[str]) -> int:
    """``skysense.cli.main(argv)`` with its command replaced by ``command`` (to see what main does with what the
    command warns)."""
    from skysense import cli

    original = cli._dispatch
    cli._dispatch = command
    try:
        return cli.main(argv)
    finally:
        cli._dispatch = original
