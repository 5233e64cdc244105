"""`--hr-range`: HR imagery that is not 8-bit (11-bit DN as WorldView and Pléiades deliver it) stretched onto 0–255,
on the real Landsat RGB crop: the stretched 11-bit copy embeds as the 8-bit original does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from skysense.cli import main
from skysense.models.registry import create_model
from skysense.models.weights import save_pretrained
from tests.conftest import shared_path


def test_an_11_bit_image_is_refused_without_hr_range_and_embeds_as_8_bit_with_it(tmp_path: Path, capsys) -> None:
    window = Window(250, 250, 256, 256)  # inside the scene (its borders are nodata)
    with rasterio.open(shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif")) as src:
        values, profile = src.read(window=window), src.profile
        profile.update(width=256, height=256, transform=src.window_transform(window))
    byte, wide = tmp_path / "byte.tif", tmp_path / "dn11.tif"
    with rasterio.open(byte, "w", **profile) as dst:
        dst.write(values)
    with rasterio.open(wide, "w", **{**profile, "dtype": "uint16"}) as dst:
        dst.write(values.astype(np.uint16) * 8)  # 0 … 2040: 11-bit DN
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")

    def embed(hr: Path, output: str, *extra: str) -> int:
        return main(["embed", "--checkpoint", str(weights), "--hr", str(hr), "--source", "hr", "--output",
                     str(tmp_path / output), "--no-progress", *extra])  # fmt: skip

    assert embed(wide, "refused.tif") == 1
    err = capsys.readouterr().err
    assert "dn11.tif (bands [1, 2, 3]): hr values span [" in err and "--hr-range LOW,HIGH" in err
    assert not (tmp_path / "refused.tif").exists()
    assert embed(byte, "from_byte.tif") == 0 and embed(wide, "wide.tif", "--hr-range", "0,2040") == 0
    with rasterio.open(tmp_path / "from_byte.tif") as a, rasterio.open(tmp_path / "wide.tif") as b:
        assert np.array_equal(a.read(), b.read(), equal_nan=True)  # v·8·255/2040 = v: the same input, bit for bit
        assert b.tags()["SKYSENSE_HR_RANGE"] == "0,2040" and "SKYSENSE_HR_RANGE" not in a.tags()
    assert embed(wide, "auto.tif", "--hr-range", "auto") == 0
    with rasterio.open(tmp_path / "auto.tif") as dataset:
        low, high = dataset.tags()["SKYSENSE_HR_RANGE"].split(";")
        assert len(low.split(",")) == len(high.split(",")) == 3  # each band's 2nd and 98th percentiles
        automatic = dataset.read()
    # reader threads take the stretch the first reader resolved: the same map
    assert embed(wide, "auto_threads.tif", "--hr-range", "auto", "--workers", "2") == 0
    with rasterio.open(tmp_path / "auto_threads.tif") as dataset:
        assert np.array_equal(dataset.read(), automatic, equal_nan=True)
    capsys.readouterr()
    for bad in ("5,1", "x", "1,2,3"):
        assert embed(wide, "bad.tif", "--hr-range", bad) == 2
        assert "--hr-range" in capsys.readouterr().err
