"""SkySense encoders as TerraTorch backbones (``pip install 'skysense[terratorch]'``): TerraTorch's own factory and
segmentation task build on them by name and train on a real Sen1Floods11 chip; weights come from ``ckpt_path``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

_precision = torch.get_float32_matmul_precision()
import skysense.models.terratorch_models  # noqa: E402, F401  (registers the backbones)

pytest.importorskip("terratorch")
from terratorch.models import EncoderDecoderFactory  # noqa: E402
from terratorch.registry import BACKBONE_REGISTRY, TERRATORCH_BACKBONE_REGISTRY  # noqa: E402

from skysense import create_model, save_pretrained  # noqa: E402
from skysense.data.sensors import s2_l1c_to_model_bands  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "skysense" / "sample_data"


def test_importing_terratorch_through_skysense_keeps_the_matmul_precision() -> None:
    """This module was collected with the rest of the suite: TerraTorch's import sets "medium" for the whole process,
    which made float32 parity tests elsewhere fail; importing it through skysense restores the setting."""
    assert torch.get_float32_matmul_precision() == _precision == "highest"


def _chip() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real Sen1Floods11 chip (Spain 7370579, 64²): S2's 10 model bands and RGB, standardised per band, and
    its hand-labelled water mask (0 / 1)."""
    with rasterio.open(SAMPLES / "sen1floods11_Spain_7370579_S2Hand_64.tif") as src:
        s2 = s2_l1c_to_model_bands(src.read().astype(np.float32), "chip")  # B2 B3 B4 B5 B6 B7 B8 B8A B11 B12
    with rasterio.open(SAMPLES / "sen1floods11_Spain_7370579_LabelHand_64.tif") as src:
        label = torch.from_numpy(src.read(1).astype(np.int64))
    s2 = torch.from_numpy(s2)
    s2 = (s2 - s2.mean(dim=(1, 2), keepdim=True)) / s2.std(dim=(1, 2), keepdim=True)
    return s2[None], s2[[2, 1, 0]][None], label[None]


def test_every_preset_is_registered_and_the_factory_builds_on_it() -> None:
    assert {"skysense_hr_paper", "skysense_s2_paper", "skysense_s1_paper", "skysense_hr_tiny"} <= set(
        TERRATORCH_BACKBONE_REGISTRY
    )
    assert "skysense_hr_tiny" in BACKBONE_REGISTRY  # found through TerraTorch's multi-source registry
    s2, _, label = _chip()
    model = EncoderDecoderFactory().build_model(
        task="segmentation", backbone="skysense_s2_tiny", decoder="FCNDecoder", num_classes=2
    )
    assert model.encoder.out_channels == [64, 64]  # the tiny S2 ViT's 2 blocks, on its 16² patch grid
    with torch.no_grad():
        logits = model(s2).output
    assert logits.shape == (1, 2, *label.shape[1:]) and torch.isfinite(logits).all()


def test_terratorch_segmentation_task_trains_on_a_real_chip(tmp_path: Path) -> None:
    """TerraTorch's SemanticSegmentationTask with the tiny HR Swin V2 and a UperNet decoder, trained by Lightning:
    the loss on the real chip's RGB and water label falls over a few optimiser steps."""
    import lightning.pytorch as pl
    from terratorch.tasks import SemanticSegmentationTask
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    _, rgb, label = _chip()
    # the chip and its mirror image: UperNet's pooling module normalises over a batch of 1 × 1 maps
    rgb, label = torch.cat([rgb, rgb.flip(-1)]), torch.cat([label, label.flip(-1)])
    task = SemanticSegmentationTask(
        model_factory="EncoderDecoderFactory",
        model_args={
            "backbone": "skysense_hr_tiny",
            "decoder": "UperNetDecoder",
            "decoder_channels": 32,
            "num_classes": 2,
        },  # fmt: skip
        loss="ce",
        ignore_index=-1,  # TerraTorch's default (None) is refused by this torch's cross_entropy
        lr=1e-3,
        freeze_backbone=False,
    )

    def loss() -> float:
        task.eval()
        with torch.no_grad():
            output = task.model(rgb).output
        assert output.shape == (2, 2, 64, 64)
        return float(torch.nn.functional.cross_entropy(output, label))

    before = loss()
    batches = [{"image": rgb, "mask": label}] * 10
    trainer = pl.Trainer(accelerator="cpu", max_steps=10, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(task, DataLoader(batches, batch_size=None))
    after = loss()
    assert np.isfinite(after) and after < 0.8 * before, (before, after)


def test_ckpt_path_loads_skysense_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_model("tiny")
    weights = save_pretrained(model, tmp_path / "tiny.safetensors")
    backbone = BACKBONE_REGISTRY.build("skysense_hr_tiny", ckpt_path=str(weights))
    expected = model.hr.patch_embed.proj.weight
    loaded = dict(backbone.named_parameters())
    key = next(k for k in loaded if k.endswith("patch_embed.proj.weight"))
    assert torch.equal(loaded[key], expected)


TERRATORCH_YAML = """
seed_everything: 0
trainer:
  accelerator: cpu
  max_steps: 2
  logger: false
  enable_checkpointing: false
  limit_val_batches: 1
  num_sanity_val_steps: 0
  enable_progress_bar: false
data:
  class_path: terratorch.datamodules.GenericNonGeoSegmentationDataModule
  init_args:
    batch_size: 2
    num_workers: 0
    num_classes: 2
    train_data_root: {s1}
    train_label_data_root: {labels}
    val_data_root: {s1}
    val_label_data_root: {labels}
    img_grep: "*_S1Hand.tif"
    label_grep: "*_LabelHand.tif"
    means: [-10.0, -17.0]
    stds: [4.0, 4.0]
    no_data_replace: 0
    no_label_replace: -1
    train_transform:
      - class_path: albumentations.CenterCrop
        init_args: {{height: 64, width: 64}}
      - class_path: albumentations.pytorch.transforms.ToTensorV2
    val_transform:
      - class_path: albumentations.CenterCrop
        init_args: {{height: 64, width: 64}}
      - class_path: albumentations.pytorch.transforms.ToTensorV2
model:
  class_path: terratorch.tasks.SemanticSegmentationTask
  init_args:
    model_factory: EncoderDecoderFactory
    model_args:
      backbone: skysense_s1_tiny
      decoder: FCNDecoder
      num_classes: 2
    loss: ce
    ignore_index: -1
optimizer:
  class_path: torch.optim.AdamW
  init_args:
    lr: 1.0e-3
"""


@pytest.mark.slow
def test_a_terratorch_yaml_names_a_skysense_backbone(tmp_path: Path) -> None:
    """``terratorch fit --config`` with ``backbone: skysense_s1_tiny`` on the real Sen1Floods11 S1 chips and hand
    labels (TerraTorch's generic segmentation data module). The backbones are registered by a plain ``import skysense``
    in ``custom_modules/``, which TerraTorch imports during its own import."""
    from tests.conftest import shared_path

    s1 = shared_path("sen1floods11_samples", "sample_data", "S1")
    labels = shared_path("sen1floods11_samples", "sample_data", "Labels")
    (tmp_path / "custom_modules").mkdir()
    (tmp_path / "custom_modules" / "__init__.py").write_text("import skysense  # noqa: F401\n")
    (tmp_path / "config.yaml").write_text(TERRATORCH_YAML.format(s1=s1, labels=labels))
    done = subprocess.run([sys.executable, "-m", "terratorch", "fit", "--config", "config.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "`max_steps=2` reached" in done.stdout + done.stderr
