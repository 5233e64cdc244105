"""Your own labelled files through a manifest into training (`skysense data index` → `ManifestDataModule` →
`skysense fit`), on the real LEVIR-CD and DSIFN pairs (0/255 change masks) laid out as the full datasets are:
``train/A``, ``train/B``, ``train/label``, ``test/...``, with file names repeated across splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from skysense.cli import main
from skysense.data.datamodules import ManifestDataModule
from skysense.data.manifest import ManifestDataset, index_directory, read_manifest, write_manifest
from skysense.errors import InputError, UsageError
from tests.conftest import shared_path

CONFIG = Path(__file__).parents[2] / "configs" / "change_detection" / "levir.yaml"


def _split_layout(root: Path, per_split: dict[str, list[str]]) -> Path:
    """The DSIFN pairs named ``0.png``, ``1.png``, ... again in each split folder (as DSIFN-CD, WHU-CD and S2Looking
    ship): ``root/<split>/{A,B,label}/<i>.png``."""
    source = shared_path("change_detection_samples", "samples_DSIFN")
    for split, names in per_split.items():
        for i, name in enumerate(names):
            for role in ("A", "B", "label"):
                (root / split / role).mkdir(parents=True, exist_ok=True)
                shutil.copy(source / role / f"{name}.png", root / split / role / f"{i}.png")
    return root


def test_index_tells_apart_same_named_pairs_of_different_splits(tmp_path: Path) -> None:
    root = _split_layout(tmp_path / "dsifn", {"train": ["7_4", "2_4"], "val": ["9_3"], "test": ["3_4"]})
    entries = index_directory(root)
    samples = {}
    for entry in entries:
        samples.setdefault(entry.sample, set()).add((entry.split, Path(entry.path).relative_to(root).as_posix()))
    # 0.png exists in three splits: three samples, each with its own A, B and label, named by their folder
    assert samples["train_0"] == {("train", f"train/{r}/0.png") for r in ("A", "B", "label")}
    assert samples["val_0"] == {("val", f"val/{r}/0.png") for r in ("A", "B", "label")}
    assert samples["test_0"] == {("test", f"test/{r}/0.png") for r in ("A", "B", "label")}
    assert samples["1"] == {("train", f"train/{r}/1.png") for r in ("A", "B", "label")}  # no clash: unchanged
    assert len(samples) == 4
    # the same pairs without split folders keep the old grouping: one sample per name, no split
    flat = index_directory(shared_path("change_detection_samples", "samples_DSIFN"))
    assert {e.split for e in flat} == {""} and len({e.sample for e in flat}) == 10
    assert all(e.sample == Path(e.path).stem for e in flat)


def test_manifest_dataset_splits_by_folder_and_maps_label_values(tmp_path: Path) -> None:
    root = _split_layout(tmp_path / "dsifn", {"train": ["7_4", "2_4"], "val": ["9_3"], "test": ["3_4"]})
    manifest = write_manifest(index_directory(root), tmp_path / "manifest.csv")
    assert {e.split for e in read_manifest(manifest)} == {"train", "val", "test"}  # the column round-trips
    train = ManifestDataset(manifest, split="train", label_values=[0, 255])
    assert sorted(train.sample_ids) == ["1", "train_0"]
    assert ManifestDataset(manifest, split="test", label_values=[0, 255]).sample_ids == ["test_0"]
    sample = train.load("train_0")
    assert sample.hr.shape == sample.hr_t2.shape == (3, 256, 256)
    raw = torch.from_numpy(np.array(Image.open(root / "train" / "label" / "0.png")))
    assert set(raw.unique().tolist()) == {0, 255}
    assert torch.equal(sample.target, (raw == 255).long())  # 255 → class 1, 0 → class 0, every pixel
    # without label_values, 255 is a valid value that a task would ignore (its ignore_index): refused by name
    with pytest.raises(InputError, match=r"train/label/0\.png: valid pixels hold 255, the ignore_index.*label_values"):
        ManifestDataset(manifest, split="train", ignore_index=255).load("train_0")
    with pytest.raises(InputError, match=r"values \[255\] are not in label_values \[0\]"):
        ManifestDataset(manifest, split="train", label_values=[0]).load("train_0")
    with pytest.raises(UsageError, match="split 'training'"):
        ManifestDataset(manifest, split="training")


def test_manifest_without_split_column_is_split_by_hash_and_refuses_empty_splits(tmp_path: Path) -> None:
    manifest = write_manifest(index_directory(shared_path("change_detection_samples", "samples_LEVIR")),
                              tmp_path / "levir.csv")  # fmt: skip
    every = ManifestDataset(manifest).sample_ids
    parts = {s: ManifestDataset(manifest, split=s, seed=1).sample_ids for s in ("train", "val", "test")}
    assert sorted(sum(parts.values(), [])) == sorted(every)  # disjoint and covering
    assert [len(p) for p in parts.values()] == [9, 1, 1]  # 11 samples at 0.8/0.1/0.1
    assert parts["train"] == ManifestDataset(manifest, split="train", seed=1).sample_ids  # seeded: the same again
    assert parts != {s: ManifestDataset(manifest, split=s, seed=2).sample_ids for s in ("train", "val", "test")}
    with pytest.raises(InputError, match="leave no sample of its 11 for split 'val'"):
        ManifestDataset(manifest, split="val", split_fractions={"train": 0.98, "val": 0.01, "test": 0.01})
    # a folder-split manifest without a val folder: the val split is refused, naming the column's splits
    root = _split_layout(tmp_path / "dsifn", {"train": ["7_4"], "test": ["3_4"]})
    split_manifest = write_manifest(index_directory(root), tmp_path / "split.csv")
    with pytest.raises(InputError, match=r"no sample of split 'val' \(its split column: train 1, test 1\)"):
        ManifestDataset(split_manifest, split="val")
    # a sample whose files sit in two splits is refused by name
    entries = read_manifest(split_manifest)
    entries[0].split = "val" if entries[0].split == "train" else "train"
    with pytest.raises(InputError, match=f"sample '{entries[0].sample}' has files in the splits"):
        ManifestDataset(entries, split="train")


def test_manifest_data_module_takes_the_task_ignore_index_and_crops_training_samples(tmp_path: Path) -> None:
    root = _split_layout(tmp_path / "dsifn", {"train": ["7_4", "2_4"], "val": ["9_3"]})
    manifest = write_manifest(index_directory(root), tmp_path / "manifest.csv")
    datamodule = ManifestDataModule(manifest, label_values=[0, 255], crop_size=64, batch_size=2, val_split="val",
                                    test_split=None)  # fmt: skip
    datamodule.setup("fit")
    datamodule.use_ignore_index(255)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.inputs.hr.shape == batch.hr_t2.shape == (2, 3, 64, 64) and batch.target.shape == (2, 64, 64)
    assert set(batch.target.unique().tolist()) <= {0, 1}
    assert datamodule.datasets["train"].ignore_index == 255
    with pytest.raises(UsageError, match="the data's ignore_index -1 is not the task's 255"):
        ManifestDataModule(manifest, ignore_index=-1).use_ignore_index(255)


@pytest.mark.slow
def test_fit_on_an_indexed_folder_of_change_pairs(tmp_path: Path, capsys) -> None:
    """`skysense data index` then `skysense fit` with the manifest's data module: trains and tests; the same
    command without label_values stops at the first batch with one line naming the label file."""
    root = _split_layout(tmp_path / "dsifn", {"train": ["7_4", "2_4", "9_3"], "val": ["3_4"], "test": ["0_2"]})
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(root), "-o", str(manifest)]) == 0
    assert "samples: 5 (by folder: train 3, val 1, test 1)" in capsys.readouterr().out
    common = ["--config", str(CONFIG), "--data", "skysense.data.datamodules.ManifestDataModule",
              "--data.manifest", str(manifest), "--data.batch_size", "2", "--trainer.default_root_dir", str(tmp_path),
              "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
              "--trainer.max_epochs", "1"]  # fmt: skip
    assert main(["fit", *common]) == 1
    err = capsys.readouterr().err
    assert "valid pixels hold 255, the ignore_index" in err and "Traceback" not in err
    assert main(["fit", *common, "--data.label_values", "[0, 128, 255]"]) == 2  # 3 classes for a 2-class model
    assert "the data has 3 classes (0, 128, 255) and the model num_classes 2" in capsys.readouterr().err
    assert main(["fit", *common, "--data.label_values", "[0, 255]"]) == 0
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    assert main(["test", *common, "--data.label_values", "[0, 255]", "--ckpt_path", str(checkpoint)]) == 0
    metrics = " ".join(path.read_text() for path in tmp_path.rglob("metrics.csv"))
    assert "test/F1/change" in metrics


def test_task_refuses_label_values_that_are_no_class_naming_the_file(tmp_path: Path) -> None:
    """A 0/255 mask under a task whose ignore_index is not 255: cross-entropy would fail with an index error; the
    task names the value, the sample's label file and label_values instead."""
    from skysense.tasks.change_detection import ChangeDetectionTask

    root = _split_layout(tmp_path / "dsifn", {"train": ["7_4"]})
    manifest = write_manifest(index_directory(root), tmp_path / "manifest.csv")
    datamodule = ManifestDataModule(manifest, batch_size=1, val_split=None, test_split=None)
    datamodule.setup("fit")
    task = ChangeDetectionTask(preset="tiny", ignore_index=-1, freeze="full")
    task.configure_models()
    batch = next(iter(datamodule.train_dataloader()))
    with pytest.raises(InputError, match=r"label values 255 \(in \[.*train/label/0\.png'\]\) are not classes 0 … 1"):
        task.training_step(batch, 0)


