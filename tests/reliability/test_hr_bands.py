"""HR band order from the file's colour-interpretation tags and band descriptions (issue 13, item 7): a BGR file is
read as RGB, not fed to the model blue first; tags that contradict each other or the model's order are refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from skysense.data.raster import hr_bands_from_tags, raster_info
from skysense.errors import InputError
from tests.conftest import shared_path

C = ColorInterp


@pytest.fixture(scope="module")
def rgb() -> tuple[np.ndarray, dict]:
    """The real Landsat RGB test image (3 × 718 × 791 uint8; the excerpt: 3 × 398 × 407; tagged red, green, blue)
    and its profile."""
    with rasterio.open(shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif")) as src:
        return src.read(), src.profile


def _write(
    path: Path,
    bands: np.ndarray,
    profile: dict,
    colours: Sequence[ColorInterp] | None = None,
    descriptions: Sequence[str | None] | None = None,
    **options: str,
) -> Path:
    """Write ``bands`` as a GeoTIFF with these colour interpretations and descriptions; check they survive."""
    profile = {**profile, "count": len(bands), **options}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        if colours is not None:
            dst.colorinterp = list(colours)
        for index, description in enumerate(descriptions or [], start=1):
            if description is not None:
                dst.set_band_description(index, description)
    with rasterio.open(path) as src:  # the tags are really in the file (GDAL may override some: check)
        if colours is not None:
            assert list(src.colorinterp) == list(colours), src.colorinterp
        if descriptions is not None:
            assert [d or None for d in src.descriptions] == list(descriptions)
    return path


def test_bgr_file_is_read_as_rgb(tmp_path: Path, rgb: tuple[np.ndarray, dict]) -> None:
    """Before: bands went in by position, blue where the model expects red, with no warning."""
    pixels, profile = rgb
    bgr = _write(tmp_path / "bgr.tif", pixels[::-1], profile, [C.blue, C.green, C.red])
    bands = hr_bands_from_tags(raster_info(bgr), 3)
    assert bands == [3, 2, 1]
    with rasterio.open(bgr) as src:
        np.testing.assert_array_equal(src.read(bands), pixels)  # the original RGB pixels, in the model's order


def test_bgr_plus_nir_file_and_description_only_tags(tmp_path: Path, rgb: tuple[np.ndarray, dict]) -> None:
    pixels, profile = rgb
    nir = pixels[0] // 2 + 100  # a fourth band to stand for NIR
    stack = np.stack([pixels[2], pixels[1], pixels[0], nir])
    # Descriptions alone (GDAL's default grey interpretation), as many processing tools write them.
    named = _write(tmp_path / "named.tif", stack, profile, descriptions=["Blue", "green", "RED", "Near-Infrared"],
                   photometric="MINISBLACK")  # fmt: skip
    assert hr_bands_from_tags(raster_info(named), 4) == [3, 2, 1, 4]
    assert hr_bands_from_tags(raster_info(named), 3) == [3, 2, 1]
    with rasterio.open(named) as src:
        np.testing.assert_array_equal(src.read([3, 2, 1]), pixels)
    # Colour interpretation for the colours, a STAC common name for NIR.
    tagged = _write(tmp_path / "tagged.tif", stack, profile, [C.blue, C.green, C.red, C.undefined],
                    [None, None, None, "nir08"], photometric="MINISBLACK")  # fmt: skip
    assert hr_bands_from_tags(raster_info(tagged), 4) == [3, 2, 1, 4]


def test_bgr_tags_without_nir_are_refused_for_an_rgbn_model(tmp_path: Path, rgb: tuple[np.ndarray, dict]) -> None:
    """Blue, green, red, undefined: NIR is not identified and position would read blue as red."""
    pixels, profile = rgb
    stack = np.concatenate([pixels[::-1], pixels[:1]])
    path = _write(tmp_path / "bgrn.tif", stack, profile, [C.blue, C.green, C.red, C.undefined],
                  photometric="MINISBLACK")  # fmt: skip
    with pytest.raises(InputError) as info:
        hr_bands_from_tags(raster_info(path), 4)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "1=blue, 2=green, 3=red, 4=undefined" in message and "leave nir unidentified" in message
    assert "--hr-bands 3,2,1,4 if band 4 is nir" in message
    assert hr_bands_from_tags(raster_info(path), 3) == [3, 2, 1]  # an RGB model needs no NIR


def test_untagged_file_keeps_position(tmp_path: Path, rgb: tuple[np.ndarray, dict]) -> None:
    pixels, profile = rgb
    grey = _write(tmp_path / "grey.tif", pixels, profile, photometric="MINISBLACK")
    assert raster_info(grey).colorinterp == ("gray", "undefined", "undefined")
    assert hr_bands_from_tags(raster_info(grey), 3) is None
    # Descriptions that are not plain colour names (free text, Sentinel-2 codes) say nothing either.
    coded = _write(tmp_path / "coded.tif", pixels, profile, descriptions=["B04", "Band 2", "layer_3"],
                   photometric="MINISBLACK")  # fmt: skip
    assert hr_bands_from_tags(raster_info(coded), 3) is None


def test_tags_that_agree_with_position(tmp_path: Path, rgb: tuple[np.ndarray, dict]) -> None:
    pixels, profile = rgb
    original = raster_info(shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif"))
    assert hr_bands_from_tags(original, 3) == [1, 2, 3]
    # Red, green, blue and an untagged fourth band (GeoTIFF had no NIR interpretation before GDAL 3.10).
    rgbn = _write(tmp_path / "rgbn.tif", np.concatenate([pixels, pixels[:1]]), profile,
                  [C.red, C.green, C.blue, C.undefined], photometric="MINISBLACK")  # fmt: skip
    assert hr_bands_from_tags(raster_info(rgbn), 4) == [1, 2, 3, 4]
    # Only band 1 tagged, as red: position agrees.
    partial = _write(tmp_path / "partial.tif", pixels, profile, [C.red, C.undefined, C.undefined],
                     photometric="MINISBLACK")  # fmt: skip
    assert hr_bands_from_tags(raster_info(partial), 3) == [1, 2, 3]


def test_real_bgra_file_from_the_wild() -> None:
    """rasterio's RGBA.uint16.tif is tagged blue, green, red, alpha: the tags are followed, alpha left out."""
    info = raster_info(shared_path("rasterio_testdata", "tests", "data", "RGBA.uint16.tif"))
    assert info.colorinterp == ("blue", "green", "red", "alpha")
    assert hr_bands_from_tags(info, 3) == [3, 2, 1]


