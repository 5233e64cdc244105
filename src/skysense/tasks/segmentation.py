"""Semantic segmentation on SkySense features, as a Lightning module.

The head reads one source:

- ``"hr"``: the HR pyramid (strides 4–32) through UperNet, with the optional FCN auxiliary head on the third stage
  (the paper's setting);
- ``"s2"`` / ``"s1"``: the per-frame Sentinel features averaged over the valid frames, one map on the Sentinel grid,
  made a pyramid by pooling (:func:`~skysense.heads.segmentation.single_map_pyramid`);
- ``"fused"``: the fused representation concat[F, F_geo] (F without coordinates or with ``use_geo=False``).

Logits are up-sampled bilinearly to the label's size. The loss is cross-entropy with ``ignore_index`` (the label's
no-data value; Sen1Floods11 uses -1) and optional class weights; metrics come from torchmetrics: mIoU, per-class IoU,
overall accuracy and per-class F1, all ignoring ``ignore_index``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torchmetrics.wrappers import ClasswiseWrapper

from skysense.batch import SkySenseInput, SkySenseOutput
from skysense.containers import Batch
from skysense.errors import InputError, UsageError
from skysense.heads.classification import masked_mean
from skysense.heads.segmentation import FCNHead, UperNetHead, single_map_pyramid
from skysense.tasks.base import BackboneTask, resolve_class_names

SOURCES = ("hr", "s2", "s1", "fused")


def source_maps(out: SkySenseOutput, inputs: SkySenseInput, source: str) -> list[torch.Tensor]:
    """The maps the head reads, finest first."""
    if source == "hr":
        if out.hr_features is None:
            raise ValueError("source 'hr' needs the HR encoder and an hr input")
        return list(out.hr_features)
    if source in ("s2", "s1"):
        features = getattr(out, f"{source}_features")  # (B, T, C, h, w)
        if features is None:
            raise ValueError(f"source {source!r} needs the {source} encoder and an {source} input")
        return single_map_pyramid(masked_mean(features, getattr(inputs, f"{source}_valid")))
    if source == "fused":
        if out.features is None:
            raise ValueError("source 'fused' needs the Sentinel encoders, the fusion and an s2 or s1 input")
        return single_map_pyramid(out.features)
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


class SegmentationTask(BackboneTask):
    """Fine-tune or probe a SkySense preset for semantic segmentation.

    Args:
        num_classes: number of classes K (label values 0 … K-1, plus ``ignore_index``).
        preset, modalities, model_overrides, pretrained, pretrained_network, freeze, trainable_depths, lr,
            weight_decay, layer_decay, warmup_steps: see :class:`~skysense.tasks.base.BackboneTask` and
            :class:`~skysense.tasks.classification.ClassificationTask`.
        source: "hr", "s2", "s1" or "fused".
        head_channels: UperNet width (512 in the paper's setting).
        norm: "batch" or "group" normalisation in the head (group for small batches).
        aux_weight: weight of the FCN auxiliary loss on the third HR stage (0 = no auxiliary head; HR only).
        ignore_index: label value that is not scored (no data).
        class_weights: per-class loss weights.
        class_names: for per-class metric names.
        use_geo: read the geo-context prototypes for the fused source (inputs then need lat/lon).
    """

    prog_bar_metrics = ("mIoU",)

    def __init__(
        self,
        num_classes: int,
        preset: str = "tiny",
        modalities: list[str] | None = None,
        model_overrides: dict[str, Any] | None = None,
        source: str = "hr",
        head_channels: int = 512,
        norm: str = "batch",
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        class_names: list[str] | None = None,
        freeze: str = "full",
        trainable_depths: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        layer_decay: float = 0.9,
        warmup_steps: int = 0,
        pretrained: str | None = None,
        pretrained_network: str = "teacher",
        use_geo: bool = True,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise UsageError(
                f"num_classes: {num_classes!r}; give at least 2 (binary segmentation is 2 classes: background and the class)"
            )
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(class_weights)} entries for {num_classes} classes")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class index (0 … {num_classes - 1})")
        super().__init__()

    def configure_models(self) -> None:
        hp = self.hparams
        self.class_names = resolve_class_names(hp.class_names, hp.num_classes)
        self.backbone = self.build_backbone()
        in_channels = self._source_channels()
        self.head = UperNetHead(in_channels, hp.num_classes, hp.head_channels, norm=hp.norm)
        self.aux_head = (
            FCNHead(in_channels[2], hp.num_classes, hp.head_channels // 2, hp.norm)
            if hp.aux_weight > 0 and hp.source == "hr" and len(in_channels) >= 3
            else None
        )

    def configure_metrics(self) -> None:
        """mIoU and overall accuracy; per class (validation and test): IoU and F1 (``val/IoU/<class>``)."""
        k, ignore = self.hparams.num_classes, self.hparams.ignore_index
        jaccard = torchmetrics.classification.MulticlassJaccardIndex
        self.set_metrics(
            {
                "mIoU": jaccard(k, ignore_index=ignore, average="macro"),
                "OA": torchmetrics.classification.MulticlassAccuracy(k, ignore_index=ignore, average="micro"),
            },
            {
                "IoU": ClasswiseWrapper(jaccard(k, ignore_index=ignore, average=None), self.class_names, "IoU/"),
                "F1": ClasswiseWrapper(
                    torchmetrics.classification.MulticlassF1Score(k, ignore_index=ignore, average=None),
                    self.class_names,
                    "F1/",
                ),
            },
        )

    # ------------------------------------------------------------------------------------------------------------
    def _source_channels(self) -> list[int]:
        backbone, source = self.backbone, self.hparams.source
        if source == "hr":
            if backbone.hr is None:
                raise ValueError("source 'hr' needs the HR encoder (add 'hr' to modalities)")
            stages = len(backbone.hr.config.depths)
            indices = [i % stages for i in backbone.hr.config.out_indices]
            return [backbone.hr.out_channels[i] for i in indices]
        if source in ("s2", "s1"):
            head = getattr(backbone, f"{source}_head")
            if head is None:
                raise ValueError(f"source {source!r} needs the {source} encoder (add it to modalities)")
            return [head.config.out_dim] * 4
        if backbone.fusion is None:
            raise ValueError("source 'fused' needs the fusion, so 's2' or 's1' in modalities")
        return [backbone.fusion.config.embed_dim * (2 if self._use_geo else 1)] * 4

    # ------------------------------------------------------------------------------------------------------------
    def forward(self, inputs: SkySenseInput, size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """Inputs → {"logits": (B, K, H, W)[, "aux": (B, K, H, W)]} at ``size`` (default: the head's resolution)."""
        with torch.set_grad_enabled(self.backbone_grad):
            out = self.backbone(inputs, use_geo=self._use_geo)
        return self.decode(source_maps(out, inputs, self.hparams.source), size)

    def decode(self, maps: list[torch.Tensor], size: tuple[int, int] | None) -> dict[str, torch.Tensor]:
        """Head (and, in training, the auxiliary head) on the maps, finest first; logits resized to ``size``."""
        outputs = {"logits": self.head(maps)}
        if self.aux_head is not None and self.training:
            outputs["aux"] = self.aux_head(maps[2])
        if size is not None:
            outputs = {k: F.interpolate(v, size=size, mode="bilinear", align_corners=False) for k, v in outputs.items()}
        return outputs

    def batch_outputs(self, batch: Batch, size: tuple[int, int] | None) -> dict[str, torch.Tensor]:
        """The forward for a collated batch (subclasses read more of it, e.g. the second date)."""
        return self(batch.inputs, size=size)

    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(
                logits.float(), target.long(), weight=self.class_weights, ignore_index=self.hparams.ignore_index
            )

        loss = cross_entropy(outputs["logits"])
        if "aux" in outputs:
            loss = loss + self.hparams.aux_weight * cross_entropy(outputs["aux"])
        return loss

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        target = batch.target
        if not isinstance(target, torch.Tensor) or target.ndim != 3:
            raise ValueError(f"{stage} batch needs (B, H, W) mask targets, got {type(target).__name__}")
        self._check_classes(batch)
        outputs = self.batch_outputs(batch, size=tuple(target.shape[-2:]))
        loss = self.loss(outputs, target)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=len(batch))
        self.stage_metrics(stage).update(outputs["logits"].detach().argmax(dim=1), target)
        return loss

    def setup(self, stage: str) -> None:
        """Tell a data module that fills invalid label pixels with a value of its choosing (a
        :class:`~skysense.data.datamodules.ManifestDataModule`) this task's ``ignore_index``, and check
        ``num_classes`` against the data's classes when it has them (a manifest's: its ``label_values``).

        Raises:
            UsageError: the counts differ, naming the data's classes and the option to set.
        """
        datamodule = self.attached_datamodule()
        if hasattr(datamodule, "use_ignore_index"):
            datamodule.use_ignore_index(self.hparams.ignore_index)
        self.checked_data_classes()

    def _check_classes(self, batch: Batch) -> None:
        """Refuse label values that are no class (0 … K-1) and not ``ignore_index``, naming the samples' label files:
        cross-entropy would fail with an index error, and metrics would count them wrongly.

        Raises:
            InputError: naming the values, the first such sample's files, and what to do.
        """
        target, k, ignore = batch.target, self.hparams.num_classes, self.hparams.ignore_index
        outside = (target != ignore) & ((target < 0) | (target >= k))
        if not bool(outside.any()):
            return
        values = torch.unique(target[outside]).tolist()
        first = int(outside.flatten(1).any(dim=1).nonzero()[0])
        meta = batch.meta[first] if first < len(batch.meta) else {}
        files = meta.get("files", {}).get("label") or meta.get("source") or meta.get("id", "a sample")
        shown = ", ".join(map(str, values[:8])) + (", …" if len(values) > 8 else "")
        raise InputError(
            f"label values {shown} (in {files}) are not classes 0 … {k - 1} of num_classes {k} nor ignore_index "
            f"{ignore}; map the stored values to classes (a manifest's data module: label_values, e.g. [0, 255] for "
            "a 0/255 mask), or set num_classes"
        )

    def predict_step(self, batch: Batch, batch_index: int) -> dict[str, Any]:
        """{"probabilities": (B, K, H, W), "prediction": (B, H, W), "meta": provenance} at the label's size when
        the batch has labels, else at the head's resolution."""
        size = tuple(batch.target.shape[-2:]) if isinstance(batch.target, torch.Tensor) else None
        probabilities = self.batch_outputs(batch, size=size)["logits"].float().softmax(dim=1)
        return {"probabilities": probabilities, "prediction": probabilities.argmax(dim=1), "meta": batch.meta}
