"""Your own scene-classification folders (`SceneFolder`, `SceneFolderDataModule`) on the real AID and EuroSAT images:
classes found from the folders, split folders as datasets ship them, and a classification task that checks its
classes against the data's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from skysense.cli import main
from skysense.data.datamodules import SceneFolderDataModule
from skysense.data.datasets import AID, SceneFolder
from tests.conftest import shared_path

CONFIG = Path(__file__).parents[2] / "configs" / "classification" / "eurosat.yaml"


def test_scene_folder_finds_the_classes_and_reads_split_folders(tmp_path: Path) -> None:
    aid = shared_path("aid_150px_subset", "AID")
    every = SceneFolder(aid, image_size=128)
    assert every.classes == AID.classes  # the 30 class folders, sorted: AID's own class list
    assert len(every) == len(AID(aid.parent, image_size=128))
    parts = {s: SceneFolder(aid, split=s, seed=3) for s in ("train", "val", "test")}
    assert sorted(f for p in parts.values() for f in p.files) == sorted(every.files)  # disjoint and covering
    # split folders, as UC Merced/RESISC45 re-releases and many others ship them; one class absent from val; a Mac's
    # AppleDouble litter beside the images
    root = tmp_path / "scenes"
    chosen = {"Airport": 4, "Beach": 3, "Forest": 2}
    for name, count in chosen.items():
        images = sorted((aid / name).glob("*.jpg"))
        for split, part in (("train", images[:count]), ("val", images[count : count + 1] if name != "Forest" else [])):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for image in part:
                shutil.copy(image, root / split / name / image.name)
    (root / "train" / "Airport" / "._airport_1.jpg").write_bytes(b"\x00\x05\x16\x07")
    train, val = SceneFolder(root, split="train", image_size=64), SceneFolder(root, split="val", image_size=64)
    assert train.classes == val.classes == ("Airport", "Beach", "Forest")
    assert [train.targets.count(i) for i in range(3)] == [4, 3, 2] and val.targets == [0, 1]
    sample = val[1]
    assert sample.hr.shape == (3, 64, 64) and sample.target == 1 and sample.meta["class_name"] == "Beach"
    assert len(SceneFolder(root, image_size=64)) == 11  # "all": every split folder
    with pytest.raises(FileNotFoundError, match=r"no test folder in .*scenes \(its split folders: train, val\)"):
        SceneFolder(root, split="test")
    with pytest.raises(FileNotFoundError, match="no class folders with"):
        SceneFolder(tmp_path / "scenes" / "train" / "Airport")
    only = SceneFolder(root, split="train", classes=["Forest", "Airport"], image_size=64)  # an order and a subset
    assert only.targets == [0, 0] + [1] * 4


def test_data_module_batches_and_the_task_checks_its_classes(tmp_path: Path, capsys) -> None:
    aid = shared_path("aid_150px_subset", "AID")
    datamodule = SceneFolderDataModule(aid, image_size=64, batch_size=4)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.inputs.hr.shape == (4, 3, 64, 64) and batch.target.dtype == torch.int64
    assert datamodule.classes == AID.classes
    common = ["fit", "--config", str(CONFIG), "--data", "skysense.data.datamodules.SceneFolderDataModule",
              "--data.root", str(aid), "--data.image_size", "64", "--data.batch_size", "8",
              "--trainer.default_root_dir", str(tmp_path / "runs" / "aid"),
              "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2"]  # fmt: skip
    assert main(common) == 2  # EuroSAT's 10 classes against AID's 30: named before any step
    err = capsys.readouterr().err
    assert "the data has 30 classes (Airport, BareLand" in err and "--model.init_args.num_classes 30" in err
    assert not (tmp_path / "runs").exists()  # the failed run's folders (its saved config) are not left behind
    assert main([*common, "--model.init_args.num_classes", "30", "--model.init_args.class_names", "null"]) == 0
    metrics = " ".join(path.read_text() for path in tmp_path.rglob("metrics.csv"))
    assert "val/accuracy/Airport" in metrics and "val/accuracy/Viaduct" in metrics  # the data's names were taken
