"""Nothing left behind by a run that failed before it trained: a Lightning callback that the command line adds to
every ``skysense fit|validate|test|predict|pretrain``."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

# what a run writes into its logger's version folder before its first step: the CLI's config, the loggers' files
_BEFORE_TRAINING = ("config.yaml", "hparams.yaml", "metrics.csv", "events.out.tfevents.")


def first_missing(folder: str | Path | None) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (``folder`` itself when only it is
    missing; None when it exists): what a run writing into ``folder`` creates."""
    if folder is None:
        return None
    path = Path(folder).absolute()
    missing = None
    while not path.exists():
        missing = path
        if path.parent == path:
            break
        path = path.parent
    return missing


class FailedRunCleanup(Callback):
    """When a run fails before its first optimiser step (bad options, data the model cannot take, a class count that
    is not the data's), remove the logger's version folder it created (``lightning_logs/version_N``, holding only the
    saved config and empty logs), and the ``lightning_logs`` folder if that leaves it empty: a failed command leaves
    nothing behind. A folder holding anything else (a checkpoint, a prediction) is kept, as is any run that trained.

    Args:
        created: the outermost folder that did not exist before this run (see :func:`first_missing`, taken before
            the logger writes anything): the empty folders between the version folder and it are removed too, so a
            failed run into ``--trainer.default_root_dir runs/new/exp`` leaves no empty ``runs/new``. None: only
            ``lightning_logs`` is.
    """

    def __init__(self, created: str | Path | None = None) -> None:
        self.created = None if created is None else Path(created).absolute()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.global_step > 0 or not trainer.is_global_zero or trainer.logger is None:
            return
        folder = trainer.logger.log_dir
        if folder is None or not Path(folder).name.startswith("version_"):
            return  # not a versioned folder that this run made: never remove a folder the user named
        folder = Path(folder)
        if not folder.is_dir():
            return
        files = [p for p in folder.rglob("*") if p.is_file()]
        if all(p.parent == folder and p.name.startswith(_BEFORE_TRAINING) for p in files):
            shutil.rmtree(folder, ignore_errors=True)
            self._remove_empty_parents(folder.absolute().parent)

    def _remove_empty_parents(self, folder: Path) -> None:
        """``lightning_logs`` when this run was its only one, then each empty folder up to :attr:`created`."""
        try:
            folder.rmdir()
        except OSError:
            return
        if self.created is None:
            return
        for parent in folder.parents:
            if parent != self.created and self.created not in parent.parents:
                return  # above what this run created: the user's
            try:
                parent.rmdir()
            except OSError:
                return
