"""Acquisition dates from file names, GeoTIFF tags and sidecar tables; ambiguous or unparseable ones refused."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from skysense.data.dates import acquisition_date, date_from_name, load_sidecar, parse_date
from skysense.data.examples import SEN1FLOODS11_S1, SEN1FLOODS11_S2
from tests.conftest import shared_path

SEPT_17 = dt.date(2019, 9, 17)


@pytest.mark.parametrize(
    "name",
    [
        "S2A_MSIL2A_20190917T105031_N0213_R051_T30SYH_20190918T140000.tif",  # sensing date, not the processing one
        "S2B_MSIL1C_20190917T105031_N0208_R051_T30SYH_20190917T112233.SAFE",
        "T30SYH_20190917T105031_B02_10m.tif",
        "S1A_IW_GRDH_1SDV_20190917T175953_20190917T180018_029069_034C8C_D4C7.tif",
        "S1B_IW_SLC__1SDV_20190917T175953_20190917T180018_018172_0223A1_1C47.tif",
        "LC08_L2SP_199033_20190917_20190926_02_T1_SR_B4.TIF",
        "HLS.S30.T30SYH.2019260T105031.v2.0.B04.tif",  # year + day of year 260
        "spain_20190917.tif",
        "spain_2019-09-17_s2.tif",
        "2019_09_17_spain.tif",
        "/some/folder/20180101/spain_20190917.tif",  # folders are not read
    ],
)
def test_dates_in_common_file_names(name: str) -> None:
    assert date_from_name(name) == SEPT_17


def test_names_without_dates_and_ambiguous_names() -> None:
    assert date_from_name("Spain_7370579_S1Hand.tif") is None
    assert date_from_name("tile_12345678.tif") is None  # year 1234 is not a plausible acquisition
    assert date_from_name("tile_20191341.tif") is None  # month 13
    with pytest.raises(ValueError, match=r"pair_20190917_20191001.tif: ambiguous .*2019-09-17.*2019-10-01"):
        date_from_name("pair_20190917_20191001.tif")


def test_user_regex_with_date_group() -> None:
    regex = r"^(?P<place>[a-z]+)_(?P<date>\d{2}\.\d{2}\.\d{4})"
    assert date_from_name("spain_17.09.2019_b.tif", regex, "%d.%m.%Y") == SEPT_17
    # the regex disambiguates a name the built-in patterns refuse
    assert date_from_name("pair_20190917_20191001.tif", r"_(?P<date>\d{8})\.tif$") == dt.date(2019, 10, 1)
    with pytest.raises(ValueError, match="no named group 'date'"):
        date_from_name("spain_20190917.tif", r"(\d{8})")
    with pytest.raises(ValueError, match=r"spain_20191341.tif .*cannot parse date '20191341' with format '%Y%m%d'"):
        date_from_name("spain_20191341.tif", r"_(?P<date>\d{8})")


@pytest.mark.parametrize(
    "text",
    ["2019-09-17", "20190917", "2019:09:17 10:50:31", "2019-09-17T10:50:31.024Z", "2019-09-17T10:50:31+02:00"],
)
def test_parse_date_formats(text: str) -> None:
    assert parse_date(text) == SEPT_17


def _tiny_tif(path: Path, **tags: str) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=2,
        height=2,
        count=1,
        dtype="uint8",
        crs="EPSG:32630",
        transform=from_origin(500000, 4000000, 10, 10),
    ) as dst:
        dst.write(np.zeros((1, 2, 2), np.uint8))
        dst.update_tags(**tags)
    return path


def test_dates_from_tags(tmp_path: Path) -> None:
    assert acquisition_date(SEN1FLOODS11_S1) == SEPT_17  # the shipped real chip's ACQUISITION_DATE tag
    assert acquisition_date(SEN1FLOODS11_S2) == dt.date(2019, 9, 18)
    assert acquisition_date(_tiny_tif(tmp_path / "a.tif", SENSING_TIME="2019-09-17T10:50:31.024Z")) == SEPT_17
    assert acquisition_date(_tiny_tif(tmp_path / "b.tif", TIFFTAG_DATETIME="2019:09:17 10:50:31")) == SEPT_17
    assert acquisition_date(_tiny_tif(tmp_path / "c.tif", date_acquired="2019-09-17")) == SEPT_17  # any case
    with pytest.raises(ValueError, match=r"d.tif \(tag ACQUISITION_DATE\): cannot parse date 'last tuesday'"):
        acquisition_date(_tiny_tif(tmp_path / "d.tif", ACQUISITION_DATE="last tuesday"))


def test_sidecar_tables(tmp_path: Path) -> None:
    mapping = tmp_path / "dates.json"
    mapping.write_text(json.dumps({"a.tif": "2019-09-17", "b": "20191001"}))
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"file": "a.tif", "date": "2019-09-17"}]))
    table = tmp_path / "dates.csv"
    table.write_text("filename,acquisition_date\nsub/a.tif,2019-09-17\n")
    bare = tmp_path / "bare.csv"
    bare.write_text("a.tif,2019-09-17\n")
    for sidecar in (mapping, records, table, bare):
        assert acquisition_date(tmp_path / "sub" / "a.tif", sidecar=sidecar, use_tags=False) == SEPT_17
    assert load_sidecar(mapping)["b"] == dt.date(2019, 10, 1)
    assert acquisition_date(tmp_path / "b.tif", sidecar=mapping, use_tags=False) == dt.date(2019, 10, 1)  # stem
    assert acquisition_date("c.tif", sidecar={"c.tif": "2019-09-17"}, use_tags=False) == SEPT_17
    broken = tmp_path / "broken.csv"
    broken.write_text("file,date\na.tif,17/09/2019x\n")
    with pytest.raises(ValueError, match=r"broken.csv, row 2 \(a.tif\): cannot parse date '17/09/2019x'"):
        load_sidecar(broken)


def test_sources_in_order_and_what_was_tried(tmp_path: Path) -> None:
    tagged = _tiny_tif(tmp_path / "scene_20191001.tif", ACQUISITION_DATE="2019-09-17")
    assert acquisition_date(tagged) == dt.date(2019, 10, 1)  # the name wins over tags
    assert acquisition_date(tagged, use_name=False) == SEPT_17
    assert acquisition_date(tagged, sidecar={"scene_20191001.tif": "2019-01-01"}) == dt.date(2019, 1, 1)
    undated = _tiny_tif(tmp_path / "scene.tif")
    with pytest.raises(ValueError, match=r"scene.tif: no acquisition date found; tried filename_regex .*sidecar.*tags"):
        acquisition_date(undated, filename_regex=r"_(?P<date>\d{8})", sidecar={"other.tif": "2019-01-01"})


def test_real_label_without_date_is_reported() -> None:
    path = shared_path("sen1floods11_samples", "sample_data", "Labels", "Ghana_53713_LabelHand.tif")
    with pytest.raises(ValueError, match=r"Ghana_53713_LabelHand.tif: no acquisition date found"):
        acquisition_date(path)
