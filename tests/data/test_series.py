"""One rule for which frames of a Sentinel series count, in training and in scene inference (issue 14): a real S1
chip with exactly half its pixels masked counts at a threshold of 0.5 in both (before: kept by inference, dropped
by training); a frame without any valid pixel never counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from skysense.containers import Sample, TimeSeries
from skysense.data.collate import collate
from skysense.data.sensors import S1_GRD
from skysense.data.series import frames_that_count, read_time_series
from skysense.inference.sources import SceneSources, SeriesSource, TileReader
from tests.data.test_readers import spain


def _half_masked(tmp_path: Path) -> Path:
    with rasterio.open(spain("S1")) as src:
        profile, values = src.profile, src.read()
    values[:, :, : src.width // 2] = np.nan  # the left half: exactly 50 % of the frame
    path = tmp_path / "s1_20190918.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
        dst.descriptions = ("VV", "VH")
    return path


def test_a_frame_at_the_threshold_counts_in_training_and_inference(tmp_path: Path) -> None:
    path = _half_masked(tmp_path)
    read = read_time_series([path], sensor=S1_GRD)
    series = TimeSeries(torch.nan_to_num(read.values), read.dates, read.valid)  # filled, as FillInvalid does
    assert series.valid.float().mean().item() == pytest.approx(0.5, abs=0.01)
    fraction = series.valid.float().mean().item()
    batch = collate([Sample(s1=series, meta={"source": "chip"})], min_valid_fraction=fraction)
    assert batch.inputs.s1_valid.tolist() == [[True]]
    reader = TileReader(SceneSources(s1=SeriesSource.from_arg(path, "s1_grd"), min_valid_fraction=fraction), ["s1"])
    side = read.values.shape[-1]  # 512 (the excerpt: 128)
    fields, pixel_valid = reader.read(0, 0, side)
    reader.close()
    assert fields["s1_valid"].tolist() == [True] and pixel_valid[:, side // 2 :].mean() > 0.99
    assert collate(
        [Sample(s1=series, meta={"source": "chip"})], min_valid_fraction=min(1.0, fraction + 0.01)
    ).inputs.s1_valid.tolist() == [[False]]


def test_a_frame_without_valid_pixels_never_counts() -> None:
    valid = torch.zeros(2, 8, 8, dtype=torch.bool)
    valid[1, :2] = True  # 25 %
    assert frames_that_count(valid, 0.0).tolist() == [False, True]
    assert frames_that_count(valid, 0.25).tolist() == [False, True]
    assert frames_that_count(valid, 0.5, inside=32).tolist() == [False, True]  # half of the 32 pixels inside
    with pytest.raises(ValueError, match="min_valid_fraction"):
        frames_that_count(valid, 1.5)
