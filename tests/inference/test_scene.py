"""Scene-scale prediction on the real georeferenced rasters in ../shared/data: georeferencing, COG output, nodata,
no seams, chunk invariance, interruption, units errors, the CLI and the ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from skysense.inference import SceneSources, SeriesSource, load_scene_model, predict_scene
from skysense.inference.writer import CLASS_NODATA, scratch_path
from skysense.models.registry import create_model
from skysense.models.weights import save_pretrained
from tests.config_roots import root_overrides
from tests.conftest import cli_fit_test_predict, save_segmentation_checkpoint, shared_path

RASTERIO = ("rasterio_testdata", "tests", "data")


@pytest.fixture(scope="module")
def hr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HR segmentation task (3 classes) saved as a Lightning checkpoint."""
    return save_segmentation_checkpoint(tmp_path_factory.mktemp("ckpt") / "seg.ckpt", ["a", "b", "c"])


def _read(path: Path) -> tuple[np.ndarray, dict, dict]:
    with rasterio.open(path) as dataset:
        return dataset.read(), dataset.profile, dataset.tags(ns="IMAGE_STRUCTURE")


def test_class_map_georeferenced_cog_with_nodata(hr_checkpoint: Path, tmp_path: Path) -> None:
    """Landsat RGB.byte.tif (EPSG:32618, nodata 0): same CRS, transform and size; a COG with overviews and a colour
    table; nodata exactly where the input is."""
    scene = shared_path(*RASTERIO, "RGB.byte.tif")
    model = load_scene_model(hr_checkpoint)
    # blocks of 256: the excerpt (398 × 407) fits in one block of the default 512, which leaves no overview to make
    report = predict_scene(model, SceneSources(hr=scene), tmp_path / "map.tif", tile=256, overlap=64, chunk=512,
                           block=256, progress=False)  # fmt: skip
    with rasterio.open(scene) as src:  # tiles of 256 every 192 px: 4 × 4 on the 718 × 791 image, 2 × 2 on its excerpt
        tiles = (-(-(src.height - 256) // 192) + 1) * (-(-(src.width - 256) // 192) + 1)
    assert report.tiles == tiles and report.output.exists() and not scratch_path(report.output).exists()
    with rasterio.open(scene) as src, rasterio.open(report.output) as out:
        assert out.crs == src.crs and out.transform == src.transform and out.shape == src.shape
        assert out.dtypes == ("uint8",) and out.nodata == CLASS_NODATA and out.count == 1
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and out.overviews(1)
        assert out.colormap(1)[0][:3] == (228, 26, 28)
        assert out.tags()["SKYSENSE_CLASSES"] == "a,b,c"
        invalid = (src.read_masks() == 0).any(axis=0)  # a pixel is nodata when any band is
        classes = out.read(1)
    assert invalid.mean() > 0.2  # the scene's black collar
    assert np.array_equal(classes == CLASS_NODATA, invalid)
    assert set(np.unique(classes[~invalid])) <= {0, 1, 2}
    # each stage of the pipeline is timed, so that the slowest is visible (not a speed assertion: a consistency one)
    assert list(report.stages) == ["prepare", "read", "run", "blend", "write", "publish"]
    assert all(s >= 0 for s in report.stages.values()) and report.stages["run"] > 0 and report.stages["publish"] > 0
    assert sum(report.stages.values()) <= report.seconds * 1.001
    assert "run " in report.stages_line() and "%" in report.stages_line()


def test_no_seams_constant_input(hr_checkpoint: Path, tmp_path: Path) -> None:
    """A constant scene gives a constant embedding (exactly: the Swin V2 encoder has no border effects) and, away
    from the scene's border, an almost constant class probability (the head's zero padding is blended away)."""
    profile = dict(driver="GTiff", width=1000, height=900, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=from_origin(500000, 5000000, 0.5, 0.5), tiled=True, blockxsize=256, blockysize=256)  # fmt: skip
    constant = tmp_path / "constant.tif"
    with rasterio.open(constant, "w", **profile) as dataset:
        dataset.write(np.full((3, 900, 1000), 120, np.uint8))
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    embedder = load_scene_model(weights, "embedding", source="hr")
    report = predict_scene(embedder, SceneSources(hr=constant), tmp_path / "emb.tif", tile=256, overlap=64,
                           progress=False)  # fmt: skip
    embedding, profile_out, _ = _read(report.output)
    assert embedding.shape == (256, 29, 32) and profile_out["transform"].a == 16.0  # stride 32 × 0.5 m
    full = embedding[:, :28, :31]  # the last row/column hold < half a stride of scene: nodata
    assert np.isnan(embedding[:, 28]).all() and not np.isnan(full).any()
    assert np.abs(full - full[:, :1, :1]).max() < 1e-4

    model = load_scene_model(hr_checkpoint)
    spreads = []
    for overlap in (128, 256):  # the random head's zero padding reaches ~80 px into a tile
        report = predict_scene(model, SceneSources(hr=constant), tmp_path / "p.tif", tile=512, overlap=overlap,
                               output_kind="probabilities", progress=False)  # fmt: skip
        interior = _read(report.output)[0][:, 128:-128, 128:-128]  # the scene's own border has no neighbour tile
        spreads.append((interior.reshape(3, -1).max(axis=1) - interior.reshape(3, -1).min(axis=1)).max())
    assert spreads[1] < 0.03 and spreads[1] < spreads[0] / 4, spreads  # half-tile overlap blends them away


def test_chunking_does_not_change_the_output(hr_checkpoint: Path, tmp_path: Path) -> None:
    """Small chunks (strips carried on disk) read by 3 threads and one big chunk read by one write the same
    probabilities."""
    scene = shared_path(*RASTERIO, "cogeo.tif")
    model = load_scene_model(hr_checkpoint)
    kwargs = dict(tile=256, overlap=64, output_kind="probabilities", progress=False, block=256)
    small = predict_scene(model, SceneSources(hr=scene), tmp_path / "small.tif", chunk=256, workers=3, **kwargs)
    big = predict_scene(model, SceneSources(hr=scene), tmp_path / "big.tif", chunk=1024, **kwargs)
    a, b = _read(small.output)[0], _read(big.output)[0]
    assert a.shape == (3, 1024, 1024)
    assert np.allclose(a, b, atol=1e-5, equal_nan=True)


def test_interrupted_run_leaves_no_output_then_resumes_or_restarts(hr_checkpoint: Path, tmp_path: Path) -> None:
    """An interruption mid-scene leaves the output path untouched; --resume continues from the last finished chunk
    row and gives the uninterrupted output bit for bit; a plain rerun starts over."""
    scene = shared_path(*RASTERIO, "cogeo.tif")
    model = load_scene_model(hr_checkpoint)
    kwargs = dict(tile=256, overlap=64, chunk=256, block=256, output_kind="probabilities", progress=False)
    reference = predict_scene(model, SceneSources(hr=scene), tmp_path / "reference.tif", **kwargs).output
    output = tmp_path / "map.tif"
    seen: list[tuple[int, int]] = []

    def interrupt(row: int, col: int) -> None:
        seen.append((row, col))
        if (row, col) == (1, 2):  # row 0 is complete, row 1 half done
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_scene(model, SceneSources(hr=scene), output, on_chunk=interrupt, **kwargs)
    assert not output.exists() and scratch_path(output).exists()
    assert '"rows_done": 0' in (tmp_path / "map.tif.partial.d" / "state.json").read_text()
    seen.clear()
    predict_scene(model, SceneSources(hr=scene), output, resume=True, on_chunk=lambda r, c: seen.append((r, c)),
                  **kwargs)  # fmt: skip
    assert seen[0] == (1, 0) and len(seen) == 12  # rows 1-3 of the 4 × 4 chunks only
    assert output.exists() and not scratch_path(output).exists()
    assert np.array_equal(_read(output)[0], _read(reference)[0], equal_nan=True)  # bit for bit

    with pytest.raises(KeyboardInterrupt):
        predict_scene(model, SceneSources(hr=scene), tmp_path / "again.tif", on_chunk=interrupt, **kwargs)
    predict_scene(model, SceneSources(hr=scene), tmp_path / "again.tif", **kwargs)  # no resume: from the start
    assert np.allclose(_read(tmp_path / "again.tif")[0], _read(reference)[0], atol=1e-5, equal_nan=True)


def test_wrong_units_and_bad_tiles_are_refused(hr_checkpoint: Path, tmp_path: Path) -> None:
    model = load_scene_model(hr_checkpoint)
    uint16 = shared_path(*RASTERIO, "RGBA.uint16.tif")  # 16-bit aerial: not 0-255
    with pytest.raises(ValueError, match=r"RGBA\.uint16\.tif.*outside the range"):
        predict_scene(model, SceneSources(hr=uint16), tmp_path / "x.tif", tile=256, overlap=64, progress=False)
    scene = shared_path(*RASTERIO, "RGB.byte.tif")
    with pytest.raises(ValueError, match="multiple of 32"):
        predict_scene(model, SceneSources(hr=scene), tmp_path / "x.tif", tile=250, overlap=64, progress=False)
    with pytest.raises(ValueError, match="fine-tuned segmentation"):
        load_scene_model(save_pretrained(create_model("tiny"), tmp_path / "w.safetensors"), "classes")
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.slow
def test_cli_s1_flood_map_on_sen1floods11_chip(tmp_path: Path) -> None:
    """A Sentinel-1 segmentation checkpoint from `skysense fit` over a Sen1Floods11 chip in EPSG:4326 (no HR
    image: the S1 grid is the scene's); the all-NaN Paraguay chip gives an all-nodata map; embeddings too. The chips'
    top-left 256² (the excerpt's: their whole 128²): 3 × 3 tiles of 128 at overlap 32, a quarter of the 512² run."""
    from skysense.cli import main
    from tests.reliability.scene_fixtures import crop

    chips = shared_path("sen1floods11_samples", "sample_data", "S1")
    config = Path(__file__).resolve().parents[2] / "configs" / "segmentation" / "sen1floods11.yaml"
    *_, checkpoint = cli_fit_test_predict(config, tmp_path / "fit", root_overrides(config))
    assert torch.load(checkpoint, weights_only=True)["skysense_task"].endswith("SegmentationTask")
    with rasterio.open(chips / "Spain_6860600_S1Hand.tif") as src:
        side = min(src.width, 256)
    chip = crop(chips / "Spain_6860600_S1Hand.tif", tmp_path / "Spain_6860600_S1Hand.tif", side)
    output = tmp_path / "water.tif"
    assert main(["predict", "--checkpoint", str(checkpoint), "--s1", str(chip), "--s1-dates", "2019-09-18",
                 "--output", str(output), "--tile", "128", "--overlap", "32", "--no-progress"]) == 0  # fmt: skip
    with rasterio.open(chip) as src, rasterio.open(output) as out:
        assert out.crs == src.crs and out.crs.to_epsg() == 4326
        assert out.transform == src.transform and out.shape == src.shape
        classes, invalid = out.read(1), ~np.isfinite(src.read()).all(axis=0)
    assert np.array_equal(classes == CLASS_NODATA, invalid) and set(np.unique(classes)) <= {0, 1, CLASS_NODATA}

    empty = tmp_path / "paraguay.tif"
    model = load_scene_model(checkpoint, sentinel_reference=True)
    paraguay = crop(chips / "Paraguay_34417_S1Hand.tif", tmp_path / "Paraguay_34417_S1Hand.tif", side)
    sources = SceneSources(s1=SeriesSource.from_arg(paraguay, "s1_grd", ["2018-10-31"]))
    report = predict_scene(model, sources, empty, tile=128, overlap=32, progress=False)
    assert report.skipped == report.tiles and (_read(empty)[0] == CLASS_NODATA).all()

    embedding = tmp_path / "embedding.tif"
    assert main(["embed", "--checkpoint", str(checkpoint), "--s1", str(chip), "--s1-dates", "2019-09-18",
                 "--output", str(embedding), "--tile", "128", "--overlap", "32", "--no-progress"]) == 0  # fmt: skip
    values, profile, _ = _read(embedding)
    with rasterio.open(chip) as src:  # 256² (the excerpt: 128²)
        assert values.shape[1:] == src.shape and profile["crs"] == src.crs and profile["dtype"] == "float32"
    assert profile["crs"].to_epsg() == 4326


@pytest.mark.slow
def test_onnx_export_matches_pytorch(hr_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from skysense.inference.export import export_onnx

    scene = shared_path(*RASTERIO, "cogeo.tif")
    result = export_onnx(hr_checkpoint, tmp_path / "seg.onnx", scene, tile=128)
    assert result.max_abs_error < 1e-4 and result.path.stat().st_size > 0
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).normal(size=(2, 3, 128, 128)).astype(np.float32)  # a dynamic batch axis
    probabilities = session.run(None, {"hr": batch})[0]
    assert probabilities.shape == (2, 3, 128, 128) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


def profile_s1(left: float, bottom: float, right: float, top: float) -> dict:
    """A 64 × 64 two-band float32 GeoTIFF profile over the given EPSG:4326 bounds."""
    transform = rasterio.transform.from_bounds(left, bottom, right, top, 64, 64)
    return dict(driver="GTiff", width=64, height=64, count=2, dtype="float32", crs="EPSG:4326", transform=transform,
                nodata=float("nan"))  # fmt: skip


def test_embed_hr_with_sentinel_series_on_the_coregistered_grid(tmp_path: Path) -> None:
    """HR (the real aerial COG, EPSG:3857) + a 3-date S1 series (and then an S2 L1C date) in another CRS (EPSG:4326, real Sen1Floods11 dB
    values placed over the COG's footprint): the series is reprojected onto each tile's Sentinel grid and fused;
    one embedding per Sentinel pixel (32 HR pixels), georeferenced on the HR image's CRS; a cloudy (all-NaN) date
    is dropped per tile without changing the result."""
    from rasterio.warp import transform_bounds

    scene = shared_path(*RASTERIO, "cogeo.tif")
    chips = sorted(shared_path("sen1floods11_samples", "sample_data", "S1").glob("Ghana_*_S1Hand.tif"))
    with rasterio.open(scene) as src:
        left, bottom, right, top = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        hr_crs, hr_transform = src.crs, src.transform
    folder = tmp_path / "s1"
    folder.mkdir()
    for chip, date in zip(chips, ("20190104", "20190116", "20190128"), strict=False):
        with rasterio.open(chip) as src:
            values = src.read()[:, :64, :64]
        with rasterio.open(folder / f"S1_{date}.tif", "w", **profile_s1(left, bottom, right, top)) as dst:
            dst.write(values)
    weights = save_pretrained(create_model("tiny", s2=None, s2_head=None), tmp_path / "hr_s1.safetensors")
    model = load_scene_model(weights, "embedding")
    sources = SceneSources(hr=scene, s1=SeriesSource.from_arg(folder, "s1_grd"))
    report = predict_scene(model, sources, tmp_path / "emb.tif", tile=512, overlap=128, progress=False)
    values, profile, _ = _read(report.output)
    assert values.shape == (model.channels, 32, 32) and not np.isnan(values).any()
    assert profile["crs"] == hr_crs and profile["transform"] == hr_transform @ rasterio.Affine.scale(32)

    # + one Sentinel-2 L1C date (the real 13-band Sen1Floods11 chip, TOA × 1e4), converted to the model's 10 bands
    s2_chip = shared_path("sen1floods11_samples", "cloudtostreet_official_sample", "S2", "Spain_7370579_S2Hand.tif")
    with rasterio.open(s2_chip) as src:
        s2_values, descriptions = src.read()[:, :64, :64], src.descriptions
    s2_file = tmp_path / "S2_20190110.tif"
    with rasterio.open(s2_file, "w", **{**profile_s1(left, bottom, right, top), "count": 13, "dtype": "int16",
                                         "nodata": 0}) as dst:  # fmt: skip
        dst.write(s2_values)
        dst.descriptions = descriptions
    full = load_scene_model(save_pretrained(create_model("tiny"), tmp_path / "all.safetensors"), "embedding")
    sources = SceneSources(hr=scene, s2=SeriesSource.from_arg([s2_file], "s2_l1c"),
                           s1=SeriesSource.from_arg(folder, "s1_grd"))  # fmt: skip
    fused = _read(predict_scene(full, sources, tmp_path / "all.tif", tile=512, overlap=128, progress=False).output)[0]
    assert fused.shape == (full.channels, 32, 32) and not np.isnan(fused).any()

    cloudy = folder / "S1_20190110.tif"  # a fourth date with no valid pixel: masked out in every tile
    with rasterio.open(folder / "S1_20190104.tif") as src:
        profile = src.profile
    with rasterio.open(cloudy, "w", **profile) as dst:
        dst.write(np.full((2, 64, 64), np.nan, np.float32))
    sources = SceneSources(hr=scene, s1=SeriesSource.from_arg(folder, "s1_grd"))
    again = predict_scene(model, sources, tmp_path / "emb2.tif", tile=512, overlap=128, progress=False)
    assert np.allclose(_read(again.output)[0], values, atol=1e-5)


def test_hr_tiles_align_to_the_encoders_own_stride_not_a_fixed_32(tmp_path: Path) -> None:
    """The cpu preset's HR encoder has stride 16: an HR-only model takes 48-pixel tiles (not a multiple of 32), and
    its map lies on the same grid as with 64-pixel tiles (the windows' context differs, so the values only agree
    closely); with the fusion, tiles must also be multiples of hr_ratio."""
    from skysense.inference.models import hr_tile_multiple

    with rasterio.open(shared_path("rasterio_testdata", "tests", "data", "cogeo.tif")) as src:  # real 0.6 m aerial
        window = rasterio.windows.Window(300, 300, 160, 160)
        pixels, profile = src.read(window=window), src.profile
        profile.update(width=160, height=160, transform=src.window_transform(window), compress="deflate",
                       photometric="rgb", blockxsize=64, blockysize=64)  # fmt: skip
    scene = tmp_path / "aerial.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(pixels)
    torch.manual_seed(0)
    hr_only = create_model("cpu", s2=None, s1=None, fusion=None, geo=None)
    assert hr_tile_multiple(hr_only) == 16 and hr_tile_multiple(create_model("cpu")) == 32
    embedder = load_scene_model(save_pretrained(hr_only, tmp_path / "hr.safetensors"), "embedding", source="hr")
    outputs = []
    for tile, overlap in ((48, 16), (64, 32)):
        report = predict_scene(embedder, SceneSources(hr=scene), tmp_path / f"emb{tile}.tif", tile=tile,
                               overlap=overlap, progress=False)  # fmt: skip
        outputs.append(_read(report.output)[0])
    assert outputs[0].shape == (384, 10, 10) and not np.isnan(outputs[0]).any()
    a, b = (o - o.mean(axis=(1, 2), keepdims=True) for o in outputs)  # the spatial pattern of every channel
    agreement = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    shifted = np.corrcoef(a[:, :, 1:].ravel(), b[:, :, :-1].ravel())[0, 1]  # one output pixel off
    assert agreement > 0.8 and agreement > shifted + 0.1, (agreement, shifted)
    fused = load_scene_model(save_pretrained(create_model("cpu"), tmp_path / "all.safetensors"), "embedding")
    with pytest.raises(ValueError, match="32"):
        predict_scene(fused, SceneSources(hr=scene), tmp_path / "fused.tif", tile=48, overlap=16, progress=False)
