"""Real scenes and checkpoints for the scene-prediction fault tests (built in tmp folders from ../shared/data or its
excerpts in tests/fixtures)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning
import numpy as np
import rasterio
import torch

from skysense.tasks.segmentation import SegmentationTask
from tests.conftest import shared_path

RASTERIO = ("rasterio_testdata", "tests", "data")
S1_CHIPS = ("sen1floods11_samples", "sample_data", "S1")


def segmentation_checkpoint(path: Path, modalities: Sequence[str] = ("hr",), num_classes: int = 3) -> Path:
    """A tiny segmentation task (random init, seed 0) saved as a Lightning checkpoint, as `skysense fit` writes it."""
    torch.manual_seed(0)
    source = modalities[0] if len(modalities) == 1 else "fused"
    task = SegmentationTask(num_classes=num_classes, preset="tiny", modalities=list(modalities), source=source,
                            head_channels=32, norm="group",
                            class_names=[f"class_{i}" for i in range(num_classes)])  # fmt: skip
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                  "pytorch-lightning_version": lightning.__version__}  # fmt: skip
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def mosaic_scene(path: Path, side: int = 2048, compress: str | None = "deflate") -> Path:
    """An HR scene of ``side``² pixels mosaicked from the real Cloud-Optimized GeoTIFF ``cogeo.tif`` (1024², RGB,
    EPSG:3857) and its mirror images, on cogeo's own grid (same CRS, origin and pixel size)."""
    with rasterio.open(shared_path(*RASTERIO, "cogeo.tif")) as src:
        image, profile = src.read(), src.profile
    block = np.concatenate(
        [np.concatenate([image, image[:, :, ::-1]], 2), np.concatenate([image[:, ::-1], image[:, ::-1, ::-1]], 2)], 1
    )
    reps = -(-side // block.shape[1])
    scene = np.tile(block, (1, reps, reps))[:, :side, :side]
    profile.update(width=side, height=side, tiled=True, blockxsize=256, blockysize=256, photometric="RGB",
                   compress=compress)  # fmt: skip
    if compress is None:
        profile.pop("compress")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene)
    return path


def crop(source: Path, target: Path, size: int) -> Path:
    """The top-left ``size``² pixels of ``source`` (which must hold them) as a GeoTIFF of their own."""
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        assert size <= min(src.width, src.height), (source, size)
        window = Window(0, 0, size, size)
        profile = src.profile
        profile.update(width=size, height=size, transform=src.window_transform(window))
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_all(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def skysense_process(args: Sequence[str], **kwargs) -> subprocess.Popen:
    """``python -m skysense.cli ARGS`` in a child process (stdout/stderr captured)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SKYSENSE_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "skysense.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)  # fmt: skip
