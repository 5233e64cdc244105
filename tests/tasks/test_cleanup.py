"""FailedRunCleanup: a run that fails before its first step removes what it created, and nothing the user had."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from skysense.tasks.cleanup import FailedRunCleanup, first_missing


def _failed_run(folder: Path, created: Path | None, step: int = 0) -> None:
    trainer = SimpleNamespace(global_step=step, is_global_zero=True, logger=SimpleNamespace(log_dir=str(folder)))
    FailedRunCleanup(created).on_exception(trainer, None, RuntimeError("bad option"))


def test_removes_the_folders_the_run_created_and_keeps_the_users(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("the user's")
    root = tmp_path / "runs" / "new" / "exp"
    created = first_missing(root)
    assert created == tmp_path / "runs" / "new" and first_missing(tmp_path) is None
    version = root / "lightning_logs" / "version_0"
    version.mkdir(parents=True)
    (version / "config.yaml").write_text("model: {}")
    _failed_run(version, created)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes.txt"]  # runs/ was there before


def test_keeps_a_run_that_trained_or_wrote_more_than_its_config(tmp_path: Path) -> None:
    version = tmp_path / "new" / "lightning_logs" / "version_0"
    version.mkdir(parents=True)
    (version / "config.yaml").write_text("model: {}")
    _failed_run(version, tmp_path / "new", step=3)  # it trained: its logs are the user's
    assert (version / "config.yaml").exists()
    (version / "checkpoints").mkdir()
    (version / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    _failed_run(version, tmp_path / "new")
    assert (version / "checkpoints" / "last.ckpt").exists()