def _sen1floods11_manifest(tmp_path: Path) -> Path:
    """The real Sen1Floods11 S1 chips and hand labels indexed with a date sidecar built from the dataset's own
    metadata (each event's S1 date), as a user would."""
    import json

    root = shared_path("sen1floods11_samples")
    events = json.loads((root / "Sen1Floods11_Metadata.geojson").read_text())["features"]
    dates = {
        e["properties"]["location"].replace(" ", "-"): e["properties"]["s1_date"].replace("/", "-") for e in events
    }
    dates["Mekong"] = dates["Cambodia"]  # the chips' name for the Cambodia event
    chips = root / "sample_data"
    sidecar = tmp_path / "dates.csv"
    sidecar.write_text("file,date\n" + "".join(f"{p.name},{dates[p.name.split('_')[0]]}\n"
                                               for p in sorted((chips / "S1").glob("*.tif"))))  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "index", str(chips), "--sidecar", str(sidecar), "-o", str(manifest)]) == 0
    return manifest


@pytest.mark.slow
def test_fit_and_predict_on_georeferenced_chips_writes_geotiff_masks(tmp_path: Path, capsys) -> None:
    """Flood mapping from the real Sen1Floods11 S1 chips through a manifest: the labels' -1 must be declared nodata
    (it is the task's ignore_index), the real all-NaN Paraguay chip is named, and `skysense predict` writes each mask
    as a GeoTIFF on its label's grid."""
    import rasterio

    manifest = _sen1floods11_manifest(tmp_path)
    capsys.readouterr()
    with pytest.raises(InputError, match=r"paraguay_34417.*no valid pixel in any input .*Paraguay_34417_S1Hand\.tif"):
        ManifestDataset(manifest, label_nodata=-1).load("paraguay_34417")
    kept = [e for e in read_manifest(manifest) if e.sample != "paraguay_34417"]
    manifest = write_manifest(kept, tmp_path / "kept.csv")
    common = ["--config", str(CONFIG.parents[1] / "segmentation" / "sen1floods11.yaml"),
              "--data", "skysense.data.datamodules.ManifestDataModule", "--data.manifest", str(manifest),
              "--data.crop_size", "64", "--data.batch_size", "4", "--data.eval_batch_size", "1",
              "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--trainer.enable_progress_bar", "false"]  # fmt: skip
    fit = ["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    assert main(fit) == 1  # -1 in the labels without label_nodata: one line, from the loader's worker
    err = capsys.readouterr().err
    assert "valid pixels hold -1, the ignore_index" in err and "label_nodata -1" in err
    assert "DataLoader worker" not in err and "Traceback" not in err
    assert main([*fit, "--data.label_nodata", "-1"]) == 0
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    written = tmp_path / "predictions"
    assert main(["predict", *common, "--data.label_nodata", "-1", "--ckpt_path", str(checkpoint),
                 "--trainer.callbacks.output_dir", str(written)]) == 0  # fmt: skip
    masks = sorted((written / "masks").glob("*.tif"))
    assert masks
    labels = {e.sample: e.path for e in kept if e.modality == "label"}
    for mask in masks:
        with rasterio.open(mask) as predicted, rasterio.open(labels[mask.stem]) as truth:
            assert predicted.crs == truth.crs and predicted.shape == truth.shape
            assert predicted.transform.almost_equals(truth.transform)
            assert set(predicted.read(1).flatten().tolist()) <= {0, 1}
            assert predicted.tags(1) == {"CLASS_0": "not_water", "CLASS_1": "water"}


def test_index_reads_image_and_mask_layouts_of_segmentation_datasets(tmp_path: Path) -> None:
    """Two layouts that labelled datasets ship, built from the real LEVIR pairs: ``images/x.png`` + ``masks/x.png``
    (Inria, LoveDA, many others), and ``train/123_sat.jpg`` + ``train/123_mask.png`` in one folder (DeepGlobe). The
    masks are labels (a `mask` word, or a one-band PNG), not HR images; each image and its mask are one sample."""
    source = shared_path("change_detection_samples", "samples_LEVIR")
    names = sorted(p.name for p in (source / "A").glob("*.png"))[:3]
    folders = tmp_path / "folders"
    for folder in ("images", "masks"):
        (folders / folder).mkdir(parents=True)
    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    for i, name in enumerate(names):
        shutil.copy(source / "A" / name, folders / "images" / name)
        shutil.copy(source / "label" / name, folders / "masks" / name)
        Image.open(source / "A" / name).save(flat / f"{i}_sat.jpg", quality=95)
        shutil.copy(source / "label" / name, flat / f"{i}_mask.png")
    for root in (folders, flat.parent):
        entries = index_directory(root)
        by_sample: dict[str, dict[str, int]] = {}
        for entry in entries:
            counts = by_sample.setdefault(entry.sample, {})
            counts[entry.modality] = counts.get(entry.modality, 0) + 1
        assert len(by_sample) == 3 and all(c == {"hr": 1, "label": 1} for c in by_sample.values()), by_sample
        dataset = ManifestDataset(entries, label_values=[0, 255])
        sample = dataset[0]
        assert sample.hr.shape == (3, 256, 256) and set(sample.target.unique().tolist()) <= {0, 1}
    # a one-band PNG without any label word is a label too (a class map or a palette PNG)
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(source / "label" / names[0], plain / "x.png")
    assert [e.modality for e in index_directory(plain)] == ["label"]


def test_manifest_dataset_stretches_hr_imagery_that_is_not_8_bit(tmp_path: Path) -> None:
    """The real Landsat RGB crop as 11-bit DN (× 8, uint16): ``hr_range=(0, 2040)`` reads it as the 8-bit original,
    which the Normalize transform takes; without it Normalize refuses the values."""
    import rasterio
    from rasterio.windows import Window

    from skysense.data.sensors import HR_RGB
    from skysense.data.transforms import Normalize

    with rasterio.open(shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif")) as src:
        window = Window(300, 300, 128, 128)  # inside the scene (its borders are nodata)
        values, profile = src.read(window=window), src.profile
        profile.update(width=128, height=128, transform=src.window_transform(window))
    for name, data, dtype in (("byte", values, "uint8"), ("dn11", values.astype(np.uint16) * 8, "uint16")):
        (tmp_path / name).mkdir()
        with rasterio.open(tmp_path / name / "scene_hr.tif", "w", **{**profile, "dtype": dtype}) as dst:
            dst.write(data)
    byte = ManifestDataset(index_directory(tmp_path / "byte"))[0]
    wide = ManifestDataset(index_directory(tmp_path / "dn11"), hr_range=[0, 2040])[0]
    torch.testing.assert_close(wide.hr, byte.hr, rtol=0, atol=0, equal_nan=True)  # nodata stays NaN in both
    with pytest.raises(ValueError, match=r"hr values span \[.*, 2040\]"):
        Normalize(hr=HR_RGB)(ManifestDataset(index_directory(tmp_path / "dn11"))[0])
    for wrong in ([10, 1], [0, "max"], [0, 255, 511]):  # one message for every wrong range: the option and the form
        with pytest.raises(UsageError, match=r"^hr_range: .*; give \[low, high\] with low < high"):
            ManifestDataset(index_directory(tmp_path / "dn11"), hr_range=wrong)


def test_samples_of_different_sizes_are_named_with_what_to_do(tmp_path: Path) -> None:
    """Two real LEVIR images of 256² and a 128² crop of another in one manifest: a batch of both sizes is refused
    naming the samples, crop_size and batch_size; with crop_size the batch is made."""
    source = shared_path("change_detection_samples", "samples_LEVIR")
    names = sorted(p.name for p in (source / "A").glob("*.png"))[:2]
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, name in enumerate(names):
        image, mask = Image.open(source / "A" / name), Image.open(source / "label" / name)
        if i:
            image, mask = image.crop((0, 0, 128, 128)), mask.crop((0, 0, 128, 128))
        image.save(tmp_path / "images" / name)
        mask.save(tmp_path / "masks" / name)
    manifest = write_manifest(index_directory(tmp_path), tmp_path / "manifest.csv")
    loose = ManifestDataModule(manifest, label_values=[0, 255], batch_size=2, split_fractions={"train": 1.0},
                               val_split=None, test_split=None)  # fmt: skip
    loose.setup("fit")
    with pytest.raises(ValueError, match=r"hr images differ in shape within the batch \(.*\(3, 256, 256\).*crop_size"):
        next(iter(loose.train_dataloader()))
    cropped = ManifestDataModule(manifest, label_values=[0, 255], batch_size=2, crop_size=96,
                                 split_fractions={"train": 1.0}, val_split=None, test_split=None)  # fmt: skip
    cropped.setup("fit")
    assert next(iter(cropped.train_dataloader())).inputs.hr.shape == (2, 3, 96, 96)


def test_chips_read_windows_of_large_samples(tmp_path: Path) -> None:
    """``chip_size`` cuts the real Sen1Floods11 S1 chips (512², georeferenced) and the real LEVIR pairs (256², no
    CRS) into windows: each chip equals the same window of the whole sample, placed on its own grid."""
    manifest = _sen1floods11_manifest(tmp_path)
    whole = ManifestDataset(manifest, label_nodata=-1, samples=["spain_6860600"])
    chips = ManifestDataset(manifest, label_nodata=-1, samples=["spain_6860600"], chip_size=128)
    full = whole[0]
    size = full.s1.values.shape[-1]
    assert len(chips) == (size // 128) ** 2  # 16 on the real 512² chip (the excerpt: 1)
    row, col = chips.items[-1][1]
    chip = chips[len(chips) - 1]
    window = (..., slice(row, row + 128), slice(col, col + 128))
    torch.testing.assert_close(chip.s1.values, full.s1.values[window], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(chip.target, full.target[window[1:]])
    assert chip.meta["id"] == f"spain_6860600@{row},{col}"
    transform = rasterio.Affine(*chip.meta["grid"]["transform"])
    assert transform * (0, 0) == pytest.approx(rasterio.Affine(*full.meta["grid"]["transform"]) * (col, row))
    pairs = write_manifest(index_directory(shared_path("change_detection_samples", "samples_LEVIR")),
                           tmp_path / "levir.csv")  # fmt: skip
    name = ManifestDataset(pairs).sample_ids[0]
    levir = ManifestDataset(pairs, samples=[name], chip_size=96, label_values=[0, 255])
    reference = ManifestDataset(pairs, samples=[name], label_values=[0, 255])[0]
    side = reference.hr.shape[-1]
    starts = sorted({*range(0, side - 96 + 1, 96), side - 96})
    assert [origin for _, origin in levir.items] == [(r, c) for r in starts for c in starts]
    last = levir[len(levir) - 1]
    torch.testing.assert_close(last.hr_t2, reference.hr_t2[:, -96:, -96:], rtol=0, atol=0)
    assert torch.equal(last.target, reference.target[-96:, -96:])
    with pytest.raises(UsageError, match="chip_size 100 is not a multiple of ratio 32"):
        ManifestDataset(pairs, samples=[name], chip_size=100)
    with pytest.raises(InputError, match=r"smaller than chip_size 1024"):
        ManifestDataset(pairs, samples=[name], chip_size=1024)
