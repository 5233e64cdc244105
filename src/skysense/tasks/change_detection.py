"""Bi-temporal change detection with a Siamese HR encoder, as a Lightning module.

Both dates go through the same HR encoder (shared weights); at every pyramid level their features are merged by
``"difference"`` (|F₁ − F₂|, symmetric in time) or ``"concat"`` ([F₁, F₂], twice the channels, order-aware), and a
UperNet head (with the optional FCN auxiliary head) predicts change / no change per pixel. Everything else —
fine-tuning modes, layer-wise decay, losses, mIoU / per-class IoU and F1 (the change class's F1 is the usual change
detection score) — is :class:`~skysense.tasks.segmentation.SegmentationTask`'s.
"""

from __future__ import annotations

from typing import Any

import torch

from skysense.batch import SkySenseInput
from skysense.containers import Batch
from skysense.tasks.segmentation import SegmentationTask

MERGES = ("difference", "concat")


class ChangeDetectionTask(SegmentationTask):
    """Siamese change detection.

    Args:
        merge: "difference" or "concat".
        num_classes: 2 by default (no change, change).
        Others: as :class:`~skysense.tasks.segmentation.SegmentationTask` (the source is always "hr").
    """

    def __init__(
        self,
        merge: str = "difference",
        num_classes: int = 2,
        class_names: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        if kwargs.get("source", "hr") != "hr":
            raise ValueError("change detection reads the HR pyramid: source must be 'hr'")
        super().__init__(num_classes=num_classes, class_names=class_names, **kwargs)

    def configure_models(self) -> None:
        # defaults set on the hyperparameters themselves: under LightningCLI they are the config's values, not the
        # arguments this __init__ passes on
        if self.hparams.get("modalities") is None:
            self.hparams.modalities = ["hr"]
        if self.hparams.get("class_names") is None:
            self.hparams.class_names = ["no_change", "change"]
        super().configure_models()

    def _source_channels(self) -> list[int]:
        channels = super()._source_channels()
        return [2 * c for c in channels] if self.hparams.merge == "concat" else channels

    def forward(  # type: ignore[override]
        self, inputs: SkySenseInput, hr_t2: torch.Tensor, size: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """First-date inputs (their ``hr``) and the second-date image (B, C, H, W) → {"logits": (B, K, H, W)[, "aux"]}."""
        if inputs.hr is None or hr_t2 is None:
            raise ValueError("change detection needs both dates: inputs.hr and hr_t2")
        if inputs.hr.shape != hr_t2.shape:
            raise ValueError(f"the two dates differ in shape: {tuple(inputs.hr.shape)} vs {tuple(hr_t2.shape)}")
        with torch.set_grad_enabled(self.backbone_grad):
            both = self.backbone.hr(torch.cat([inputs.hr, hr_t2]))  # one pass for both dates: (2B, C_i, h_i, w_i)
        maps = []
        for level in both:
            first, second = level.chunk(2)
            merged = (first - second).abs() if self.hparams.merge == "difference" else torch.cat([first, second], dim=1)
            maps.append(merged)
        return self.decode(maps, size)

    def batch_outputs(self, batch: Batch, size: tuple[int, int] | None) -> dict[str, torch.Tensor]:
        return self(batch.inputs, batch.hr_t2, size=size)
