"""A stacked Sentinel-2 file's own cloud-mask band (Google Earth Engine's ``COPERNICUS/S2_SR`` exports carry
``SCL`` and ``QA60`` beside the reflectances; HLS stacks carry ``Fmask``) masks its pixels like a product's SCL, in
training (:func:`read_time_series`) and in scene inference (:class:`TileReader`) alike. Built from the real
Sen1Floods11 S2 chip, written in the band layout of an Earth Engine export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch

from skysense.data.sensors import S2_L2A
from skysense.data.series import read_time_series
from skysense.inference.sources import SceneSources, SeriesSource, TileReader
from tests.data.test_readers import spain

L1C = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
# the band list of an Earth Engine COPERNICUS/S2_SR_HARMONIZED export (no B10 in L2A)
EXPORT = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12", "AOT", "WVP", "SCL",
          "TCI_R", "TCI_G", "TCI_B", "MSK_CLDPRB", "MSK_SNWPRB", "QA10", "QA20", "QA60")  # fmt: skip


def _export(tmp_path: Path, name: str, scl: np.ndarray | None, qa60: np.ndarray | None) -> tuple[Path, np.ndarray]:
    """The real chip as an Earth Engine export (uint16, 23 named bands; SCL and QA60 as given, else clear) →
    (path, the chip's values in the model's 10 bands)."""
    with rasterio.open(spain("S2")) as src:
        profile, chip = src.profile, src.read().astype(np.float32)
    bands = np.zeros((len(EXPORT), *chip.shape[1:]), dtype=np.uint16)
    for index, band in enumerate(EXPORT):
        if band in L1C:
            bands[index] = np.clip(chip[L1C.index(band)], 1, None)  # DN 0 is nodata in a product: keep it out
    bands[EXPORT.index("SCL")] = 4 if scl is None else scl  # 4: vegetation
    bands[EXPORT.index("QA60")] = 0 if qa60 is None else qa60
    profile.update(count=len(EXPORT), dtype="uint16", nodata=None)
    path = tmp_path / name
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        dst.descriptions = EXPORT
    model = np.stack([bands[EXPORT.index(b)] for b in S2_L2A.bands]).astype(np.float32)
    return path, model


def test_scl_band_masks_clouds_shadows_and_no_data(tmp_path: Path) -> None:
    with rasterio.open(spain("S2")) as src:
        height, width = src.height, src.width
    scl = np.full((height, width), 4, dtype=np.uint16)
    scl[: height // 2, : width // 2] = 9  # cloud, high probability
    scl[-4:, :] = 3  # cloud shadow
    scl[height // 2, -1] = 0  # no data
    scl[height // 2, 0] = 6  # water: clear
    path, model = _export(tmp_path, "20190603_s2sr.tif", scl, None)
    series = read_time_series([path], sensor=S2_L2A)
    expected = ~np.isin(scl, (0, 3, 9))
    assert np.array_equal(series.valid[0].numpy(), expected)
    values = series.values[0].numpy()
    assert np.isnan(values[:, ~expected]).all()
    assert np.array_equal(values[:, expected], model[:, expected])  # the reflectances themselves untouched


def test_qa60_bits_mask_opaque_clouds_and_cirrus(tmp_path: Path) -> None:
    with rasterio.open(spain("S2")) as src:
        height, width = src.height, src.width
    qa60 = np.zeros((height, width), dtype=np.uint16)
    qa60[:, : width // 4] = 1 << 10  # opaque clouds
    qa60[:2, -3:] = 1 << 11  # cirrus
    path, _ = _export(tmp_path, "20190603_s2sr.tif", None, qa60)  # SCL clear everywhere (4): QA60 is not read
    assert read_time_series([path], sensor=S2_L2A).valid.all()
    with rasterio.open(path, "r+") as dst:  # without an SCL band, QA60 is the mask
        dst.set_band_description(EXPORT.index("SCL") + 1, "scene")
    assert np.array_equal(read_time_series([path], sensor=S2_L2A).valid[0].numpy(), qa60 == 0)


def test_a_mostly_cloudy_frame_does_not_count_in_scene_inference(tmp_path: Path) -> None:
    with rasterio.open(spain("S2")) as src:
        height, width = src.height, src.width
    clear, _ = _export(tmp_path, "20190603_s2sr.tif", None, None)
    scl = np.full((height, width), 8, dtype=np.uint16)  # cloud, medium probability
    scl[: height // 4] = 4  # a quarter clear
    cloudy, _ = _export(tmp_path, "20190613_s2sr.tif", scl, None)
    sources = SceneSources(s2=SeriesSource.from_arg([clear, cloudy], "s2_l2a"), min_valid_fraction=0.5)
    reader = TileReader(sources, ["s2"])
    try:
        fields, pixel_valid = reader.read(0, 0, min(height, width) // 4 * 4)
    finally:
        reader.close()
    assert fields["s2_valid"].tolist() == [True, False]  # 25 % valid < 50 %: the cloudy date is left out
    assert pixel_valid.all()  # the clear date covers every pixel
    assert torch.isfinite(fields["s2"]).all()


def test_statistics_of_an_export_leave_its_clouds_out(tmp_path: Path) -> None:
    from skysense.data.manifest import index_directory
    from skysense.data.stats import compute_stats

    with rasterio.open(spain("S2")) as src:
        height, width = src.height, src.width
    scl = np.full((height, width), 4, dtype=np.uint16)
    scl[: height // 2] = 10  # cirrus over the top half
    path, model = _export(tmp_path, "20190603_s2sr.tif", scl, None)
    entries = index_directory(tmp_path)
    assert [e.modality for e in entries] == ["s2"]
    blue = next(b for b in compute_stats(entries, "s2")["bands"] if b["band"] == "B2")
    clear = model[S2_L2A.bands.index("B2"), height // 2 :]
    assert blue["count"] == clear.size and blue["valid_fraction"] == clear.size / (height * width)
    assert abs(blue["mean"] - clear.astype(np.float64).mean()) < 1e-6
