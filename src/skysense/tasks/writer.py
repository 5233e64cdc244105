"""Writing ``skysense predict`` outputs to disk (a Lightning prediction writer callback).

Add it to a config's ``trainer.callbacks`` (or ``--trainer.callbacks+ skysense.tasks.writer.PredictionWriter
--trainer.callbacks.output_dir DIR``); it acts during ``predict`` only:

- ``predictions.jsonl`` (``predictions-rank<r>.jsonl`` under several processes): one line per sample with its
  ``source`` file and ``id``, and the task's prediction — the class (and its name) with the class probabilities,
  the multi-label classes, the detections (boxes in the input's and in the source file's pixels, labels, names,
  scores), or, for segmentation and change detection, the path of the mask written beside it;
- ``masks/<id>.png``: the predicted class map of each segmentation/change sample (8-bit, the class index per pixel);
  ``masks/<id>.tif``, a GeoTIFF on the sample's grid, for samples that say where they lie (``meta["grid"]``: a
  :class:`~skysense.data.manifest.ManifestDataset` sample of georeferenced files).

Georeferenced output of whole scenes (GeoTIFF, tiling and stitching) is the scene-inference command's job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image


def _safe_id(meta: dict[str, Any], fallback: str) -> str:
    raw = str(meta.get("id") or Path(str(meta.get("source", fallback))).stem or fallback)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)


class PredictionWriter(BasePredictionWriter):
    """Write each predicted batch to ``output_dir`` as it comes (nothing is kept in memory).

    Args:
        output_dir: the folder (created).
    """

    def __init__(self, output_dir: str | Path = "predictions") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self._counter = 0

    def _lines_path(self, trainer: pl.Trainer) -> Path:
        name = "predictions.jsonl" if trainer.world_size == 1 else f"predictions-rank{trainer.global_rank}.jsonl"
        return self.output_dir / name

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._lines_path(trainer).write_text("")  # a new prediction run replaces the previous file
        self._counter = 0

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        names = getattr(pl_module, "class_names", None)
        metas = prediction.get("meta") or [{}] * _batch_length(prediction)
        records = []
        for index, meta in enumerate(metas):
            sample_id = _safe_id(meta, f"sample{self._counter:06d}")
            self._counter += 1
            record: dict[str, Any] = {"source": meta.get("source"), "id": sample_id}
            if "detections" in prediction:
                record.update(_detection_record(prediction["detections"][index], names))
            elif prediction["probabilities"].ndim == 4:  # (B, K, H, W): segmentation or change masks
                mask = np.ascontiguousarray(prediction["prediction"][index].to(torch.uint8).cpu().numpy())
                grid = meta.get("grid")
                path = self.output_dir / "masks" / f"{sample_id}.{'tif' if grid else 'png'}"
                path.parent.mkdir(exist_ok=True)
                if grid:
                    _write_geotiff(path, mask, grid, names)
                else:
                    Image.fromarray(mask).save(path)
                record["mask"] = str(path.relative_to(self.output_dir))
            else:
                record.update(_class_record(prediction, index, names))
            records.append(record)
        with self._lines_path(trainer).open("a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")


def _write_geotiff(path: Path, mask: np.ndarray, grid: dict[str, Any], names: list[str] | None) -> None:
    """A class map (H, W) uint8 as a GeoTIFF on the sample's grid (``meta["grid"]``: crs, transform, height, width),
    the pixel size scaled when the map's size is not the grid's (a prediction at the head's resolution)."""
    import rasterio
    from rasterio.transform import Affine

    transform = Affine(*grid["transform"]) * Affine.scale(grid["width"] / mask.shape[1], grid["height"] / mask.shape[0])
    profile = dict(driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1, dtype="uint8",
                   crs=grid["crs"], transform=transform, compress="deflate")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(mask, 1)
        if names:
            dataset.update_tags(1, **{f"CLASS_{i}": name for i, name in enumerate(names)})


def _batch_length(prediction: dict[str, Any]) -> int:
    if "detections" in prediction:
        return len(prediction["detections"])
    return len(prediction["prediction"])


def _class_record(prediction: dict[str, Any], index: int, names: list[str] | None) -> dict[str, Any]:
    predicted = prediction["prediction"][index]
    probabilities = prediction["probabilities"][index].float().cpu()
    if predicted.ndim == 0:  # single-label
        label = int(predicted)
        record = {"class": label, "probabilities": [round(float(p), 6) for p in probabilities]}
        if names:
            record["class_name"] = names[label]
        return record
    classes = torch.nonzero(predicted).flatten().tolist()  # multi-label
    record = {"classes": classes, "probabilities": [round(float(p), 6) for p in probabilities]}
    if names:
        record["class_names"] = [names[c] for c in classes]
    return record


def _detection_record(detection: dict[str, torch.Tensor], names: list[str] | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "boxes": detection["boxes"].cpu().round(decimals=2).tolist(),
        "labels": detection["labels"].cpu().tolist(),
        "scores": detection["scores"].cpu().round(decimals=4).tolist(),
    }
    if "boxes_original" in detection:
        record["boxes_original"] = detection["boxes_original"].cpu().round(decimals=2).tolist()
    if names:
        record["names"] = [names[label - 1] for label in record["labels"]]  # labels count from 1 (0: background)
    return record
