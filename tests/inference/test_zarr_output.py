"""Scene outputs as Zarr data cubes (``--output x.zarr``) on real images: read back with ``xarray.open_zarr`` and
rioxarray, georeferenced and equal to the GeoTIFF output; resumable like it; bad outputs refused with one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from skysense.errors import UsageError
from skysense.inference import SceneSources, load_scene_model, predict_scene
from skysense.inference.writer import scratch_path
from skysense.models.registry import create_model
from skysense.models.weights import save_pretrained
from tests.conftest import save_segmentation_checkpoint, shared_path

xr = pytest.importorskip("xarray")
pytest.importorskip("rioxarray")
RASTERIO = ("rasterio_testdata", "tests", "data")


@pytest.fixture(scope="module")
def seg_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HR segmentation task (3 named classes) saved as a Lightning checkpoint."""
    return save_segmentation_checkpoint(tmp_path_factory.mktemp("ckpt") / "seg.ckpt", ["water", "bare soil", "trees"])


def test_embedding_cube_equals_the_geotiff_and_is_georeferenced(tmp_path: Path) -> None:
    """Landsat RGB.byte.tif (EPSG:32618, a nodata collar) embedded by the CLI into a .tif and a .zarr: same values
    and NaNs, same CRS and transform through rioxarray, chunked by block; float16 halves it; a rerun replaces the
    store."""
    from skysense.cli import main

    scene = shared_path(*RASTERIO, "RGB.byte.tif")
    weights = save_pretrained(create_model("tiny"), tmp_path / "w.safetensors")
    common = ["--checkpoint", str(weights), "--hr", str(scene), "--tile", "256", "--overlap", "64", "--no-progress"]
    assert main(["embed", *common, "--output", str(tmp_path / "emb.tif")]) == 0
    cube = tmp_path / "emb.zarr"
    assert main(["embed", *common, "--output", str(cube)]) == 0
    assert not scratch_path(cube).exists()

    dataset = xr.open_zarr(cube)
    embedding = dataset["embedding"]
    with rasterio.open(tmp_path / "emb.tif") as tif:
        expected, crs, transform = tif.read(), tif.crs, tif.transform
    assert embedding.dims == ("band", "y", "x") and embedding.shape == expected.shape
    # 16 float32 bands of a 512² block per chunk (16 MiB), cut to the array
    assert embedding.dtype == np.float32 and embedding.encoding["chunks"] == (16, *expected.shape[1:])
    assert embedding.rio.crs == crs and embedding.rio.transform() == transform
    assert list(embedding["band"].values) == list(range(1, expected.shape[0] + 1))
    assert dataset.attrs["SKYSENSE_INPUTS"] == "hr" and embedding.attrs["SKYSENSE_INPUTS"] == "hr"
    values = embedding.values
    assert np.isnan(values).any() and np.array_equal(values, expected, equal_nan=True)
    # coordinates are the pixel centres of the GeoTIFF's grid
    assert np.allclose(embedding["x"].values, [(transform * (col + 0.5, 0.5))[0] for col in range(expected.shape[2])])

    assert main(["embed", *common, "--output", str(cube), "--dtype", "float16"]) == 0  # replaces the store
    half = xr.open_zarr(cube)["embedding"]
    assert half.dtype == np.float16 and half.rio.crs == crs
    assert np.allclose(half.values.astype(np.float32), expected, rtol=2e-3, atol=1e-3, equal_nan=True)


def test_class_map_and_probabilities_cubes(seg_checkpoint: Path, tmp_path: Path) -> None:
    """A class map is a 2-D uint8 variable with nodata 255 and CF flags naming the classes; probabilities take the
    class names as band coordinates. Both equal the GeoTIFF outputs."""
    scene = shared_path(*RASTERIO, "RGB.byte.tif")
    model = load_scene_model(seg_checkpoint)
    options = dict(tile=256, overlap=64, progress=False)
    predict_scene(model, SceneSources(hr=scene), tmp_path / "map.tif", **options)
    predict_scene(model, SceneSources(hr=scene), tmp_path / "map.zarr", **options)
    classes = xr.open_zarr(tmp_path / "map.zarr", mask_and_scale=False)["classes"]
    with rasterio.open(tmp_path / "map.tif") as tif:
        expected = tif.read(1)
        assert classes.rio.crs == tif.crs and classes.rio.transform() == tif.transform
    assert classes.dims == ("y", "x") and classes.dtype == np.uint8
    assert classes.attrs["flag_meanings"] == "water bare_soil trees" and classes.attrs["flag_values"] == [0, 1, 2]
    assert classes.rio.nodata == 255 and (expected == 255).any()
    assert np.array_equal(classes.values, expected)
    masked = xr.open_zarr(tmp_path / "map.zarr")["classes"].values  # xarray's default decoding: nodata → NaN
    assert np.array_equal(np.isnan(masked), expected == 255)

    predict_scene(model, SceneSources(hr=scene), tmp_path / "p.zarr", output_kind="probabilities", **options)
    probabilities = xr.open_zarr(tmp_path / "p.zarr")["probabilities"]
    assert list(probabilities["band"].values) == ["water", "bare soil", "trees"]
    total = probabilities.sum("band", skipna=False).values
    assert np.allclose(total[np.isfinite(total)], 1.0, atol=1e-4)


def test_interrupted_cube_resumes_to_the_uninterrupted_one(seg_checkpoint: Path, tmp_path: Path) -> None:
    """An interruption leaves no store; --resume continues from the finished chunk rows and publishes the
    uninterrupted store's values bit for bit."""
    scene = shared_path(*RASTERIO, "cogeo.tif")
    model = load_scene_model(seg_checkpoint)
    kwargs = dict(tile=256, overlap=64, chunk=256, block=256, output_kind="probabilities", progress=False)
    predict_scene(model, SceneSources(hr=scene), tmp_path / "reference.zarr", **kwargs)
    output = tmp_path / "map.zarr"
    seen: list[tuple[int, int]] = []

    def interrupt(row: int, col: int) -> None:
        if (row, col) == (1, 2):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_scene(model, SceneSources(hr=scene), output, on_chunk=interrupt, **kwargs)
    assert not output.exists() and scratch_path(output).exists()
    predict_scene(model, SceneSources(hr=scene), output, resume=True, on_chunk=lambda r, c: seen.append((r, c)),
                  **kwargs)  # fmt: skip
    assert seen[0] == (1, 0) and not scratch_path(output).exists()
    resumed = xr.open_zarr(output)["probabilities"].values
    assert np.array_equal(resumed, xr.open_zarr(tmp_path / "reference.zarr")["probabilities"].values, equal_nan=True)


def test_bad_zarr_outputs_are_refused_before_any_work(
    seg_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = shared_path(*RASTERIO, "RGB.byte.tif")
    model = load_scene_model(seg_checkpoint)
    folder = tmp_path / "notes.zarr"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"notes\.zarr: exists and is not a Zarr store"):
        predict_scene(model, SceneSources(hr=scene), folder, tile=256, overlap=64, progress=False)
    assert (folder / "keep.txt").read_text() == "mine"
    monkeypatch.setitem(sys.modules, "rioxarray", None)  # as if not installed
    with pytest.raises(UsageError, match=r"needs rioxarray.*pip install 'skysense\[zarr\]'"):
        predict_scene(model, SceneSources(hr=scene), tmp_path / "x.zarr", tile=256, overlap=64, progress=False)
    assert not (tmp_path / "x.zarr").exists() and not scratch_path(tmp_path / "x.zarr").exists()
