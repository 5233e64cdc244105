"""Shared fixtures: the real data in ../shared/data (tests skip cleanly when it is absent)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of every module that reads ../shared/data ``real_data``: ``-m "not real_data"`` runs what a
    clone without that folder can run (the real-data tests skip there anyway), ``-m "not slow"`` the quick loop."""
    sources: dict[Path, bool] = {}
    for item in items:
        module = Path(str(item.fspath))
        if module not in sources:
            text = module.read_text() if module.suffix == ".py" else ""
            sources[module] = "shared_path(" in text or "SHARED_DATA" in text
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
