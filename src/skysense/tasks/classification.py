"""Scene classification (single- and multi-label) on any SkySense features, as a Lightning module.

The backbone encodes the batch; the head reads one source's tokens:

- ``"hr"``: the last HR stage (B, C, h, w) as h·w tokens;
- ``"s2"`` / ``"s1"``: per-frame Sentinel features as T·h·w tokens, padded frames masked out;
- ``"fused"``: the fused representation concat[F, F_geo] (or F without coordinates) as h·w tokens.

Fine-tuning modes and the optimiser are :class:`~skysense.tasks.base.BackboneTask`'s. Metrics come from
torchmetrics: overall accuracy (OA), mean per-class accuracy (AA) and per-class accuracy for single-label tasks;
mAP (macro average precision) and macro F1 for multi-label ones.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from einops import rearrange
from torchmetrics.wrappers import ClasswiseWrapper

from skysense.batch import SkySenseInput, SkySenseOutput
from skysense.containers import Batch
from skysense.errors import UsageError
from skysense.heads.classification import build_classification_head
from skysense.tasks.base import BackboneTask, listed_classes, resolve_class_names

SOURCES = ("hr", "s2", "s1", "fused")


def source_tokens(out: SkySenseOutput, inputs: SkySenseInput, source: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, N, C) tokens of one source and their (B, N) validity (None: all valid)."""
    if source == "hr":
        if out.hr_features is None:
            raise ValueError("source 'hr' needs the HR encoder and an hr input")
        return rearrange(out.hr_features[-1], "b c h w -> b (h w) c"), None
    if source in ("s2", "s1"):
        features = getattr(out, f"{source}_features")
        if features is None:
            raise ValueError(f"source {source!r} needs the {source} encoder and an {source} input")
        height, width = features.shape[-2:]
        valid = getattr(inputs, f"{source}_valid")
        tokens = rearrange(features, "b t c h w -> b (t h w) c")
        if valid is None:
            return tokens, None
        return tokens, valid[:, :, None].expand(-1, -1, height * width).flatten(1)
    if source == "fused":
        if out.features is None:
            raise ValueError("source 'fused' needs the Sentinel encoders, the fusion and an s2 or s1 input")
        return rearrange(out.features, "b c h w -> b (h w) c"), None
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


