"""Nothing left behind by a run that failed before it trained: a Lightning callback that the command line adds to
every ``skysense fit|validate|test|predict|pretrain``."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

# what a run writes into its logger's version folder before its first step: the CLI's config, the loggers' files
_BEFORE_TRAINING = ("config.yaml", "hparams.yaml", "metrics.csv", "events.out.tfevents.")


class FailedRunCleanup(Callback):
    """When a run fails before its first optimiser step (bad options, data the model cannot take, a class count that
    is not the data's), remove the logger's version folder it created (``lightning_logs/version_N``, holding only the
    saved config and empty logs), and the ``lightning_logs`` folder if that leaves it empty: a failed command leaves
    nothing behind. A folder holding anything else (a checkpoint, a prediction) is kept, as is any run that trained.
    """

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
            try:
                folder.parent.rmdir()  # lightning_logs, when this run was its only one
            except OSError:
                pass
