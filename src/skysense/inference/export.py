"""ONNX export of an HR encoder with its head, checked numerically against PyTorch on a real tile.

The exported graph takes a normalised HR tile (B, C, T, T) — (DN - mean) / std with the sensor's statistics, as
:class:`~skysense.inference.sources.TileReader` makes it — and returns per-class probabilities (B, K, T, T) of a
segmentation task, or the HR encoder's last-stage embedding (B, D, T / 32, T / 32). The batch axis is dynamic;
the tile side is fixed at export (Swin V2's window geometry depends on it). Sentinel-series models are not
exported (their inputs carry dates and frame masks; see docs/inference.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skysense.batch import SkySenseInput
from skysense.inference.models import SceneModel, load_scene_model
from skysense.inference.sources import SceneSources, TileReader
from skysense.models.base import resolve_indices


class _HRGraph(nn.Module):
    """The scene model on an HR tensor alone (what ONNX sees): the HR encoder's pyramid straight into the head,
    without the per-sample masking of :class:`~skysense.models.skysense.SkySense` (data-dependent control flow)."""

    def __init__(self, model: SceneModel, tile: int) -> None:
        super().__init__()
        self.kind = model.kind
        self.network = model.network
        backbone = model.network.backbone if model.kind == "classes" else model.network
        self.hr = backbone.hr
        stages = len(self.hr.feature_info)
        self.indices = resolve_indices(self.hr.config.out_indices, stages) if self.kind == "classes" else [stages - 1]
        self.tile = tile

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        maps = self.hr.forward_maps(hr, indices=self.indices)
        if self.kind == "classes":
            return self.network.decode(list(maps), (self.tile, self.tile))["logits"].float().softmax(dim=1)
        return maps[-1].float()


@dataclass
class ExportResult:
    """The exported file, its size and the largest absolute difference to PyTorch on the check tile."""

    path: Path
    megabytes: float
    max_abs_error: float


def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    hr: str | Path,
    tile: int = 256,
    kind: str = "classes",
    opset: int = 18,
    tolerance: float = 1e-3,
) -> ExportResult:
    """Export, then run the ONNX file with onnxruntime on the top-left valid ``tile``² of ``hr`` and compare.

    Raises:
        ValueError: the model reads more than the HR image, or ONNX and PyTorch differ by more than ``tolerance``.
        ImportError: onnx/onnxruntime/onnxscript missing (``pip install skysense[export]``).
    """
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as err:
        raise ImportError(
            f"ONNX export needs onnx, onnxscript and onnxruntime: pip install -e '.[export]' ({err})"
        ) from err

    output = Path(output)
    model = load_scene_model(checkpoint, kind, source="hr" if kind == "embedding" else "auto")
    if model.modalities != ["hr"] or model.source != "hr":
        raise ValueError(
            f"{checkpoint}: only HR models export to ONNX (this one reads {model.modalities}, source {model.source})"
        )
    if tile % 32:
        raise ValueError(f"tile {tile} must be a multiple of 32")
    reader = TileReader(SceneSources(hr=Path(hr)), ["hr"], model.hr_channels)
    try:
        fields, valid = reader.read(0, 0, tile)
    finally:
        reader.close()
    if not valid.any():
        raise ValueError(f"{hr}: the top-left {tile}² tile has no valid pixel to check the export on")
    example = torch.stack([fields["hr"], fields["hr"].flip(-1)])  # batch 2: torch.export specialises a batch of 1
    graph = _HRGraph(model, tile).eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        expected = model(SkySenseInput(hr=example), tile).numpy()  # the scene pipeline's own forward
        if not np.allclose(graph(example).numpy(), expected, atol=1e-5):
            raise RuntimeError("the export graph does not reproduce the scene model's forward")
        torch.onnx.export(
            graph, (example,), str(output), input_names=["hr"], output_names=[kind], opset_version=opset,
            dynamic_shapes={"hr": {0: batch}}, dynamo=True, external_data=False,
        )  # fmt: skip
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    got = session.run(None, {"hr": example.numpy()})[0]
    error = float(np.abs(got - expected).max())
    if not error <= tolerance:
        raise ValueError(f"{output}: ONNX and PyTorch differ by {error:.3g} (> {tolerance}) on the check tile")
    return ExportResult(output, output.stat().st_size / 2**20, error)