class ClassificationTask(BackboneTask):
    """Fine-tune or probe a SkySense preset for scene classification.

    Args:
        num_classes: number of classes K.
        preset: model preset ("tiny", "small", "base", "paper").
        modalities: encoders to build (default: all of the preset); unused ones cost memory and time.
        model_overrides: further :func:`skysense.get_config` overrides.
        source: features the head reads: "hr", "s2", "s1" or "fused".
        head: "linear" or "attentive".
        head_args: extra head arguments (``dropout``, ``num_heads``, ``num_queries``).
        multilabel: targets are (B, K) multi-hot; binary cross-entropy.
        freeze: "frozen" (probe), "partial" or "full".
        trainable_depths: with "partial", how many of the backbone's last depths train.
        lr: peak learning rate (the head's; backbone depths get less with ``layer_decay``).
        weight_decay: AdamW weight decay (not on biases, norms and embeddings).
        layer_decay: layer-wise learning-rate decay (1 = off; the paper uses 0.9).
        warmup_steps: linear warm-up steps before the cosine decay.
        class_weights: per-class loss weights (single-label) or positive weights (multi-label).
        label_smoothing: single-label cross-entropy smoothing.
        pretrained: a ``.safetensors`` file of :func:`skysense.save_pretrained` or a ``skysense pretrain``
            checkpoint; None keeps the random initialisation.
        pretrained_network: from a pretraining checkpoint, "teacher" (default, the EMA network) or "student".
        class_names: for per-class metric names.
        use_geo: read the geo-context prototypes (the inputs then need lat/lon) when the model has them; the
            "fused" source is then concat[F, F_geo], otherwise F.
    """

    prog_bar_metrics = ("OA", "mAP")

    def __init__(
        self,
        num_classes: int,
        preset: str = "tiny",
        modalities: list[str] | None = None,
        model_overrides: dict[str, Any] | None = None,
        source: str = "hr",
        head: str = "linear",
        head_args: dict[str, Any] | None = None,
        multilabel: bool = False,
        freeze: str = "full",
        trainable_depths: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        layer_decay: float = 0.9,
        warmup_steps: int = 0,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        pretrained: str | None = None,
        pretrained_network: str = "teacher",
        class_names: list[str] | None = None,
        use_geo: bool = True,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise UsageError(f"num_classes: {num_classes!r}; give at least 2 (a binary task is 2 classes)")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(class_weights)} entries for {num_classes} classes")
        super().__init__()

    def configure_models(self) -> None:
        hp = self.hparams
        self.class_names = resolve_class_names(hp.class_names, hp.num_classes)
        self.backbone = self.build_backbone()
        self.head = build_classification_head(hp.head, self._source_dim(hp.source), hp.num_classes,
                                              **(hp.head_args or {}))  # fmt: skip

    def configure_metrics(self) -> None:
        """Overall (OA) and average (AA) accuracy, and the accuracy of every class (``val/accuracy/<class>``);
        multi-label: macro mAP and F1."""
        k = self.hparams.num_classes
        if self.hparams.multilabel:
            self.set_metrics(
                {
                    "mAP": torchmetrics.classification.MultilabelAveragePrecision(k, average="macro"),
                    "F1": torchmetrics.classification.MultilabelF1Score(k, average="macro"),
                }
            )
            return
        self.set_metrics(
            {
                "OA": torchmetrics.classification.MulticlassAccuracy(k, average="micro"),
                "AA": torchmetrics.classification.MulticlassAccuracy(k, average="macro"),
            },
            {
                "accuracy": ClasswiseWrapper(
                    torchmetrics.classification.MulticlassAccuracy(k, average=None), self.class_names, "accuracy/"
                )
            },
        )

    # ------------------------------------------------------------------------------------------------------------
    def _source_dim(self, source: str) -> int:
        backbone = self.backbone
        if source == "hr":
            if backbone.hr is None:
                raise ValueError("source 'hr' needs the HR encoder (add 'hr' to modalities)")
            return backbone.hr.out_channels[-1]
        if source in ("s2", "s1"):
            head = getattr(backbone, f"{source}_head")
            if head is None:
                raise ValueError(f"source {source!r} needs the {source} encoder (add it to modalities)")
            return head.config.out_dim
        if backbone.fusion is None:
            raise ValueError("source 'fused' needs the fusion, so 's2' or 's1' in modalities")
        return backbone.fusion.config.embed_dim * (2 if self._use_geo else 1)

    # ------------------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Check ``num_classes`` and ``class_names`` against the data module's classes (when it has them): a model of
        10 classes on a folder of 21 would fail at its first batch with an index error, and names in another order
        would mislabel every per-class metric. Without ``class_names`` the data's are taken.

        Raises:
            UsageError: naming the data's classes and the options to set.
        """
        if self.hparams.multilabel:
            return
        classes = self.checked_data_classes(
            " (and --model.init_args.class_names null, or the data's names in their order)"
        )
        if not classes:
            return
        names = self.hparams.class_names
        if names is None:  # the data's names for per-class metrics and predictions (and in the checkpoint)
            self.hparams.class_names = list(classes)
            self.class_names = list(classes)
            self.configure_metrics()
            return

        def key(name: str) -> str:
            return "".join(c for c in str(name).lower() if c.isalnum())

        if [key(n) for n in names] != [key(c) for c in classes]:
            raise UsageError(
                f"class_names {list(names)[:12]} are not the data's classes in their order "
                f"({listed_classes(classes)}); give "
                "--model.init_args.class_names null (the data's names are then taken) or list them in that order"
            )

    def forward(self, inputs: SkySenseInput) -> torch.Tensor:
        """Inputs → (B, K) logits."""
        with torch.set_grad_enabled(self.backbone_grad):
            out = self.backbone(inputs, use_geo=self._use_geo)
        tokens, valid = source_tokens(out, inputs, self.hparams.source)
        return self.head(tokens, valid)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.hparams.multilabel:
            return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=self.class_weights)
        return F.cross_entropy(
            logits, target.long(), weight=self.class_weights, label_smoothing=self.hparams.label_smoothing
        )

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        if batch.target is None or isinstance(batch.target, list):
            raise ValueError(f"{stage} batch has no tensor target (samples {[m.get('id') for m in batch.meta][:3]})")
        logits = self(batch.inputs)
        loss = self.loss(logits, batch.target)
        size = len(batch)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=size)
        scores = logits.detach().float()
        self.stage_metrics(stage).update(scores.sigmoid() if self.hparams.multilabel else scores, batch.target.long())
        return loss

    def predict_step(self, batch: Batch, batch_index: int) -> dict[str, Any]:
        """{"probabilities": (B, K), "prediction": (B,) class or (B, K) bool, "meta": provenance}."""
        logits = self(batch.inputs).float()
        if self.hparams.multilabel:
            probabilities = logits.sigmoid()
            return {"probabilities": probabilities, "prediction": probabilities > 0.5, "meta": batch.meta}
        probabilities = logits.softmax(dim=-1)
        return {"probabilities": probabilities, "prediction": probabilities.argmax(dim=-1), "meta": batch.meta}
