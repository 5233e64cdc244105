"""Shared fixtures and the test data: ../shared/data when it is there, else the excerpts in tests/fixtures.

``shared_path("sen1floods11_samples", "sample_data", "S1")`` names a file or folder of ../shared/data (real imagery,
see its README.md). A clone without that folder runs the same tests on ``tests/fixtures/``: small excerpts of the
same files under the same relative paths (real pixels, CRSs, nodata, dates and band names; regenerated from
../shared/data by each dataset's ``data.py``, TorchGeo's habit). ``SKYSENSE_TEST_DATA=fixtures`` forces the excerpts
(``real`` forces ../shared/data); tests that need a whole dataset (learning checks, counts) ask ``full=True`` and skip
on excerpts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
_MODES = ("auto", "real", "fixtures")


def _mode() -> str:
    mode = os.environ.get("SKYSENSE_TEST_DATA", "auto")
    if mode not in _MODES:
        raise pytest.UsageError(f"SKYSENSE_TEST_DATA={mode!r}: use one of {', '.join(_MODES)}")
    return mode


def using_fixtures() -> bool:
    """Whether the tests read the excerpts in tests/fixtures rather than ../shared/data."""
    mode = _mode()
    return mode == "fixtures" or (mode == "auto" and not SHARED_DATA.exists())


def shared_path(*parts: str, full: bool = False) -> Path:
    """A path under ../shared/data, or the same path under tests/fixtures when the tests run on the excerpts.

    Args:
        parts: the path below ``shared/data``.
        full: the test needs the whole real dataset (it learns from it or counts it): skipped on the excerpts.

    Skips the test when neither holds the path (the real folder is absent and no excerpt was made of it).
    """
    real = SHARED_DATA.joinpath(*parts)
    if not using_fixtures():
        if not real.exists():
            pytest.skip(f"real data not available: {real}")
        return real
    if full:
        pytest.skip(f"needs the whole of {real} (tests/fixtures holds an excerpt)")
    excerpt = FIXTURES.joinpath(*parts)
    if not excerpt.exists():
        pytest.skip(f"real data not available: {real}, and tests/fixtures has no excerpt of it")
    return excerpt


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of every module that reads ../shared/data (or its excerpts) ``real_data``: ``-m "not
    real_data"`` runs what needs no data at all, ``-m "not slow"`` the quick loop."""
    sources: dict[Path, bool] = {}
    for item in items:
        module = Path(str(item.fspath))
        if module not in sources:
            text = module.read_text() if module.suffix == ".py" else ""
            sources[module] = any(name in text for name in ("shared_path(", "SHARED_DATA", "root_overrides("))
        if sources[module]:
            item.add_marker(pytest.mark.real_data)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def cli_fit_test_predict(
    config: Path, tmp_path: Path, extra: Sequence[str] = (), train_batches: int = 2, fit_extra: Sequence[str] = ()
) -> tuple[list[dict], str, Path]:
    """``skysense fit`` (a few batches, one epoch), ``test`` and ``predict`` (2 batches each) of one config, all
    writing under ``tmp_path``. Returns the lines predict wrote (predictions.jsonl), the text of every CSV log, and
    the checkpoint. ``--trainer.limit_*_batches 1`` would be read as 1.0 (all batches): limits here are ≥ 2."""
    from skysense.cli import main

    common = ["--config", str(config), "--trainer.default_root_dir", str(tmp_path),
              "--trainer.logger.init_args.save_dir", str(tmp_path), "--data.num_workers", "0",
              "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1", *extra]  # fmt: skip
    limits = ["--trainer.limit_train_batches", str(train_batches), "--trainer.limit_val_batches", "2",
              "--trainer.max_epochs", "1", *fit_extra]  # fmt: skip
    assert main(["fit", *common, *limits]) == 0
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    assert main(["test", *common, "--trainer.limit_test_batches", "2", "--ckpt_path", str(checkpoint)]) == 0
    written = tmp_path / "predictions"
    assert main(["predict", *common, "--trainer.limit_predict_batches", "2", "--ckpt_path", str(checkpoint),
                 "--trainer.callbacks.output_dir", str(written)]) == 0  # fmt: skip
    lines = [json.loads(line) for line in (written / "predictions.jsonl").read_text().splitlines()]
    metrics = " ".join(path.read_text() for path in tmp_path.rglob("metrics.csv"))  # one per command
    return lines, metrics, checkpoint


def save_segmentation_checkpoint(path: Path, class_names: Sequence[str]) -> Path:
    """A tiny HR segmentation task (random weights, a group-norm UperNet of 32 channels, one class per name) saved
    as a Lightning checkpoint at ``path``, the way ``skysense fit`` saves one."""
    import lightning

    from skysense.tasks.segmentation import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(num_classes=len(class_names), preset="tiny", modalities=["hr"], source="hr",
                            head_channels=32, norm="group", class_names=list(class_names))  # fmt: skip
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                  "pytorch-lightning_version": lightning.__version__}  # fmt: skip
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path
