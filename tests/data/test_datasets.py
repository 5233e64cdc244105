"""Datasets on the real files in ../shared/data (or their excerpts in tests/fixtures): counts, shapes, units, dates,
coordinates, splits, and batches through collate and the tiny model. Files are indexed without decoding where
possible; only a few samples are read. Counts and sizes are derived from the files (listings, split lists, label
lines, raster sizes), so the same assertions hold on the whole datasets and on the excerpts."""

from __future__ import annotations

import collections
import datetime as dt
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from skysense import create_model
from skysense.data.collate import collate
from skysense.data.datasets import (
    AID,
    DOTA,
    DSIFN,
    LEVIRCD,
    NWPUVHR10,
    EuroSAT,
    PrestoAlgaeBlooms,
    PrestoFuelMoisture,
    Sen1Floods11,
    grouped_split,
    parse_dota_labels,
    parse_nwpu_vhr10_boxes,
    read_change_mask,
    stratified_split,
)
from skysense.data.datasets.base import list_files, read_rgb
from skysense.data.sensors import HR_RGB, S1_GRD, S2_L2A
from skysense.data.transforms import Compose, FillInvalid, Normalize
from tests.conftest import shared_path


def _split_sizes(per_class: Sequence[int], fractions: Sequence[float]) -> list[int]:
    """Sizes of the train/val/test splits of :func:`stratified_split`: each class cut at its rounded cumulative
    fractions (the documented rule), summed over the classes."""
    sizes = [0] * len(fractions)
    for members in per_class:
        cuts = [0] + [round(sum(fractions[: i + 1]) * members) for i in range(len(fractions) - 1)] + [members]
        for i in range(len(fractions)):
            sizes[i] += cuts[i + 1] - cuts[i]
    return sizes


def _raster_size(path: Path) -> tuple[int, int]:
    """(height, width) of a GeoTIFF, read from its header."""
    import rasterio

    with rasterio.open(path) as src:
        return src.height, src.width


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("tiny").eval()


def _normalized_batch(samples, **sensors):
    transform = Compose([Normalize(**sensors), FillInvalid()])
    return collate([transform(s) for s in samples])


# ------------------------------------------------------------------------------------------------------------------
# Splits and errors shared by every dataset
# ------------------------------------------------------------------------------------------------------------------
def test_stratified_and_grouped_splits_are_deterministic_disjoint_and_covering() -> None:
    ids = [f"img_{i}" for i in range(103)]
    labels = [i % 3 for i in range(103)]
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    first = stratified_split(ids, labels, fractions, seed=0)
    assert first == stratified_split(list(ids), list(labels), fractions, seed=0)
    assert first != stratified_split(ids, labels, fractions, seed=1)
    assert sorted(sum(first.values(), [])) == list(range(103))
    for label in range(3):  # every class is cut by the fractions
        members = sum(labels[i] == label for i in range(103))
        assert abs(sum(labels[i] == label for i in first["train"]) - 0.6 * members) <= 1
    groups = [f"site{i // 7}" for i in range(100)]
    split = grouped_split(groups, {"train": 0.8, "val": 0.2}, seed=3)
    assert sorted(split["train"] + split["val"]) == list(range(100))
    assert not {groups[i] for i in split["train"]} & {groups[i] for i in split["val"]}
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(ids, labels, {"train": 0.7, "test": 0.2}, seed=0)


