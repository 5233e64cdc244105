"""Band identity from band names (issue 14): B-codes zero-padded or not, STAC common names, polarisations. A
shuffled, named stack reads like the ordered one; names that miss a band are refused naming it; only a file without
any band name is read by position, with a warning. Real pixels: the Sen1Floods11 13-band S2 and VV/VH S1 chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from skysense.data.sensors import S1_GRD, S2_COMMON_NAMES, S2_L1C, S2_L2A
from skysense.data.series import read_time_series
from skysense.errors import InputError
from tests.data.test_readers import spain

COMMON = {code: name for name, code in S2_COMMON_NAMES.items() if name not in ("swir1", "swir2")}


def _stack(source: Path, target: Path, order: list[int], names: list[str | None]) -> Path:
    """The real chip's bands ``order`` (0-based) written to ``target`` with band descriptions ``names``."""
    with rasterio.open(source) as src:
        values, profile = src.read(), src.profile
    profile.update(count=len(order))
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(values[order])
        for index, name in enumerate(names, start=1):
            if name is not None:
                dst.set_band_description(index, name)
    return target


@pytest.mark.parametrize("style", ["B-codes", "zero-padded", "STAC common names"])
def test_a_shuffled_named_stack_reads_like_the_ordered_one(tmp_path: Path, style: str) -> None:
    source = spain("S2")
    ordered = read_time_series([source], sensor=S2_L1C, dates=["2019-09-18"])
    order = list(np.random.default_rng(0).permutation(13))
    names = [S2_L1C.bands[i] for i in order]
    if style == "zero-padded":
        names = [n if n == "B8A" else f"B{int(n[1:]):02d}" for n in names]
    elif style == "STAC common names":
        names = [COMMON[n] for n in names]
    shuffled = _stack(source, tmp_path / f"s2_{style[:4]}_20190918.tif", order, names)
    for sensor in (S2_L1C, S2_L2A):  # L2A: 10 of the 13 bands, picked by name
        got = read_time_series([shuffled], sensor=sensor)
        want = ordered if sensor is S2_L1C else read_time_series([source], sensor=sensor, dates=["2019-09-18"])
        assert np.array_equal(got.values.numpy(), want.values.numpy(), equal_nan=True)


def test_names_that_miss_a_band_or_name_one_twice_are_refused(tmp_path: Path) -> None:
    source = spain("S2")
    names = list(S2_L1C.bands)
    without_b9 = _stack(source, tmp_path / "a_20190918.tif", [i for i in range(13) if i != 9],
                        [n for n in names if n != "B9"])  # fmt: skip
    with pytest.raises(InputError, match=r"a_20190918\.tif: its band names .* do not include B9 of the 13"):
        read_time_series([without_b9], sensor=S2_L1C)
    assert read_time_series([without_b9], sensor=S2_L2A).values.shape[1] == 10  # L2A needs no B9
    twice = _stack(source, tmp_path / "b_20190918.tif", list(range(13)), [*names[:8], "B8", *names[9:]])
    with pytest.raises(InputError, match=r"bands \[8, 9\] are all named B8"):
        read_time_series([twice], sensor=S2_L1C)


def test_only_a_file_without_names_is_read_by_position_with_a_warning(tmp_path: Path) -> None:
    unnamed = _stack(spain("S1"), tmp_path / "s1_20190918.tif", [0, 1], [None, None])
    with pytest.warns(UserWarning, match=r"s1_20190918\.tif: its bands have no names; read by position as VV, VH"):
        series = read_time_series([unnamed], sensor=S1_GRD)
    swapped = _stack(spain("S1"), tmp_path / "s1_20190919.tif", [1, 0], ["VH", "VV"])
    again = read_time_series([swapped], sensor=S1_GRD)
    assert np.array_equal(series.values.numpy(), again.values.numpy(), equal_nan=True)


def test_a_series_folder_takes_every_raster_suffix_and_reports_the_rest(tmp_path: Path) -> None:
    """`.tif`, `.TIF`, `.tiff` and `.vrt` files of one folder are all dates of the series (before: only `*.tif`,
    the others skipped without a word); a text file is named as skipped; GDAL's sidecars are not."""
    import shutil

    from skysense.data.series import _series_files

    source = spain("S1")
    folder = tmp_path / "s1"
    folder.mkdir()
    for name in ("a_20190901.tif", "b_20190902.TIF", "c_20190903.tiff"):
        shutil.copy(source, folder / name)
    with rasterio.open(source) as src:
        width, height = src.width, src.height  # 512² (the excerpt: 128²)
    (folder / "d_20190904.vrt").write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><VRTRasterBand dataType="Float32" band="1">'
        f"<SimpleSource><SourceFilename>{source}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>"
        "</VRTRasterBand></VRTDataset>"
    )
    (folder / "notes.txt").write_text("field notes")
    (folder / "a_20190901.tif.aux.xml").write_text("<PAMDataset/>")
    with pytest.warns(UserWarning, match=r"skipped 1 files that are not rasters: notes\.txt$"):
        found = _series_files(folder)
    assert [p.name for p in found] == ["a_20190901.tif", "b_20190902.TIF", "c_20190903.tiff", "d_20190904.vrt"]
