"""What runs on a batch of scene tiles: a segmentation task's per-pixel class probabilities, or the encoder's
per-location embeddings, loaded from any checkpoint skysense writes.

- A fine-tuned task checkpoint (``skysense fit``): :class:`~skysense.tasks.segmentation.SegmentationTask` gives class
  probabilities at the input's resolution; any task's backbone gives embeddings.
- A pretraining checkpoint (``skysense pretrain``; the ``teacher`` network by default) or a ``.safetensors`` file of
  :func:`skysense.save_pretrained`: embeddings.

Embeddings are the fused representation concat[F, F_geo] on the Sentinel grid (one vector per 32 × 32 HR pixels,
or per Sentinel pixel without an HR image) when the model has the temporal fusion, else the HR encoder's last stage
(at its stride: 32, or 16 for the cpu preset's 3-stage encoder).

A task checkpoint names its task class (``skysense_task``, written by
:meth:`~skysense.tasks.base.BackboneTask.on_save_checkpoint`); only skysense's own tasks (:data:`TASK_CLASSES`) are
accepted, by full dotted path or bare class name, and nothing a checkpoint names is ever imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skysense.batch import SkySenseInput
from skysense.errors import InputError
from skysense.heads.classification import masked_mean
from skysense.models.registry import get_config
from skysense.models.skysense import SkySense
from skysense.models.weights import from_pretrained, load_backbone_weights, read_torch_checkpoint

# The task checkpoints skysense loads: class name -> module (a fixed list; a checkpoint's text is never imported)
TASK_CLASSES: dict[str, str] = {
    "ClassificationTask": "skysense.tasks.classification",
    "SegmentationTask": "skysense.tasks.segmentation",
    "ChangeDetectionTask": "skysense.tasks.change_detection",
    "DetectionTask": "skysense.tasks.detection",
}


@dataclass
class SceneModel:
    """A network that maps a batch of tiles to per-pixel outputs.

    Attributes:
        network: the module (kept in eval mode).
        kind: "classes" (per-class probabilities) or "embedding".
        modalities: the inputs it reads.
        channels: output channels (classes or embedding width).
        output_stride: reference-grid pixels per output pixel along each axis.
        class_names: for "classes".
        description: what was loaded (written into the output's tags).
        hr_channels: channels of the HR encoder's input (3 or 4), None without one.
        hr_multiple: HR tile sizes must be multiples of it (:func:`hr_tile_multiple`).
    """

    network: nn.Module
    kind: str
    modalities: list[str]
    channels: int
    output_stride: int
    class_names: list[str] | None = None
    description: str = ""
    source: str = "hr"
    hr_channels: int | None = None
    hr_multiple: int = 32

    def __call__(self, inputs: SkySenseInput, tile: int) -> torch.Tensor:
        """(B, channels, tile / output_stride, tile / output_stride) float32."""
        if self.kind == "classes":
            logits = self.network(inputs, size=(tile, tile))["logits"]
            return logits.float().softmax(dim=1)
        backbone: SkySense = self.network
        out = backbone(inputs, use_geo=backbone.geo is not None and inputs.lat is not None)
        if self.source in ("s2", "s1"):  # per-frame features averaged over the tile's kept frames
            features = masked_mean(getattr(out, f"{self.source}_features"), getattr(inputs, f"{self.source}_valid"))
        else:
            features = out.features if self.source == "fused" else out.hr_features[-1]
        if features.shape[1] != self.channels:
            raise ValueError(
                f"the model gives {features.shape[1]} embedding channels, {self.channels} expected: its geo-context "
                "prototypes need latitude/longitude, so the scene needs a CRS"
            )
        size = tile // self.output_stride
        if tuple(features.shape[-2:]) != (size, size):
            raise RuntimeError(f"embedding map {tuple(features.shape[-2:])} does not match the tile's {size}×{size}")
        return features.float()


def _task_classes() -> dict[str, type]:
    """The classes of :data:`TASK_CLASSES` (imported here, as the tasks pull in Lightning; a test checks that each
    class's module is the one listed there)."""
    from skysense.tasks.change_detection import ChangeDetectionTask
    from skysense.tasks.classification import ClassificationTask
    from skysense.tasks.detection import DetectionTask
    from skysense.tasks.segmentation import SegmentationTask

    return {cls.__name__: cls for cls in (ClassificationTask, SegmentationTask, ChangeDetectionTask, DetectionTask)}


def _task_class(checkpoint: dict[str, Any], path: Path) -> type:
    """The task class a checkpoint names, from the allowlist :data:`TASK_CLASSES`.

    Raises:
        InputError: naming the checkpoint and the value when it is not one of skysense's tasks (nothing is imported),
            or when an old checkpoint without ``skysense_task`` has no task options to tell its task by.
    """
    name = checkpoint.get("skysense_task")
    if name is None:  # checkpoints written before the class was stored: tell the tasks apart by their options
        hp = checkpoint.get("hyper_parameters", {})
        if "anchor_sizes" in hp:
            name = "DetectionTask"
        elif "merge" in hp:
            name = "ChangeDetectionTask"
        elif "ignore_index" in hp:
            name = "SegmentationTask"
        elif "num_classes" in hp:
            name = "ClassificationTask"
        else:
            raise InputError(
                f"{path}: not a skysense task checkpoint (no task class, no task options); give a checkpoint "
                "written by `skysense fit`"
            )
    module, _, class_name = name.rpartition(".") if isinstance(name, str) else ("", "", "")
    if class_name not in TASK_CLASSES or module not in ("", TASK_CLASSES[class_name]):
        shown = repr(name) if len(repr(name)) <= 120 else f"{repr(name)[:100]}… ({len(repr(name))} characters)"
        allowed = ", ".join(f"{module}.{cls}" for cls, module in TASK_CLASSES.items())
        raise InputError(
            f"{path}: its 'skysense_task' is {shown}, not a skysense task; skysense loads only its own tasks "
            f"({allowed}, or their bare class names): give a checkpoint written by `skysense fit`"
        )
    return _task_classes()[class_name]


def hr_tile_multiple(backbone: SkySense) -> int:
    """HR pixels that an HR tile's side must be a multiple of: the HR encoder's last-stage stride, and with the
    temporal fusion also ``hr_ratio`` (the last stage is pooled onto a Sentinel grid of that many HR pixels)."""
    if backbone.hr is None:
        return 1
    stride = backbone.hr.feature_info[-1].reduction
    return math.lcm(stride, backbone.config.hr_ratio) if backbone.fusion is not None else stride


def _backbone_modalities(backbone: SkySense) -> list[str]:
    return [name for name in ("hr", "s2", "s1") if getattr(backbone, name) is not None]


def _embedding_model(
    backbone: SkySense, description: str, ratio: int, sentinel_reference: bool, source: str = "auto"
) -> SceneModel:
    modalities = _backbone_modalities(backbone)
    if source not in ("auto", "hr", "fused", "s2", "s1"):
        raise ValueError(f"embedding source must be 'auto', 'hr', 'fused', 's2' or 's1', got {source!r}")
    if source in ("s2", "s1") and getattr(backbone, source) is None:
        raise ValueError(f"{description}: source {source!r} needs the {source} encoder")
    if source == "hr" and backbone.hr is None:
        raise ValueError(f"{description}: source 'hr' needs the HR encoder")
    if source == "fused" and backbone.fusion is None:
        raise ValueError(f"{description}: source 'fused' needs the temporal fusion")
    if source == "hr":
        channels, stride, modalities = backbone.hr.out_channels[-1], backbone.hr.feature_info[-1].reduction, ["hr"]
    elif backbone.fusion is not None:
        channels = backbone.out_channels
        stride, source = (1, "fused") if sentinel_reference else (ratio, "fused")
    elif backbone.hr is not None and source in ("auto", "hr"):
        channels, stride, source = backbone.hr.out_channels[-1], backbone.hr.feature_info[-1].reduction, "hr"
    elif source in ("s2", "s1") or (source == "auto" and (backbone.s2 or backbone.s1) is not None):
        source = source if source in ("s2", "s1") else ("s2" if backbone.s2 is not None else "s1")
        channels, modalities = getattr(backbone, f"{source}_head").config.out_dim, [source]
        stride = 1 if sentinel_reference else ratio
    else:
        raise ValueError(f"{description}: this model has no encoder to take embeddings from")
    hr_channels = backbone.hr.config.in_chans if backbone.hr is not None else None
    return SceneModel(backbone.eval(), "embedding", modalities, channels, stride, None, description, source,
                      hr_channels, hr_tile_multiple(backbone))  # fmt: skip


def load_scene_model(
    path: str | Path,
    kind: str = "classes",
    network: str = "teacher",
    ratio: int = 32,
    sentinel_reference: bool = False,
    source: str = "auto",
) -> SceneModel:
    """Load a checkpoint for scene prediction.

    Args:
        path: a task checkpoint (``.ckpt`` of ``skysense fit``), a pretraining checkpoint, or a ``.safetensors``.
        kind: "classes" (needs a segmentation task checkpoint) or "embedding" (any checkpoint).
        network: for pretraining checkpoints, "teacher" or "student".
        ratio: HR pixels per Sentinel pixel (the fused embedding's stride on an HR reference grid).
        sentinel_reference: the scene has no HR image (its grid is the Sentinel one).
        source: for embeddings: "fused" (concat[F, F_geo] on the Sentinel grid), "hr" (the HR encoder's last
            stage, at its stride), "s2"/"s1" (that encoder's per-frame features averaged over the kept frames) or "auto"
            (fused when the model has the fusion, else HR, else the Sentinel encoder it has).

    Raises:
        FileNotFoundError: no file at ``path``.
        InputError: naming the file: empty, truncated or corrupt; holding pickled objects other than tensors; not
            a skysense checkpoint, or naming a task class that is not one of skysense's (:data:`TASK_CLASSES`).
        ValueError: a ``kind``/``source`` the checkpoint cannot give, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if kind not in ("classes", "embedding"):
        raise ValueError(f"kind must be 'classes' or 'embedding', got {kind!r}")
    if path.suffix == ".safetensors":
        if kind == "classes":
            raise ValueError(f"{path} holds encoder weights only; class maps need a fine-tuned segmentation checkpoint")
        return _embedding_model(from_pretrained(path), f"weights {path.name}", ratio, sentinel_reference, source)
    checkpoint = read_torch_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(
            f"{path}: not a Lightning checkpoint (no 'state_dict'); give a checkpoint written by `skysense fit` or "
            "`skysense pretrain`, or a .safetensors file of skysense.save_pretrained"
        )
    state = checkpoint["state_dict"]
    if any(key.startswith("meta.") for key in state):  # a pretraining checkpoint
        if kind == "classes":
            raise ValueError(
                f"{path} is a pretraining checkpoint; class maps need a fine-tuned segmentation checkpoint"
            )
        hp = checkpoint.get("hyper_parameters", {})
        backbone = SkySense(get_config(hp.get("preset", "tiny"), **(hp.get("model_overrides") or {})))
        load_backbone_weights(backbone, path, network)
        return _embedding_model(backbone, f"pretraining {path.name} ({network})", ratio, sentinel_reference, source)
    task_class = _task_class(checkpoint, path)
    task = task_class.load_from_checkpoint(path, map_location="cpu", pretrained=None, weights_only=True).eval()
    if kind == "embedding":
        return _embedding_model(task.backbone, f"{task_class.__name__} {path.name}", ratio, sentinel_reference, source)
    from skysense.tasks.change_detection import ChangeDetectionTask
    from skysense.tasks.segmentation import SegmentationTask

    if not issubclass(task_class, SegmentationTask) or issubclass(task_class, ChangeDetectionTask):
        raise ValueError(
            f"{path} is a {task_class.__name__} checkpoint; scene class maps need a SegmentationTask checkpoint "
            "(use `skysense embed` for embeddings from any checkpoint)"
        )
    hp = task.hparams
    source = hp.source
    modalities = [source] if source in ("hr", "s2", "s1") else _backbone_modalities(task.backbone)
    hr_channels = task.backbone.hr.config.in_chans if task.backbone.hr is not None else None
    return SceneModel(task, "classes", modalities, hp.num_classes, 1, list(task.class_names),
                      f"{task_class.__name__} {path.name}", source, hr_channels,
                      hr_tile_multiple(task.backbone))  # fmt: skip
