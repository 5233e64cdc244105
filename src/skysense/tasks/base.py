"""What every downstream task shares: the backbone (a preset with the modalities the task uses), pretrained
weights, the fine-tuning mode and the optimiser.

Fine-tuning modes: ``frozen`` (the backbone is fixed and kept in eval mode: probes), ``partial`` (only the last
``trainable_depths`` depths of the backbone train, see :func:`skysense.tasks.optim.backbone_depths`) and ``full``.
Layer-wise learning-rate decay (the paper uses 0.9) applies to whatever trains.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torchmetrics import Metric, MetricCollection

from skysense.errors import UsageError
from skysense.models.registry import get_config
from skysense.models.skysense import SkySense
from skysense.models.weights import load_backbone_weights
from skysense.tasks.optim import adamw_with_schedule, backbone_depths, parameter_groups

FREEZE_MODES = ("frozen", "partial", "full")


def modality_overrides(modalities: list[str] | None) -> dict[str, Any]:
    """Model overrides that drop the encoders a task does not use (``None`` keeps all)."""
    if modalities is None:
        return {}
    unknown = set(modalities) - {"hr", "s2", "s1"}
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of ['hr', 's2', 's1'], got {modalities}")
    overrides: dict[str, Any] = {}
    for name in ("hr", "s2", "s1"):
        if name not in modalities:
            overrides[name] = None
            if name != "hr":
                overrides[f"{name}_head"] = None
    if "s2" not in modalities and "s1" not in modalities:
        overrides.update(fusion=None, geo=None)
    return overrides


def listed_classes(classes: tuple[str, ...], shown: int = 12) -> str:
    """Class names as a message lists them: "a, b, c", at most ``shown`` of them then "…"."""
    return ", ".join(classes[:shown]) + (", …" if len(classes) > shown else "")


def resolve_class_names(class_names: list[str] | None, num_classes: int, first: int = 0) -> list[str]:
    """The K class names for per-class metric names: the given ones (checked against ``num_classes``), or the class
    indices ``first … first + K - 1`` as strings."""
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} entries for {num_classes} classes")
    return list(class_names) if class_names else [str(i) for i in range(first, first + num_classes)]


class BackboneTask(pl.LightningModule):
    """Base of the downstream tasks, with TorchGeo's template (``torchgeo.trainers.BaseTask``): ``__init__`` saves the
    subclass's arguments as hyperparameters, then calls :meth:`configure_models`, :meth:`configure_losses` and
    :meth:`configure_metrics`, then applies the fine-tuning mode. A subclass's ``__init__`` only checks its arguments
    and calls ``super().__init__()``; its hooks read ``self.hparams``.

    Metrics are torchmetrics ``MetricCollection`` s with the stage as prefix (``train_metrics``, ``val_metrics``,
    ``test_metrics``; :meth:`set_metrics`), updated every step and logged at the end of each epoch (``val/mIoU``,
    ``val/IoU/<class>``, ...).

    The hyperparameters it reads: ``preset``, ``modalities``, ``model_overrides``, ``pretrained``,
    ``pretrained_network``, ``freeze``, ``trainable_depths``, ``lr``, ``weight_decay``, ``layer_decay``,
    ``warmup_steps``.
    """

    #: metrics (without the stage prefix) shown in the progress bar
    prog_bar_metrics: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()  # every __init__ argument of the subclasses (Lightning reads their frames)
        if self.hparams.freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {self.hparams.freeze!r}")
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()
        self.apply_freeze()

    # the template's hooks ------------------------------------------------------------------------------------------
    def configure_models(self) -> None:
        """Build ``self.backbone`` (:meth:`build_backbone`) and the heads."""
        raise NotImplementedError

    def configure_losses(self) -> None:
        """Build what the loss needs: for a task with a ``class_weights`` option, the ``class_weights`` buffer (None
        when not given; it moves with the module and is saved with it)."""
        if "class_weights" in self.hparams:
            weights = self.hparams.class_weights
            self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32) if weights else None)

    def configure_metrics(self) -> None:
        """Build the stages' metric collections (:meth:`set_metrics`)."""
        raise NotImplementedError

    def set_metrics(self, summary: dict[str, Metric], per_class: dict[str, Metric] | None = None) -> None:
        """``train_metrics``: copies of ``summary``; ``val_metrics`` and ``test_metrics``: copies of ``summary`` and
        ``per_class`` (e.g. torchmetrics' ``ClasswiseWrapper``: one value per class, not worth a training step)."""
        self.train_metrics = MetricCollection(dict(summary)).clone(prefix="train/")
        every = MetricCollection({**summary, **(per_class or {})})
        self.val_metrics = every.clone(prefix="val/")
        self.test_metrics = every.clone(prefix="test/")

    def stage_metrics(self, stage: str) -> MetricCollection | None:
        return getattr(self, f"{stage}_metrics", None)

    def log_metrics(self, stage: str) -> None:
        """Compute, log and reset the stage's metrics (when the epoch updated them)."""
        metrics = self.stage_metrics(stage)
        if metrics is None or not any(metric.update_called for metric in metrics.values()):
            return
        values = metrics.compute()
        shown = {f"{stage}/{name}" for name in self.prog_bar_metrics}
        self.log_dict({k: v for k, v in values.items() if k in shown}, prog_bar=True)
        self.log_dict({k: v for k, v in values.items() if k not in shown})
        metrics.reset()

    def attached_datamodule(self) -> Any:
        """The data module of the trainer this task runs under, or None."""
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def checked_data_classes(self, also: str = "") -> tuple[str, ...]:
        """The class names of the attached data module (() when it has none), once ``num_classes`` is checked
        against them: a model of 10 classes on data of 21 would fail at its first batch with an index error.

        Args:
            also: what else to set, appended to the message's advice.

        Raises:
            UsageError: the counts differ, naming the data's classes and the option to set.
        """
        classes = tuple(getattr(self.attached_datamodule(), "classes", ()) or ())
        if classes and len(classes) != self.hparams.num_classes:
            raise UsageError(
                f"the data has {len(classes)} classes ({listed_classes(classes)}) and the model num_classes "
                f"{self.hparams.num_classes}; give --model.init_args.num_classes {len(classes)}{also}"
            )
        return classes

    def build_backbone(self, modalities: list[str] | None = None) -> SkySense:
        """The preset with the encoders of ``modalities`` (default: the ``modalities`` hyperparameter)."""
        hp = self.hparams
        overrides = modality_overrides(modalities if modalities is not None else hp.get("modalities"))
        if getattr(hp, "source", "fused") != "fused":  # the temporal fusion and prototypes would run for nothing
            overrides.update(fusion=None, geo=None)
        overrides.update(hp.model_overrides or {})
        backbone = SkySense(get_config(hp.preset, **overrides))
        if hp.pretrained is not None:
            load_backbone_weights(backbone, hp.pretrained, hp.pretrained_network)
        return backbone

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the task's class, so that a checkpoint alone says what it is (``skysense predict-scene
        --checkpoint``)."""
        checkpoint["skysense_task"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def apply_freeze(self) -> None:
        mode = self.hparams.freeze
        if mode == "full":
            return
        depths, total = backbone_depths(self.backbone)
        first_trainable = total - self.hparams.trainable_depths if mode == "partial" else total + 1
        for name, parameter in self.backbone.named_parameters():
            parameter.requires_grad_(depths[name] >= first_trainable)

    @property
    def backbone_grad(self) -> bool:
        """Whether the backbone's forward needs autograd now."""
        return torch.is_grad_enabled() and self.hparams.freeze != "frozen"

    @property
    def _use_geo(self) -> bool:
        """Geo-context is read only for the fused source, when asked for and built."""
        hp = self.hparams
        return hp.get("source") == "fused" and bool(hp.get("use_geo", True)) and self.backbone.geo is not None

    # Subclasses implement ``_step(batch, stage)``: the loss, and the update of the stage's metrics.
    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_index: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_index: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self.log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test")

    def train(self, mode: bool = True) -> BackboneTask:
        """A frozen backbone stays in eval mode (no dropout or stochastic depth in a probe's features)."""
        super().train(mode)
        if self.hparams.freeze == "frozen":
            self.backbone.eval()
        return self

    def configure_optimizers(self) -> dict[str, Any]:
        groups = parameter_groups(self, self.hparams.weight_decay, self.hparams.layer_decay)
        return adamw_with_schedule(
            groups, self.hparams.lr, self.trainer.estimated_stepping_batches, self.hparams.warmup_steps
        )
