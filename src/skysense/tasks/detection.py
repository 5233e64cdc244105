"""Horizontal object detection on the HR encoder, as a Lightning module: torchvision's Faster R-CNN + FPN
(:mod:`skysense.heads.detection`).

Targets are the detection datasets' dicts (:class:`~skysense.data.datasets.NWPUVHR10`,
:class:`~skysense.data.datasets.DOTA`): ``{"boxes": (N, 4) xyxy in the image's pixels, "labels": (N,) in 1..K}``
(0 is the background). Training logs torchvision's four losses (RPN objectness and box regression, RoI
classification and box regression) and their sum; validation and test report mAP at IoU 0.5 (``mAP50``, COCO-style
101-point interpolation, from torchmetrics' ``MeanAveragePrecision`` on pycocotools) and AP50 per class.

Oriented boxes: DOTA's polygons are parsed (``target["polygons"]``) but the detector predicts horizontal boxes;
training on DOTA uses the polygons' enclosing boxes. An oriented head (rotated RoI align, angle regression) is not
built: see docs/downstream.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.detection import MeanAveragePrecision

from skysense.containers import Batch
from skysense.heads.detection import HRPyramidBackbone, build_faster_rcnn
from skysense.tasks.base import BackboneTask, resolve_class_names


class DetectionTask(BackboneTask):
    """Fine-tune or probe a SkySense preset's HR encoder for horizontal object detection.

    Args:
        num_classes: object classes K (labels 1 … K; 0 is the background).
        preset, model_overrides, pretrained, pretrained_network, freeze, trainable_depths, lr, weight_decay,
            layer_decay, warmup_steps: see :class:`~skysense.tasks.base.BackboneTask`.
        image_size: side of the square (letterboxed) images of the data module (the detector does not resize them).
        fpn_channels: FPN width.
        anchor_sizes: anchor size (pixels) per pyramid level, strides 4, 8, 16, 32, 64 (an encoder with fewer
            levels takes the sizes of its strides: see :func:`~skysense.heads.detection.build_faster_rcnn`).
        aspect_ratios: anchor aspect ratios.
        detections_per_image: boxes kept per image after NMS.
        score_threshold: boxes below this score are dropped at inference.
        class_names: the K object class names (per-class metric names).
    """

    def __init__(
        self,
        num_classes: int,
        preset: str = "tiny",
        model_overrides: dict[str, Any] | None = None,
        image_size: int = 512,
        fpn_channels: int = 256,
        anchor_sizes: list[int] = [32, 64, 128, 256, 512],  # noqa: B006  (LightningCLI shows the default)
        aspect_ratios: list[float] = [0.5, 1.0, 2.0],  # noqa: B006
        detections_per_image: int = 100,
        score_threshold: float = 0.05,
        class_names: list[str] | None = None,
        freeze: str = "full",
        trainable_depths: int = 1,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        layer_decay: float = 0.9,
        warmup_steps: int = 0,
        pretrained: str | None = None,
        pretrained_network: str = "teacher",
    ) -> None:
        super().__init__()

    def configure_models(self) -> None:
        hp = self.hparams
        self.class_names = resolve_class_names(hp.class_names, hp.num_classes, first=1)  # label 0 is the background
        self.backbone = self.build_backbone(modalities=["hr"])  # detection reads the HR image only
        if self.backbone.hr is None:
            raise ValueError("detection needs the HR encoder: the preset (or model_overrides) removed it")
        pyramid = HRPyramidBackbone(self.backbone.hr, hp.fpn_channels, trainable=hp.freeze != "frozen")
        self.detector = build_faster_rcnn(
            pyramid,
            hp.num_classes,
            hp.image_size,
            anchor_sizes=hp.anchor_sizes,
            aspect_ratios=hp.aspect_ratios,
            detections_per_image=hp.detections_per_image,
            score_threshold=hp.score_threshold,
        )

    def configure_metrics(self) -> None:
        """mAP at IoU 0.5 and AP50 per class, for validation and test (training logs torchvision's losses)."""
        self.val_metrics, self.test_metrics = (
            MeanAveragePrecision(
                box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True, backend="pycocotools"
            )
            for _ in range(2)
        )

    # ------------------------------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        """Normalised images (B, 3, S, S) → in training, torchvision's loss dict (needs ``targets``); in eval, one
        ``{"boxes": (N, 4) xyxy, "labels": (N,), "scores": (N,)}`` per image."""
        return self.detector(list(images), targets)

    def _targets(self, batch: Batch, stage: str) -> list[dict[str, torch.Tensor]]:
        targets = batch.target
        if not isinstance(targets, list) or not all(isinstance(t, dict) and "boxes" in t for t in targets):
            raise ValueError(f"{stage} batch needs box targets (a list of {{'boxes', 'labels'}} dicts)")
        checked = []
        for index, target in enumerate(targets):
            boxes, labels = target["boxes"].float(), target["labels"].long()
            if len(labels) and (labels.min() < 1 or labels.max() > self.hparams.num_classes):
                source = batch.meta[index].get("annotation", batch.meta[index].get("source", f"sample {index}"))
                raise ValueError(
                    f"{source}: labels must lie in 1..{self.hparams.num_classes} (0 is the background), "
                    f"got {labels.unique().tolist()}"
                )
            checked.append({"boxes": boxes, "labels": labels})
        return checked

    def _step(self, batch: Batch, stage: str) -> torch.Tensor | None:
        if batch.inputs.hr is None:
            raise ValueError(f"{stage} batch has no hr image")
        targets = self._targets(batch, stage)
        if stage == "train":
            losses = self(batch.inputs.hr, targets)
            loss = sum(losses.values())
            self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(batch))
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
            return loss
        detections = self(batch.inputs.hr)
        self.stage_metrics(stage).update([{k: v.detach() for k, v in d.items()} for d in detections], targets)
        return None

    def log_metrics(self, stage: str) -> None:
        """``{stage}/mAP50`` and ``{stage}/AP50/<class>`` from torchmetrics' result dict."""
        metric = self.stage_metrics(stage)
        if metric is None or not metric.update_called:
            return
        result = metric.compute()
        self.log(f"{stage}/mAP50", result["map_50"], prog_bar=True)
        for class_id, value in zip(result["classes"].tolist(), result["map_per_class"].tolist(), strict=True):
            if value >= 0:  # torchmetrics gives -1 for classes absent from both targets and detections
                self.log(f"{stage}/AP50/{self.class_names[class_id - 1]}", value)
        metric.reset()

    def predict_step(self, batch: Batch, batch_index: int) -> dict[str, Any]:
        """{"detections": per image {"boxes" (N, 4) xyxy in the input's pixels, "labels", "scores", and
        "boxes_original": the boxes in the source file's pixels when the dataset letterboxed it}, "meta"}."""
        detections = self(batch.inputs.hr)
        for detection, meta in zip(detections, batch.meta, strict=True):
            if "scale" in meta:  # (scale_y, scale_x) applied by the dataset's letterbox
                scale_y, scale_x = meta["scale"]
                factors = torch.tensor([scale_x, scale_y, scale_x, scale_y], device=detection["boxes"].device)
                detection["boxes_original"] = detection["boxes"] / factors
        return {"detections": detections, "meta": batch.meta}
