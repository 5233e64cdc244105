"""JPEG 2000 completeness from the file's markers (skysense.data.raster.jpeg2000), on the real Sen1Floods11 chip's
bands written as JPEG 2000 the way Sentinel-2 distributes them: tiled, in a JP2 file or a bare codestream, loose or
inside a zipped product.

GDAL opens a truncated JPEG 2000 file (its header is intact), and a whole-band read of one decodes its missing tiles
as zeros without raising (it only logs "opj_get_decoded_tile() failed"): these files must be refused on opening."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from skysense.data.raster import check_readable, read_raster
from skysense.data.raster.info import UnreadableRaster
from skysense.data.raster.jpeg2000 import codestream_gap, readable_here
from tests.data.s2_safe import chip, write_safe, zip_safe

CUTS = (0.02, 0.3, 0.6, 0.9, 0.99)  # fractions of the file kept


def _tiled_band(path: Path, codec: str) -> np.ndarray:
    """The chip's B02 (480², uint16) as lossless JPEG 2000 in several tiles (as a Sentinel-2 band is in 1024² ones;
    GDAL's writer makes 120-row tiles here); ``codec`` "JP2" (boxes around the codestream) or "J2K" (the bare
    codestream)."""
    values, profile = chip()
    plane = values[1].astype("uint16")
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=plane.shape[1], height=plane.shape[0], count=1,
                       dtype="uint16", crs=profile["crs"], transform=profile["transform"], CODEC=codec,
                       BLOCKXSIZE=120, BLOCKYSIZE=120, QUALITY=100, REVERSIBLE="YES") as dst:  # fmt: skip
        dst.write(plane, 1)
    return plane


@pytest.mark.parametrize("codec", ["JP2", "J2K"])
def test_a_complete_tiled_band_passes_and_reads_the_chip(tmp_path: Path, codec: str) -> None:
    """Input: the real B02 as a tiled lossless JPEG 2000, as a JP2 file and as a bare codestream.
    Expected: no gap; check_readable passes; read_raster gives the chip's values exactly."""
    path = tmp_path / f"T30SYH_20220917T105619_B02.{codec.lower()}"
    plane = _tiled_band(path, codec)
    assert readable_here(path)
    assert codestream_gap(path) is None
    check_readable(path)
    np.testing.assert_array_equal(read_raster(path).values[0], plane)


