"""Horizontal object detection on the HR pyramid: torchvision's Faster R-CNN with an FPN on our Swin V2 encoder.

Nothing of the detector is written here: the region proposal network, RoI align, box head, losses and
post-processing are torchvision's (:class:`torchvision.models.detection.FasterRCNN`,
:class:`torchvision.ops.FeaturePyramidNetwork`). This module only adapts the encoder: :class:`HRPyramidBackbone`
turns the HR encoder's stage outputs (strides 4, 8, 16, 32; 4, 8, 16 for the ``cpu`` preset) into the
``OrderedDict`` of FPN maps with an ``out_channels`` attribute that torchvision's detectors take, plus a max-pooled
level at twice the last stride (64; 32 for ``cpu``) for the largest anchors (as in torchvision's ResNet-50-FPN).

Inputs reach the detector already normalised by the data pipeline (:class:`~skysense.data.transforms.Normalize`),
so the detector's own normalisation is the identity (mean 0, std 1), and its resize is the identity when
``image_size`` is the side of the (square, letterboxed) images it receives.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from skysense.models.swin_v2 import SwinTransformerV2


class HRPyramidBackbone(nn.Module):
    """HR encoder + FPN as a torchvision detection backbone.

    Args:
        encoder: the HR Swin V2 encoder (``SkySense.hr``). It is referenced, not registered as a submodule: the task
            that owns the backbone registers it once (no second copy of its weights in checkpoints) and moves it
            between devices and train/eval modes; used on its own, move the encoder yourself.
        fpn_channels: FPN width (256 in the paper's detection setting).
        trainable: whether gradients flow into the encoder (False for a frozen probe: no autograd graph is kept).

    Shapes:
        images (B, 3, H, W) → {"0": (B, F, H/4, W/4), "1": (B, F, H/8, W/8), "2": …/16, "3": …/32,
        "pool": …/64}, F = ``fpn_channels``.
    """

    def __init__(self, encoder: SwinTransformerV2, fpn_channels: int = 256, trainable: bool = True) -> None:
        super().__init__()
        self._encoder = (encoder,)  # not a submodule: see Args
        self.trainable = trainable
        self.stages = list(range(len(encoder.config.depths)))
        in_channels = [encoder.out_channels[i] for i in self.stages]
        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    @property
    def encoder(self) -> SwinTransformerV2:
        return self._encoder[0]

    @property
    def strides(self) -> list[int]:
        """The stride of every pyramid level: the encoder stages', then the pooled level's (twice the last)."""
        stages = [self.encoder.feature_info[i].reduction for i in self.stages]
        return [*stages, 2 * stages[-1]]

    @property
    def feature_names(self) -> list[str]:
        """Names of the stride 4–32 maps (what RoI align pools from)."""
        return [str(i) for i in self.stages]

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            maps = self.encoder.forward_maps(images, indices=self.stages)
        return self.fpn(OrderedDict((str(i), m) for i, m in zip(self.stages, maps, strict=True)))


def build_faster_rcnn(
    backbone: HRPyramidBackbone,
    num_classes: int,
    image_size: int,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    detections_per_image: int = 100,
    score_threshold: float = 0.05,
) -> FasterRCNN:
    """torchvision's Faster R-CNN on ``backbone``.

    Args:
        backbone: the HR pyramid.
        num_classes: object classes, without the background (torchvision's count is this + 1).
        image_size: side of the square images the detector receives (its resize is then the identity).
        anchor_sizes: one anchor size (pixels) per pyramid level, in stride order. A longer list is read as the
            sizes for strides 4, 8, 16, 32, 64, … and each level takes the size of its stride: the five sizes of a
            4-stage encoder's configs then also fit the 3-stage ``cpu`` preset (levels at strides 4 … 32).
        aspect_ratios: anchor aspect ratios (height / width), the same at every level.
        detections_per_image: the most boxes kept per image after NMS.
        score_threshold: boxes below this score are dropped at inference.
    """
    strides = backbone.strides
    levels = len(strides)
    if len(anchor_sizes) > levels:
        by_stride = {4 << i: size for i, size in enumerate(anchor_sizes)}  # strides 4, 8, 16, …
        if any(stride not in by_stride for stride in strides):
            raise ValueError(
                f"anchor_sizes: {len(anchor_sizes)} sizes for strides 4, 8, …, but the pyramid's levels are at "
                f"strides {strides}: give one size per level ({levels})"
            )
        anchor_sizes = [by_stride[stride] for stride in strides]
    if len(anchor_sizes) != levels:
        raise ValueError(
            f"anchor_sizes needs one size per pyramid level ({levels}, strides {strides}), got {list(anchor_sizes)}"
        )
    bands = backbone.encoder.config.in_chans
    anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), (tuple(aspect_ratios),) * levels)
    return FasterRCNN(
        backbone,
        num_classes=num_classes + 1,
        min_size=image_size,
        max_size=image_size,
        image_mean=[0.0] * bands,  # the data pipeline has already normalised the images
        image_std=[1.0] * bands,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(backbone.feature_names, output_size=7, sampling_ratio=2),
        box_detections_per_img=detections_per_image,
        box_score_thresh=score_threshold,
    )
