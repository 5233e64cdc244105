"""Embeddings as float16 (issue 14): half the bytes, the float32 values to half precision; the size is said before
writing; a class map refuses --dtype float16. Real input: a Sen1Floods11 S1 chip on its own grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from skysense.cli import main
from skysense.models.registry import create_model
from skysense.models.weights import save_pretrained
from tests.conftest import shared_path
from tests.reliability.scene_fixtures import crop, segmentation_checkpoint

CHIP = ("sen1floods11_samples", "sample_data", "S1", "Spain_6860600_S1Hand.tif")


def _chip(tmp_path: Path) -> Path:
    """The real S1 chip's top-left 256² (the excerpt's chip: its whole 128²): four tiles of the default 128."""
    with rasterio.open(shared_path(*CHIP)) as src:
        side = min(src.width, 256)
    return crop(shared_path(*CHIP), tmp_path / "chip.tif", side)


@pytest.mark.slow
def test_float16_embeddings_and_the_size_line(capsys, tmp_path: Path) -> None:
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    chip = _chip(tmp_path)
    with rasterio.open(chip) as src:
        side = src.width  # 256 (the excerpt: 128)
    outputs = {}
    for dtype in ("float32", "float16"):
        output = tmp_path / f"{dtype}.tif"
        args = ["embed", "--checkpoint", str(weights), "--s1", str(chip), "--s1-dates", "2019-09-18", "--source",
                "s1", "--output", str(output), "--dtype", dtype]  # fmt: skip
        assert main(args) == 0
        err = capsys.readouterr().err
        assert f"{output}: {side}×{side} px × " in err and f"{dtype}, " in err and "GiB before compression" in err
        with rasterio.open(output) as dataset:
            outputs[dtype] = dataset.read()
            assert dataset.dtypes[0] == "float32"
            assert dataset.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == ("16" if dtype == "float16" else None)
    full, half = outputs["float32"], outputs["float16"]
    assert np.array_equal(np.isnan(full), np.isnan(half))
    finite = np.isfinite(full)
    assert np.allclose(half[finite], full[finite], rtol=2e-3, atol=1e-3)
    assert (tmp_path / "float16.tif").stat().st_size < 0.7 * (tmp_path / "float32.tif").stat().st_size
    checkpoint = segmentation_checkpoint(tmp_path / "flood.ckpt", modalities=("s1",), num_classes=2)
    code = main(["predict", "--checkpoint", str(checkpoint), "--s1", str(chip), "--s1-dates", "2019-09-18",
                 "--output", str(tmp_path / "map.tif"), "--dtype", "float16"])  # fmt: skip
    assert code == 2 and "a class map is uint8" in capsys.readouterr().err
    assert not (tmp_path / "map.tif").exists()


def test_an_unknown_compression_is_refused_before_any_tile(capsys, tmp_path: Path) -> None:
    """GDAL ignores a compression name it does not know and writes the file uncompressed: refused, one line."""
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    chip = shared_path(*CHIP)
    output = tmp_path / "emb.tif"
    code = main(["embed", "--checkpoint", str(weights), "--s1", str(chip), "--s1-dates", "2019-09-18", "--source",
                 "s1", "--output", str(output), "--compress", "bogus", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--compress bogus: not a lossless GeoTIFF compression; give auto, deflate, zstd" in err
    assert not output.exists() and list(tmp_path.iterdir()) == [tmp_path / "tiny.safetensors"]


def test_overviews_for_class_maps_not_for_embeddings(tmp_path: Path) -> None:
    """With 4 × 4 blocks on the chip (of 64 px on the 256² crop, 32 px on the excerpt's 128²), the class map is a
    COG with overviews; the 128-band embedding is a COG without (its overviews cost as much as the model did on a
    1933² scene, docs/benchmarks.md), interleaved by band: its directory comes first, then every tile in order, band
    after band, row after row."""
    from skysense.inference import SceneSources, SeriesSource, load_scene_model, predict_scene

    chip = _chip(tmp_path)
    with rasterio.open(chip) as src:
        block = src.width // 4
    sources = SceneSources(s1=SeriesSource.from_arg(chip, "s1_grd", ["2019-09-18"]))
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    checkpoint = segmentation_checkpoint(tmp_path / "flood.ckpt", modalities=("s1",), num_classes=2)
    for model, name in ((load_scene_model(weights, "embedding", sentinel_reference=True), "emb.tif"),
                        (load_scene_model(checkpoint), "map.tif")):  # fmt: skip
        report = predict_scene(model, sources, tmp_path / name, block=block, progress=False)
        with rasterio.open(report.output) as dataset:
            assert bool(dataset.overviews(1)) == (name == "map.tif"), (name, dataset.count, dataset.overviews(1))
            if name == "map.tif":  # GDAL's COG driver: its layout marker
                assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                continue
            assert dataset.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"] == "BAND"
            assert dataset.block_shapes[0] == (block, block) and dataset.count == 128
            blocks = [(band, row, col) for band in range(1, 129) for row in range(4) for col in range(4)]
            offsets = [int(dataset.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=b)) for b, r, c in blocks]
            assert int(dataset.get_tag_item("IFD_OFFSET", "TIFF", bidx=1)) < offsets[0]
            assert offsets == sorted(offsets)