@pytest.mark.parametrize("codec", ["JP2", "J2K"])
@pytest.mark.parametrize("kept", CUTS)
def test_every_cut_of_a_tiled_band_is_refused_on_opening(tmp_path: Path, codec: str, kept: float) -> None:
    """Input: the tiled band cut to 2 … 99 % of its bytes (a download stopped early).
    Expected: codestream_gap says what is missing (the JP2 box, or the tile-part whose bytes run past the end);
    check_readable and read_raster both refuse the file in one UnreadableRaster naming it."""
    path = tmp_path / f"B02.{codec.lower()}"
    _tiled_band(path, codec)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept)])
    gap = codestream_gap(path)
    expected = "its 'jp2c' box at byte" if codec == "JP2" else "its tile-part at byte"
    assert gap is not None and gap.startswith(expected), gap
    for call in (check_readable, read_raster):
        with pytest.raises(UnreadableRaster) as caught:
            call(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: cannot read its JPEG 2000 codestream: {gap}")
        assert message.endswith("re-download or re-export it")


def test_a_codestream_missing_its_last_tile_is_refused(tmp_path: Path) -> None:
    """Input: the bare tiled codestream with its last tile-part removed (its end marker EOC put back, or not), so
    every length it still holds is consistent; and the whole codestream without its end marker.
    Expected: the gap counts the missing tile; the complete codestream without EOC is accepted."""
    path = tmp_path / "B02.j2k"
    _tiled_band(path, "J2K")
    data = path.read_bytes()
    tiles = data.count(b"\xff\x90")  # SOT markers, one tile-part per tile (coded data never holds 0xFF90)
    last = data.rfind(b"\xff\x90")
    assert tiles >= 4 and int.from_bytes(data[last + 4 : last + 6], "big") == tiles - 1  # Isot of the last tile
    path.write_bytes(data[:last] + b"\xff\xd9")
    assert codestream_gap(path) == f"1 of its codestream's {tiles} tiles have no data"
    path.write_bytes(data[:last])  # cut exactly at a tile-part's start, end marker lost too
    assert codestream_gap(path) == f"1 of its codestream's {tiles} tiles have no data"
    assert data.endswith(b"\xff\xd9")
    path.write_bytes(data[:-2])  # complete but for the end marker (a writer that leaves it out): accepted
    assert codestream_gap(path) is None


def test_a_cut_band_inside_a_zipped_safe_product_is_refused(tmp_path: Path) -> None:
    """Input: the real chip as an L1C .SAFE.zip whose B02 member was cut to 70 % before zipping (a broken archive
    as a failed download or copy leaves it), read in place through /vsizip/.
    Expected: that member is refused naming its /vsizip/ path; the other members pass."""
    safe = write_safe(tmp_path)
    band = next(safe.glob("GRANULE/*/IMG_DATA/*_B02.jp2"))
    data = band.read_bytes()
    band.write_bytes(data[: int(len(data) * 0.7)])
    archive = zip_safe(safe)
    with zipfile.ZipFile(archive) as opened:
        members = [m for m in opened.namelist() if m.endswith(".jp2")]
    paths = [f"/vsizip/{{{archive.resolve()}}}/{m}" for m in members]
    cut = next(p for p in paths if p.endswith("_B02.jp2"))
    assert all(readable_here(p) for p in paths) and not readable_here("/vsicurl/https://example.com/B02.jp2")
    with pytest.raises(UnreadableRaster, match=r"cannot read its JPEG 2000 codestream: its 'jp2c' box at byte"):
        check_readable(cut)
    for path in paths:
        if path != cut:
            assert codestream_gap(path) is None
            check_readable(path)


def test_damaged_bytes_inside_a_zipped_band_are_one_line_not_a_traceback(capsys, tmp_path: Path) -> None:
    """Input: the real chip as an L1C .SAFE.zip, 200 bytes in the middle of its B08 member's compressed data zeroed
    (the zip's size and listing intact: a bad sector, a flipped download). Python's zipfile then fails the member's
    checksum or inflation; that escaped as a traceback (zipfile.BadZipFile) from `embed` and `data stats`.
    Expected: one line naming the member, from `check_readable` and from `skysense embed` (exit 1, no output)."""
    from skysense.cli import main
    from skysense.models.registry import create_model
    from skysense.models.weights import save_pretrained

    archive = zip_safe(write_safe(tmp_path))
    with zipfile.ZipFile(archive) as opened:
        info = next(i for i in opened.infolist() if i.filename.endswith("_B08.jp2"))
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the member's data
    middle = start + info.compress_size // 2
    data[middle : middle + 200] = bytes(200)
    archive.write_bytes(bytes(data))
    member = f"/vsizip/{{{archive.resolve()}}}/{info.filename}"
    with pytest.raises(UnreadableRaster, match=r"_B08.jp2: cannot read its JPEG 2000 codestream: its bytes in the zip"):
        check_readable(member)
    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    output = tmp_path / "embedding.tif"
    code = main(["embed", "--checkpoint", str(weights), "--s2", str(archive), "--source", "s2", "--output",
                 str(output), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "_B08.jp2: cannot read its JPEG 2000 codestream" in err and "Traceback" not in err
    assert not output.exists()


def test_a_file_that_is_not_jpeg2000_is_named_as_such(tmp_path: Path) -> None:
    """Input: bytes that are neither a JP2 file nor a codestream. Expected: the gap says so (no exception)."""
    path = tmp_path / "B02.jp2"
    path.write_bytes(b"<html>Service unavailable</html>")
    assert codestream_gap(path) == "it is neither a JP2 file nor a JPEG 2000 codestream"


@pytest.mark.parametrize(
    "options",
    [
        {"TLM": "YES", "PLT": "YES"},  # tile-part and packet length markers, as large archives write them
        {"SOP": "YES", "EPH": "YES"},  # packet delimiters inside the tile-parts
        {"TILEPARTS": "RESOLUTIONS", "PROGRESSION": "RPCL"},  # several tile-parts per tile, resolution first
        {"CODEC": "J2K", "TLM": "YES"},
    ],
    ids=["tlm-plt", "sop-eph", "tile-parts", "j2k-tlm"],
)
def test_codestream_options_writers_use_are_read_as_complete(tmp_path: Path, options: dict) -> None:
    """Input: the real chip's first three bands as one lossless JPEG 2000 file written with options that change the
    codestream's markers. Expected: no gap for the whole file, the chip's values back, and cuts at 30 and 97 % still
    found (a check that refused valid files would refuse real products)."""
    values, profile = chip()
    planes = values[:3].astype("uint16")
    path = tmp_path / f"stack.{'j2k' if options.get('CODEC') == 'J2K' else 'jp2'}"
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=planes.shape[2], height=planes.shape[1], count=3,
                       dtype="uint16", crs=profile["crs"], transform=profile["transform"], QUALITY=100,
                       REVERSIBLE="YES", **options) as dst:  # fmt: skip
        dst.write(planes)
    assert codestream_gap(path) is None
    np.testing.assert_array_equal(read_raster(path).values, planes)
    data = path.read_bytes()
    for kept in (0.3, 0.97):
        path.write_bytes(data[: int(len(data) * kept)])
        assert codestream_gap(path) is not None
