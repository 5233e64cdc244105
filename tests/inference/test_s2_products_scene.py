"""`skysense embed --s2` on Sentinel-2 products as downloaded (issue 14): a .SAFE folder, its .SAFE.zip and its
IMG_DATA folder give the same embeddings on the product's 10 m grid, with nodata under the product's cloud mask."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from skysense.cli import main
from skysense.inference.sources import SceneSources, SeriesSource, TileReader
from skysense.models.registry import create_model
from skysense.models.weights import save_pretrained
from tests.data.s2_safe import clear_pixels, cloud_pixels, side, two_tiles, write_eopf_zarr, write_safe, zip_safe

SIDE = 240  # the chip's crop: three runs of the model over the scene per test, a quarter of the 480² crop's time


@pytest.mark.slow
def test_embed_reads_safe_folder_zip_and_img_data_alike(capsys, tmp_path: Path) -> None:
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    safe = write_safe(tmp_path / "products", at_most=SIDE)
    img_data = tmp_path / "IMG_DATA"
    shutil.copytree(next(safe.rglob("IMG_DATA")), img_data)
    shutil.copytree(next(safe.rglob("QI_DATA")), tmp_path / "QI_DATA")  # the mask stays beside IMG_DATA
    outputs = {}
    for name, given in (("folder", safe), ("img_data", img_data), ("zip", None)):
        if given is None:
            given = zip_safe(safe)
        output = tmp_path / f"{name}.tif"
        code = main(["embed", "--checkpoint", str(weights), "--s2", str(given), "--source", "s2", "--output",
                     str(output), "--no-progress", "--tile", "128", "--overlap", "32"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        with rasterio.open(output) as dataset:
            outputs[name] = dataset.read()
            assert dataset.crs.to_epsg() == 4326 and dataset.shape == (side(SIDE), side(SIDE))
        if name == "img_data":  # no metadata above this copy: the assumption is said in one line
            assert "warning: " in err and "assumed quantification 10000 and offset -1000" in err
    assert np.array_equal(outputs["folder"], outputs["zip"], equal_nan=True)
    assert np.array_equal(outputs["folder"], outputs["img_data"], equal_nan=True)
    cloudy = np.isnan(outputs["folder"]).all(axis=0)
    (rows, cols), (clear_rows, clear_cols) = cloud_pixels(SIDE), clear_pixels(SIDE)
    assert cloudy[rows, cols].all() and not cloudy[clear_rows, clear_cols].any()


@pytest.mark.slow
def test_embed_reads_an_eopf_zarr_product_like_the_safe_product(capsys, tmp_path: Path) -> None:
    """`skysense embed --s2 product.zarr` (and its .zarr.zip) writes the embeddings of the same pixels as a SAFE
    product: the same values, nodata under the clouds."""
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    given = {
        "safe": write_safe(tmp_path / "safe", level="L2A", at_most=SIDE),
        "zarr": write_eopf_zarr(tmp_path / "zarr", level="L2A", at_most=SIDE),
        "zip": write_eopf_zarr(tmp_path / "zip", level="L2A", at_most=SIDE, zipped=True),
    }
    outputs = {}
    for name, path in given.items():
        output = tmp_path / f"{name}.tif"
        code = main(["embed", "--checkpoint", str(weights), "--s2", str(path), "--source", "s2", "--output",
                     str(output), "--no-progress", "--tile", "128", "--overlap", "32"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        with rasterio.open(output) as dataset:
            outputs[name] = dataset.read()
    assert np.array_equal(outputs["zarr"], outputs["safe"], equal_nan=True)
    assert np.array_equal(outputs["zip"], outputs["safe"], equal_nan=True)
    rows, cols = cloud_pixels(SIDE)
    assert np.isnan(outputs["zarr"][:, rows, cols]).all() and not np.isnan(outputs["zarr"][:, -8:, -8:]).any()


@pytest.mark.slow
def test_embed_mosaics_the_tiles_of_a_date(capsys, tmp_path: Path) -> None:
    """A folder of two overlapping MGRS tiles of one date (the crop's left and right 150 columns of 240:
    :func:`~tests.data.s2_safe.two_tiles`) embeds as the whole crop's product does: one scene on the union of the
    tiles, no seam."""
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    whole = write_safe(tmp_path / "whole", level="L2A", cloud=False, at_most=SIDE)
    tiles = tmp_path / "tiles"
    left, right = two_tiles(SIDE)
    write_safe(tiles, level="L2A", cloud=False, tile="T30SYH", columns=left, at_most=SIDE)
    write_safe(tiles, level="L2A", cloud=False, tile="T30SYJ", columns=right, at_most=SIDE)
    outputs = {}
    for name, given in (("whole", whole), ("tiles", tiles)):
        output = tmp_path / f"{name}.tif"
        code = main(["embed", "--checkpoint", str(weights), "--s2", str(given), "--source", "s2", "--output",
                     str(output), "--no-progress"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        with rasterio.open(output) as dataset:
            outputs[name] = dataset.read()
            assert dataset.shape == (side(SIDE), side(SIDE))
    assert not np.isnan(outputs["tiles"]).any()
    assert np.allclose(outputs["tiles"], outputs["whole"], atol=1e-4)


def test_a_series_file_without_the_sensors_bands_is_refused_before_any_work(capsys, tmp_path: Path) -> None:
    """One date of an S2 series is a 4-band stack among 13-band L1C files: refused naming it, before a tile is
    computed (no output, no scratch folder), not at the first tile that reads it."""
    from tests.conftest import shared_path
    from tests.data.s2_safe import CHIP

    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    series = tmp_path / "s2"
    series.mkdir()
    with rasterio.open(shared_path(*CHIP)) as src:
        profile, values = src.profile, src.read()
    for day, count in (("20190901", 13), ("20190911", 4), ("20190921", 13)):
        with rasterio.open(series / f"Spain_{day}.tif", "w", **{**profile, "count": count}) as dst:
            dst.write(values[:count])
    output = tmp_path / "emb.tif"
    code = main(["embed", "--checkpoint", str(weights), "--s2", str(series), "--source", "s2", "--output",
                 str(output), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Spain_20190911.tif" in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists() and not list(tmp_path.glob("emb.tif*"))
    sources = SceneSources(s2=SeriesSource.from_arg(series, "s2_l1c"))
    with pytest.raises(ValueError, match="Spain_20190911.tif has 4"):
        TileReader(sources, ["s2"])  # opening the scene's reader, before any tile


def test_fused_embedding_of_s2_and_an_s1_that_covers_part_of_the_scene(capsys, tmp_path: Path) -> None:
    """The real Spain S2 chip as an L1C SAFE (a cloud over its corner) and the co-registered real S1 chip cut to its
    left 128 columns, embedded together (fused, no HR image). Before: the run failed at the first batch of tiles without S1
    ("every s1 frame of the batch is marked invalid"), and the cloud was nodata although S1 sees through it. Now the
    tiles without S1 run on S2 alone (said in one warning line), and a pixel counts where either series sees it."""
    from rasterio.windows import Window

    from tests.data.test_readers import spain

    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    safe = write_safe(tmp_path / "products", at_most=SIDE, time="20190918T105619")
    folder = tmp_path / "s1"
    folder.mkdir()
    with rasterio.open(spain("S1")) as src:
        window = Window(0, 0, src.width // 4, src.height)  # 128 columns: the left of the 240² scene
        profile = src.profile
        profile.update(width=window.width, transform=src.window_transform(window))
        with rasterio.open(folder / "S1_20190917.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    output = tmp_path / "fused.tif"
    code = main(["embed", "--checkpoint", str(weights), "--s2", str(safe), "--s1", str(folder), "--output",
                 str(output), "--no-progress", "--tile", "128", "--overlap", "32"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("s1: no kept frame over some tiles") == 1
    with rasterio.open(output) as dataset:
        values = dataset.read(1)
    rows, cols = cloud_pixels(SIDE)
    assert not np.isnan(values[rows, cols]).any()  # under the S2 cloud, S1 sees: valid
    assert not np.isnan(values[:, -16:]).any()  # where only S2 is (no S1 there): valid


def test_an_s1_series_of_another_place_is_refused(capsys, tmp_path: Path) -> None:
    """The real S1 chip moved half a degree east of the real S2 SAFE's place: refused before any work (exit 1),
    naming --s1 and the files; it only warned, and the whole scene ran without S1."""
    from rasterio.transform import Affine

    from tests.data.test_readers import spain

    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    safe = write_safe(tmp_path / "products", at_most=SIDE, time="20190918T105619")
    far = tmp_path / "s1" / "S1_20190917.tif"
    far.parent.mkdir()
    with rasterio.open(spain("S1")) as src:
        profile = src.profile
        profile.update(transform=Affine.translation(0.5, 0) * src.transform)
        with rasterio.open(far, "w", **profile) as dst:
            dst.write(src.read())
    output = tmp_path / "fused.tif"
    code = main(["embed", "--checkpoint", str(weights), "--s2", str(safe), "--s1", str(far.parent), "--output",
                 str(output), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and f"the --s1 files ({far}) do not overlap the scene" in err and not output.exists()
