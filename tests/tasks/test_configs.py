"""Every downstream config in configs/ runs: one training and one validation batch (Lightning's fast_dev_run) on
the real dataset it names, as written, or on that dataset's excerpt in tests/fixtures (the root moved there on the
command line). A config that no longer matches its task or data module fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from skysense.cli import main
from tests.config_roots import root_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name != "pretrain")
# keep the slowest recipes small here (the configs themselves are sized for real runs)
SMALLER = {"nwpu_vhr10.yaml": ["--model.image_size", "256", "--data.image_size", "256", "--data.batch_size", "2"]}


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in CONFIGS])
def test_config_runs_one_batch(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # paths in configs are relative to the repository
    args = ["fit", "--config", str(config), *root_overrides(config), "--trainer.fast_dev_run", "1",
            "--data.num_workers", "0", "--trainer.enable_progress_bar", "false", *SMALLER.get(config.name, [])]  # fmt: skip
    assert main(args) == 0


def test_every_dataset_of_the_issue_has_a_config() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in CONFIGS}
    expected = {"classification/eurosat", "classification/aid", "classification/presto_algae",
                "segmentation/sen1floods11", "segmentation/sen1floods11_s1s2", "detection/nwpu_vhr10",
                "change_detection/levir", "change_detection/dsifn"}  # fmt: skip
    assert expected <= names, expected - names