def test_contradictory_tags_are_refused(tmp_path: Path, rgb: tuple[np.ndarray, dict]) -> None:
    pixels, profile = rgb
    # Colour interpretation and description disagree on bands 1 and 3.
    crossed = _write(tmp_path / "crossed.tif", pixels, profile, [C.red, C.green, C.blue], ["blue", "green", "red"])
    with pytest.raises(InputError) as info:
        hr_bands_from_tags(raster_info(crossed), 3)
    message = str(info.value)
    assert message.startswith(f"{crossed}: band 1's colour interpretation says red but its description 'blue'")
    assert "1=red 'blue', 2=green 'green', 3=blue 'red'" in message and "--hr-bands" in message
    # One colour on two bands.
    twice = _write(tmp_path / "twice.tif", pixels, profile, [C.red, C.red, C.blue], photometric="MINISBLACK")
    with pytest.raises(InputError, match=r"twice.tif: bands 1 and 2 are both tagged red"):
        hr_bands_from_tags(raster_info(twice), 3)


def test_partial_tags_that_contradict_position_are_refused(tmp_path: Path, rgb: tuple[np.ndarray, dict]) -> None:
    """Band 1 tagged blue, red not identified: reading by position would feed blue as red."""
    pixels, profile = rgb
    path = _write(tmp_path / "blue_first.tif", pixels[::-1], profile, [C.blue, C.undefined, C.undefined],
                  photometric="MINISBLACK")  # fmt: skip
    with pytest.raises(InputError) as info:
        hr_bands_from_tags(raster_info(path), 3)
    message = str(info.value)
    assert message.startswith(f"{path}: the bands' tags (1=blue, 2=undefined, 3=undefined) leave red, green")
    assert "put band 1 (blue) where the model expects red" in message and "--hr-bands" in message
    # A model band tagged away from its position (red on band 4 of 4, RGB model) is refused too.
    four = _write(tmp_path / "red_last.tif", np.concatenate([pixels, pixels[:1]]), profile,
                  [C.undefined, C.undefined, C.undefined, C.red], photometric="MINISBLACK")  # fmt: skip
    with pytest.raises(InputError, match="would not take band 4 \\(red\\) as red"):
        hr_bands_from_tags(raster_info(four), 3)