def test_missing_files_and_download_are_refused(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        EuroSAT(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="never downloads"):
        EuroSAT(tmp_path, download=True)
    with pytest.raises(FileNotFoundError, match="AnnualCrop"):
        EuroSAT(tmp_path)
    with pytest.raises(ValueError, match="needs root"):
        NWPUVHR10()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*broken.jpg"):
        read_rgb(broken)
    assert [p.name for p in list_files(_touch(tmp_path, "b_10.jpg", "b_2.jpg", "b_1.JPG", "notes.txt"), [".jpg"])] == [
        "b_1.JPG",
        "b_2.jpg",
        "b_10.jpg",
        "broken.jpg",
    ]


def _touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


# ------------------------------------------------------------------------------------------------------------------
# EuroSAT and AID
# ------------------------------------------------------------------------------------------------------------------
def test_eurosat_counts_splits_and_units() -> None:
    root = shared_path("eurosat_rgb_dev")
    full = EuroSAT(root)
    per_class = [len(list((root / name).glob("*.jpg"))) for name in EuroSAT.classes]  # 500 each in the dev copy
    assert len(full) == sum(per_class) and list(full.classes) == sorted(full.classes)
    assert collections.Counter(full.targets) == dict(enumerate(per_class))
    splits = {name: EuroSAT(root, split=name) for name in ("train", "val", "test")}
    assert [len(splits[n]) for n in ("train", "val", "test")] == _split_sizes(per_class, (0.6, 0.2, 0.2))
    files = {name: set(ds.files) for name, ds in splits.items()}
    assert not files["train"] & files["val"] and not files["train"] & files["test"] and not files["val"] & files["test"]
    assert set().union(*files.values()) == set(full.files)
    assert collections.Counter(splits["train"].targets) == {label: round(0.6 * n) for label, n in enumerate(per_class)}
    assert EuroSAT(root, split="val").files == splits["val"].files  # deterministic
    assert EuroSAT(root, split="val", seed=1).files != splits["val"].files

    sample = full[len(full) - 1]
    assert sample.hr.shape == (3, 64, 64) and sample.hr.dtype == torch.float32
    assert 0 <= sample.hr.min() and sample.hr.max() <= 255 and sample.hr.max() > 1  # DN 0-255, not normalised
    assert sample.hr_valid.all() and sample.target == 9 and sample.meta["class_name"] == "SeaLake"
    assert sample.lat is None and sample.hr_date is None
    Normalize(hr=HR_RGB)(sample)  # the unit check accepts it


def test_aid_sizes_for_the_swin_encoder() -> None:
    root = shared_path("aid_150px_subset")
    full = AID(root)
    per_class = [len(list((root / "AID" / name).glob("*.jpg"))) for name in AID.classes]  # 50 each in the copy
    assert len(full) == sum(per_class) and len(full.classes) == 30 and list(full.classes) == sorted(full.classes)
    assert collections.Counter(full.targets) == dict(enumerate(per_class))
    sizes = [len(AID(root, split=s)) for s in ("train", "val", "test")]
    assert sizes == _split_sizes(per_class, (0.4, 0.1, 0.5))
    assert full[0].hr.shape == (3, 128, 128)  # default: resized to a multiple of 32
    crop = AID(root, image_size=128, resize="center_crop")[0].hr
    native = AID(root, image_size=None)[0].hr
    assert native.shape == (3, 150, 150) and torch.equal(crop, native[:, 11:139, 11:139])
    assert AID(root, image_size=160)[0].hr.shape == (3, 160, 160)
    with pytest.raises(ValueError, match="center-crop 160"):
        AID(root, image_size=160, resize="center_crop")[0]
    assert 0 <= full[0].hr.min() and full[0].hr.max() <= 255


def test_hr_batch_through_collate_and_the_tiny_model(model) -> None:
    dataset = EuroSAT(shared_path("eurosat_rgb_dev"))
    first = [dataset.targets.index(label) for label in (0, 1, 8)]  # the first image of three classes
    batch = _normalized_batch([dataset[i] for i in first], hr=HR_RGB)
    assert batch.inputs.hr.shape == (3, 3, 64, 64) and batch.target.tolist() == [0, 1, 8]
    assert abs(batch.inputs.hr.mean()) < 2  # normalised
    with torch.no_grad():
        out = model(batch.inputs, use_geo=False)  # EuroSAT JPEGs carry no coordinates
    assert out.features.shape == (3, 64, 2, 2) and torch.isfinite(out.features).all()


# ------------------------------------------------------------------------------------------------------------------
# Sen1Floods11
# ------------------------------------------------------------------------------------------------------------------
def test_sen1floods11_s1_chips_dates_and_the_all_nan_chip() -> None:
    root = shared_path("sen1floods11_samples")
    size = _raster_size(root / "sample_data" / "S1" / "Spain_6860600_S1Hand.tif")  # 512² (a central crop on excerpts)
    dataset = Sen1Floods11(root, mode="s1")
    assert len(dataset) == 12 and set(dataset.sensors) == {"s1"}
    ids = [dataset.chips[i] for i in range(12)]
    paraguay = dataset[ids.index("Paraguay_34417")]
    assert paraguay.s1.values.shape == (1, 2, *size) and not paraguay.s1.valid.any()
    spain = dataset[ids.index("Spain_6860600")]
    assert spain.s1.dates == [dt.date(2019, 9, 17)] and spain.s2 is None
    assert abs(spain.lat - 38.24) < 0.05 and abs(spain.lon + 0.67) < 0.05
    assert spain.s1.valid.all() and spain.target.dtype == torch.int64 and spain.target.shape == size
    assert set(spain.target.unique().tolist()) <= {-1, 0, 1}
    mekong = dataset[ids.index("Mekong_333434")]  # the metadata calls this event "Cambodia"
    assert mekong.s1.dates == [dt.date(2018, 8, 5)] and 10 < mekong.lat < 15 and 100 < mekong.lon < 110

    # the all-NaN frame is masked by collate (no fill needed), and FillInvalid makes it finite
    batch = collate([paraguay, spain])
    assert batch.inputs.s1_valid.tolist() == [[False], [True]]
    filled = _normalized_batch([paraguay, spain], s1=S1_GRD)
    assert torch.isfinite(filled.inputs.s1).all() and not filled.s1_pixel_valid[0].any()

    test, bolivia = Sen1Floods11(root, split="test"), Sen1Floods11(root, split="bolivia")  # that repo's lists
    assert (len(test), len(bolivia)) == (9, 3) and sorted(test.chips + bolivia.chips) == sorted(dataset.chips)
    with pytest.raises(FileNotFoundError, match="flood_train_data.csv"):
        Sen1Floods11(root, split="train")


def test_sen1floods11_tiles_are_windows_of_the_chip() -> None:
    root = shared_path("sen1floods11_samples")
    side = _raster_size(root / "sample_data" / "S1" / "Spain_6860600_S1Hand.tif")[0] // 4  # 4 × 4 tiles per chip
    tiles = Sen1Floods11(root, mode="s1", tile_size=side)
    assert len(tiles) == 12 * 16
    assert [tiles.windows[i][1].row_off for i in (0, 4, 15)] == [0, side, 3 * side]
    tile = tiles[16 + 5]  # second chip, row 1, column 1
    chip = Sen1Floods11(root, mode="s1")[1]
    assert tile.meta["id"] == f"{tiles.chips[1]}_r{side}_c{side}"
    assert torch.equal(tile.target, chip.target[side : 2 * side, side : 2 * side])
    assert torch.allclose(tile.s1.values, chip.s1.values[..., side : 2 * side, side : 2 * side], equal_nan=True)


def test_sen1floods11_s1s2_triple_through_the_tiny_model(model) -> None:
    root = shared_path("sen1floods11_samples")
    size = _raster_size(root / "cloudtostreet_official_sample" / "S2" / "Spain_7370579_S2Hand.tif")
    whole = Sen1Floods11(root, mode="s1s2")
    assert len(whole) == 1
    sample = whole[0]
    assert sample.s2.values.shape == (1, 10, *size) and sample.s1.values.shape == (1, 2, *size)
    assert sample.s2.dates == [dt.date(2019, 9, 18)] and sample.s1.dates == [dt.date(2019, 9, 17)]
    assert abs(sample.lat - 38.1) < 0.02 and abs(sample.lon + 0.76) < 0.02  # Spain, ≈ 38.1 N, -0.76 E
    assert sample.s2.values[sample.s2.valid[:, None].expand_as(sample.s2.values)].min() > 0  # L1C x 1e4, 0 = nodata
    Normalize(s2=S2_L2A, s1=S1_GRD)(sample)

    side = size[0] // 8  # 8 × 8 tiles
    tiles = Sen1Floods11(root, mode="s1s2", tile_size=side)
    assert len(tiles) == 64
    batch = _normalized_batch([tiles[27], tiles[28]], s2=S2_L2A, s1=S1_GRD)
    assert batch.inputs.s2.shape == (2, 1, 10, side, side) and batch.target.shape == (2, side, side)
    assert batch.inputs.s2_day_of_year.tolist() == [[260], [260]] and batch.inputs.s1_day_of_year.tolist() == [
        [259],
        [259],
    ]
    assert (
        batch.inputs.lat[0] == batch.inputs.lat[1] and batch.inputs.lon[0] < batch.inputs.lon[1]
    )  # row 3, cols 3 and 4
    with torch.no_grad():
        out = model(batch.inputs)
    assert out.features.shape == (2, 128, side, side) and torch.isfinite(out.features).all()


# ------------------------------------------------------------------------------------------------------------------
# Presto time series
# ------------------------------------------------------------------------------------------------------------------
def test_presto_algae_series_bands_dates_and_splits() -> None:
    root = shared_path("presto_s1s2_timeseries")
    npy = root / "algae_blooms" / "npy"
    severity, tests = np.load(npy / "target.npy"), int(np.load(npy / "is_test.npy").sum())
    n = len(severity)  # 1,122 rows (345 test) in the shared copy
    full = PrestoAlgaeBlooms(root, split="all")
    assert len(full) == n and full.s2.shape == (n, 12, 10)
    # severities 1..5 become classes 0..4 (246, 260, 494, 116 and 6 rows in the shared copy)
    assert collections.Counter(int(full._target(i)) for i in range(n)) == collections.Counter((severity - 1).tolist())
    assert set(severity.tolist()) == {1, 2, 3, 4, 5}
    raw = np.load(npy / "s1_s2_era5_srtm.npy")
    assert np.array_equal(full.s2, raw[..., [2, 3, 4, 5, 6, 7, 8, 9, 11, 12]].astype(np.float32))  # B9 dropped
    assert np.array_equal(full.s1, raw[..., :2].astype(np.float32))

    sample = full[0]
    assert sample.s2.values.shape == (12, 10, 4, 4) and sample.s1.values.shape == (12, 2, 4, 4)
    assert (sample.s2.values == sample.s2.values[..., :1, :1]).all()  # a homogeneous patch of the one pixel
    assert sample.s2.valid.all() and isinstance(sample.target, int) and 0 <= sample.target <= 4
    assert [d.month - 1 for d in sample.s2.dates] == sample.meta["months"] and all(d.day == 15 for d in sample.s2.dates)
    assert sample.s2.dates == sorted(sample.s2.dates) and sample.s1.dates == sample.s2.dates
    assert 35 < sample.lat < 45 and -105 < sample.lon < -80  # US Midwest
    Normalize(s2=S2_L2A, s1=S1_GRD)(sample)
    assert PrestoAlgaeBlooms(root, split="all", pixel_size=1)[0].s2.values.shape == (12, 10, 1, 1)

    splits = {name: PrestoAlgaeBlooms(root, split=name) for name in ("train", "val", "test")}
    assert len(splits["test"]) == tests and len(splits["train"]) + len(splits["val"]) == n - tests
    assert abs(len(splits["val"]) - 0.2 * (n - tests)) <= 5  # stratified: each class rounds on its own
    rows = {name: set(ds.indices.tolist()) for name, ds in splits.items()}
    assert not rows["train"] & rows["val"] and not (rows["train"] | rows["val"]) & rows["test"]
    assert np.array_equal(PrestoAlgaeBlooms(root, split="val").indices, splits["val"].indices)


def test_presto_fuel_moisture_has_real_dates_and_site_splits() -> None:
    root = shared_path("presto_s1s2_timeseries")
    npy = root / "fuel_moisture" / "npy"
    n, tests = len(np.load(npy / "target.npy")), int(np.load(npy / "is_test.npy").sum())  # 2,313 and 735 in the copy
    full = PrestoFuelMoisture(root, split="all")
    assert len(full) == n and full.date_source == "label_date"
    sample = full[0]  # Lost Creek, WY, measured 2018-06-30: windows start 04-01, 05-01, 05-31
    assert sample.s2.values.shape == (3, 10, 4, 4) and isinstance(sample.target, float)
    assert sample.s2.dates == [dt.date(2018, 4, 16), dt.date(2018, 5, 16), dt.date(2018, 6, 15)]
    assert abs(sample.target - 161.5) < 1e-6 and abs(sample.lat - 43.75) < 0.01
    train, val = PrestoFuelMoisture(root, split="train"), PrestoFuelMoisture(root, split="val")
    assert len(PrestoFuelMoisture(root, split="test")) == tests and len(train) + len(val) == n - tests
    assert not {str(full.sites[i]) for i in train.indices} & {str(full.sites[i]) for i in val.indices}


def test_presto_batch_through_collate_and_the_tiny_model(model) -> None:
    dataset = PrestoAlgaeBlooms(shared_path("presto_s1s2_timeseries"), split="test")
    batch = _normalized_batch([dataset[i] for i in range(3)], s2=S2_L2A, s1=S1_GRD)
    assert batch.inputs.s2.shape == (3, 12, 10, 4, 4) and batch.inputs.s1.shape == (3, 12, 2, 4, 4)
    assert batch.target.dtype == torch.int64 and batch.inputs.lat.shape == (3,)
    assert (batch.inputs.s2_day_of_year >= 0).all()
    with torch.no_grad():
        out = model(batch.inputs)
    assert out.features.shape == (3, 128, 4, 4) and torch.isfinite(out.features).all()


# ------------------------------------------------------------------------------------------------------------------
# Detection: NWPU VHR-10, DOTA
# ------------------------------------------------------------------------------------------------------------------
def test_nwpu_vhr10_counts_splits_and_boxes() -> None:
    root = shared_path("nwpu_vhr10")
    base = root / "data" / "NWPU_VHR"
    images = sorted(p.stem for p in (base / "positive_image_set").glob("*.jpg"))  # 650 in the shared copy
    # the class ids at the end of every box line, counted without the parser (3,896 boxes in the shared copy:
    # 757 airplanes, 302 ships, 655 storage tanks, 390 baseball diamonds, 524 tennis courts, 159 basketball courts,
    # 163 ground track fields, 224 harbours, 124 bridges, 598 vehicles)
    boxes_per_class = collections.Counter(
        int(line.rsplit(",", 1)[1])
        for image in images
        for line in (base / "ground_truth" / f"{image}.txt").read_text().splitlines()
        if line.strip()
    )
    full = NWPUVHR10(root, split="all")
    assert full.ids == images and full.classes[0] == "background" and len(full.classes) == 11
    labels = torch.cat([labels for _, labels in full.annotations])
    assert collections.Counter(labels.tolist()) == boxes_per_class and set(boxes_per_class) <= set(range(1, 11))
    train, test = NWPUVHR10(root, split="train"), NWPUVHR10(root, split="test")
    listed = [(base / "image_set" / f"{name}.txt").read_text().split() for name in ("train", "test")]  # 454 / 196
    assert (train.ids, test.ids) == tuple(listed) and not set(train.ids) & set(test.ids)
    held = NWPUVHR10(root, split="train", val_fraction=0.1), NWPUVHR10(root, split="val", val_fraction=0.1)
    assert len(held[1]) == round(0.1 * len(train)) > 0 and sorted(held[0].ids + held[1].ids) == sorted(train.ids)
    with pytest.raises(ValueError, match="val_fraction"):
        NWPUVHR10(root, split="val")

    for dataset in (full, NWPUVHR10(root, split="all", image_size=None)):
        sample = dataset[1]
        boxes, hr = sample.target["boxes"], sample.hr
        assert hr.shape[-1] % 32 == 0 and hr.shape[-2] % 32 == 0 and sample.target["labels"].dtype == torch.int64
        height, width = sample.meta["original_size"]
        scale_y, scale_x = sample.meta["scale"]
        assert (boxes >= 0).all() and (boxes[:, 2] <= width * scale_x + 1e-3).all()
        assert (boxes[:, 3] <= height * scale_y + 1e-3).all()
        assert sample.hr_valid[: round(height * scale_y), : round(width * scale_x)].all()
        assert not sample.hr_valid[round(height * scale_y) :].any()
    assert full[1].hr.shape == (3, 800, 800)


def test_nwpu_parser_names_the_bad_line(tmp_path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("(1,2),(30,40),3\n\n( 5, 6),(7,8), 11\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: class id 11"):
        parse_nwpu_vhr10_boxes(path)
    path.write_text("(1,2),(30,40),3\r\n1,2,3\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected"):
        parse_nwpu_vhr10_boxes(path)


def test_dota_parser_and_dataset(tmp_path) -> None:
    root = shared_path("dota_devkit_example", "example")
    counts: collections.Counter = collections.Counter()
    # categories counted without the parser: ship 531, large-vehicle 50, small-vehicle 14, harbor 5 in the shared copy
    expected_counts: collections.Counter = collections.Counter()
    total = 0
    for name in ("P0706", "P1888"):  # 536 and 64 objects in the shared copy
        objects = [line.split() for line in (root / "labelTxt" / f"{name}.txt").read_text().splitlines()]
        objects = [fields for fields in objects if len(fields) == 10]  # x1 y1 .. x4 y4 category difficult
        expected = len(objects)
        expected_counts.update(fields[8] for fields in objects)
        target, header = parse_dota_labels(root / "labelTxt" / f"{name}.txt")
        assert target["polygons"].shape == (expected, 4, 2) and target["boxes"].shape == (expected, 4)
        assert header["imagesource"] == "GoogleEarth" and isinstance(header["gsd"], float)
        assert torch.equal(target["boxes"][:, :2], target["polygons"].amin(1))
        assert (target["boxes"][:, 2:] >= target["boxes"][:, :2]).all()
        assert target["difficult"].dtype == torch.bool
        counts.update(DOTA.classes[i] for i in target["labels"].tolist())
        total += expected
    assert total > 0 and counts == expected_counts and {"ship", "large-vehicle", "small-vehicle"} <= set(counts)

    bad = tmp_path / "bad.txt"
    bad.write_text("imagesource:GoogleEarth\r\ngsd:null\r\n1 2 3 4 5 6 7 8 container-crane 0\r\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: unknown category 'container-crane'"):
        parse_dota_labels(bad)

    dataset = DOTA(root, image_size=512)
    sample = dataset[1]
    assert len(dataset) == 2 and sample.hr.shape == (3, 512, 512) and sample.meta["id"] == "P1888"
    assert (sample.target["boxes"] <= 512).all() and sample.target["labels"].min() >= 1


# ------------------------------------------------------------------------------------------------------------------
# Change detection
# ------------------------------------------------------------------------------------------------------------------
def test_change_detection_pairs(tmp_path) -> None:
    from PIL import Image

    base = shared_path("change_detection_samples")
    names = {
        folder: sorted(p.name for p in (base / folder / "A").glob("*.png"))
        for folder in ("samples_LEVIR", "samples_DSIFN")
    }
    with Image.open(base / "samples_LEVIR" / "A" / "train_386_0512_0768.png") as image:
        size = (image.height, image.width)  # 256² (a central 128² on the excerpts)
    levir, dsifn = LEVIRCD(base / "samples_LEVIR"), DSIFN(base / "samples_DSIFN")
    assert (len(levir), len(dsifn)) == (len(names["samples_LEVIR"]), len(names["samples_DSIFN"]))  # 11 and 10 pairs
    sizes = [len(LEVIRCD(base / "samples_LEVIR", split=s)) for s in ("train", "val", "test")]
    assert sizes == [sum(n.startswith(f"{s}_") for n in names["samples_LEVIR"]) for s in ("train", "val", "test")]
    assert all(sizes)  # 3, 1 and 7 in the shared copy
    sample = levir[levir.names.index("train_386_0512_0768.png")]
    assert sample.hr.shape == sample.hr_t2.shape == (3, *size) and sample.target.shape == size
    assert sample.target.dtype == torch.int64 and sample.target.sum() == 0  # the all-zero mask
    changed = dsifn[0]
    assert set(changed.target.unique().tolist()) == {0, 1} and not torch.equal(changed.hr, changed.hr_t2)
    batch = _normalized_batch([levir[0], levir[1]], hr=HR_RGB)
    assert batch.hr_t2.shape == (2, 3, *size) and abs(batch.hr_t2.mean()) < 2  # both dates normalised
    with pytest.raises(FileNotFoundError, match=r"no split folders \(train/, val/, test/\) and no list/train\.txt"):
        DSIFN(base / "samples_DSIFN", split="train")

    Image.fromarray(np.full((4, 4), 128, dtype=np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(ValueError, match=r"mask.png: change mask values must be 0 or 255, found \[128\]"):
        read_change_mask(tmp_path / "mask.png")


def test_sen1floods11_chip_cache_gives_identical_tiles() -> None:
    from skysense.data.datasets import Sen1Floods11

    root = shared_path("sen1floods11_samples")
    side = _raster_size(root / "cloudtostreet_official_sample" / "S2" / "Spain_7370579_S2Hand.tif")[0] // 4
    cached = Sen1Floods11(root, mode="s1s2", tile_size=side)  # 16 tiles of the one chip
    uncached = Sen1Floods11(root, mode="s1s2", tile_size=side, cache_chips=0)
    for index in (0, 5, 15):
        a, b = cached[index], uncached[index]
        assert torch.equal(a.s1.values.nan_to_num(-999), b.s1.values.nan_to_num(-999))
        assert torch.equal(a.s2.values, b.s2.values) and torch.equal(a.target, b.target)
        assert a.lat == b.lat and a.lon == b.lon
    first = cached[0]
    first.s1.values.fill_(123.0)  # changing a sample must not change the cache behind the next reads
    assert not torch.equal(cached[0].s1.values, first.s1.values)


def test_change_detection_reads_the_official_split_folder_and_list_layouts(tmp_path) -> None:
    """The real DSIFN/LEVIR pairs laid out as the datasets ship: LEVIR-CD's ``train/A/train_1.png`` folders,
    DSIFN-CD's ``t1``/``t2`` JPEGs with ``mask`` PNGs (TIFF masks in ``test``), and BIT/ChangeFormer's one folder
    with ``list/<split>.txt``. Each pair reads as the original pair; ids tell apart names repeated across splits."""
    from PIL import Image

    source = shared_path("change_detection_samples", "samples_DSIFN")
    names = sorted(p.stem for p in (source / "A").glob("*.png"))[:3]
    levir = tmp_path / "LEVIR-CD"
    for split, name in zip(("train", "val", "test"), names, strict=True):
        for role in ("A", "B", "label"):
            (levir / split / role).mkdir(parents=True)
            shutil.copy(source / role / f"{name}.png", levir / split / role / f"{split}_1.png")
    dsifn = tmp_path / "DSIFN"
    for split, name in zip(("train", "val", "test"), names, strict=True):
        for role, folder in (("A", "t1"), ("B", "t2")):
            (dsifn / split / folder).mkdir(parents=True)
            Image.open(source / role / f"{name}.png").convert("RGB").save(dsifn / split / folder / "0.jpg", quality=95)
        (dsifn / split / "mask").mkdir()
        Image.open(source / "label" / f"{name}.png").save(
            dsifn / split / "mask" / f"0.{'tif' if split == 'test' else 'png'}"
        )
    listed = tmp_path / "DSIFN-256"
    shutil.copytree(source, listed)
    (listed / "list").mkdir()
    for split, chosen in (("train", names[:2]), ("val", names[2:3]), ("test", names[2:3])):
        (listed / "list" / f"{split}.txt").write_text("".join(f"{n}.png\n" for n in chosen))

    expected = {name: DSIFN(source)[DSIFN(source).ids.index(name)] for name in names}
    for split, name in zip(("train", "val", "test"), names, strict=True):
        pair = LEVIRCD(levir, split=split)
        assert len(pair) == 1 and pair.ids == [f"{split}_1"]
        assert torch.equal(pair[0].hr, expected[name].hr) and torch.equal(pair[0].target, expected[name].target)
        pair = DSIFN(dsifn, split=split)
        assert len(pair) == 1 and torch.equal(pair[0].target, expected[name].target)  # the .tif mask too
        assert (pair[0].hr - expected[name].hr).abs().mean() < 3  # JPEG at quality 95: close, not equal
    assert DSIFN(dsifn).ids == ["train/0", "val/0", "test/0"]  # "all": every split folder, ids by folder
    assert sorted(DSIFN(listed, split="train").ids) == sorted(names[:2]) and DSIFN(listed, split="val").ids == [
        names[2]
    ]
    assert DSIFN.has_splits(dsifn) and DSIFN.has_splits(listed) and not DSIFN.has_splits(source)
    with pytest.raises(FileNotFoundError, match="no val folder in .*DSIFN"):
        shutil.rmtree(dsifn / "val")
        DSIFN(dsifn, split="val")
    (listed / "list" / "test.txt").write_text("missing.png\n")
    with pytest.raises(FileNotFoundError, match=r"test\.txt lists 1 images that are not in"):
        DSIFN(listed, split="test")
    (dsifn / "train" / "mask" / "0.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"change mask of .*train/t1/0\.jpg not found"):
        DSIFN(dsifn, split="train")
