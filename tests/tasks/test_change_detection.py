"""Siamese change detection: the CLI on the real LEVIR-CD sample pairs (or their excerpt), both merges, time
symmetry, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from skysense import SkySenseInput
from skysense.cli import main
from skysense.tasks.change_detection import ChangeDetectionTask
from tests.config_roots import root_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "change_detection" / "levir.yaml"


def test_cli_fit_and_test_on_levir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    common = ["--config", str(CONFIG), *root_overrides(CONFIG), "--trainer.default_root_dir", str(tmp_path),
              "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert main(["fit", *common, "--trainer.max_epochs", "1"]) == 0
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    # the kept model is chosen by the changed class's F1 (the reported metric), not by mIoU, which a model that
    # predicts no change at all maximises when changes are rare
    callbacks = torch.load(checkpoint, weights_only=False)["callbacks"]
    (state,) = [value for key, value in callbacks.items() if key.startswith("ModelCheckpoint")]
    assert state["monitor"] == "val/F1/change" and state["best_model_score"] is not None
    assert main(["test", *common, "--trainer.limit_test_batches", "2", "--ckpt_path", str(checkpoint)]) == 0
    metrics = " ".join(path.read_text() for path in tmp_path.rglob("metrics.csv"))
    for column in ("train/loss", "val/mIoU", "test/F1/change", "test/IoU/change"):
        assert column in metrics, column


@pytest.mark.parametrize("merge", ["difference", "concat"])
def test_merges(merge: str) -> None:
    torch.manual_seed(0)
    task = ChangeDetectionTask(merge=merge, head_channels=16).eval()
    first, second = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    logits = task(SkySenseInput(hr=first), second, size=(64, 64))["logits"]
    assert logits.shape == (2, 2, 64, 64)
    swapped = task(SkySenseInput(hr=second), first, size=(64, 64))["logits"]
    assert torch.allclose(logits, swapped, atol=1e-5) == (merge == "difference")  # |F1 - F2| ignores the order


def test_errors() -> None:
    with pytest.raises(ValueError, match="merge"):
        ChangeDetectionTask(merge="sum")
    with pytest.raises(ValueError, match="source"):
        ChangeDetectionTask(source="s2")
    task = ChangeDetectionTask(head_channels=16)
    with pytest.raises(ValueError, match="differ in shape"):
        task(SkySenseInput(hr=torch.randn(1, 3, 64, 64)), torch.randn(1, 3, 32, 32))
