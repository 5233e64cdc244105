"""Real Sentinel-2 pixels written in ESA's product layouts (built in tmp folders for tests).

The source is the real Sen1Floods11 13-band L1C chip ``Spain_7370579_S2Hand.tif`` (EPSG:4326, ~10 m, DN), cropped to
:func:`side`² (480² of the real 512² chip, 120² of the 128² excerpt in tests/fixtures) so that the 20 m bands (2 × 2
block means) and 60 m bands (6 × 6 block means) tile it exactly. Bands are
written as lossless JPEG 2000 with product names, with an ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` whose offset is
−1000 (baseline 04.00: the DNs are the chip's + 1000) or absent (baseline 02.08), an ``MSK_CLASSI_B00.jp2`` (L1C)
or ``SCL_20m.jp2`` (L2A) with a cloud where the test puts one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from tests.conftest import shared_path

CHIP = ("sen1floods11_samples", "cloudtostreet_official_sample", "S2", "Spain_7370579_S2Hand.tif")
BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
RESOLUTION = {"B2": 10, "B3": 10, "B4": 10, "B8": 10, "B1": 60, "B9": 60, "B10": 60}  # the others: 20 m
TILE, TIME = "T30SYH", "20220917T105619"  # a real tile (Valencia); a date after baseline 04.00


def side(at_most: int | None = None) -> int:
    """The side of the chip's square crop: the largest multiple of 120 it holds (whole 60 m pixels, and a quarter of
    it too, see :func:`cloud_pixels`): 480 of the real 512² chip, 120 of the 128² excerpt; no more than ``at_most``
    (a multiple of 120) where given, for tests that run a model over the scene several times."""
    with rasterio.open(shared_path(*CHIP)) as src:
        natural = min(src.width, src.height) // 120 * 120
    return natural if at_most is None else min(natural, at_most)


def cloud_pixels(at_most: int | None = None) -> tuple[slice, slice]:
    """The 10 m pixels under the test cloud: the crop's top-left quarter (120² of 480²: 20 × 20 pixels of the 60 m
    MSK_CLASSI)."""
    quarter = side(at_most) // 4
    return slice(0, quarter), slice(0, quarter)


def clear_pixels(at_most: int | None = None) -> tuple[slice, slice]:
    """10 m pixels well away from the test cloud: from 5/12 of the crop on (200: of 480)."""
    start = side(at_most) * 5 // 12
    return slice(start, None), slice(start, None)


def two_tiles(at_most: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """The columns of two overlapping MGRS tiles that cover the crop, on whole 60 m pixels: its left and its right
    5/8 ((0, 300) and (180, 480) of 480)."""
    width = side(at_most)
    return (0, width * 5 // 8 // 6 * 6), (width * 3 // 8 // 6 * 6, width)


def chip(at_most: int | None = None) -> tuple[np.ndarray, dict]:
    """The real chip cropped to :func:`side`² (13, side, side) int16 DN, and its profile."""
    width = side(at_most)
    with rasterio.open(shared_path(*CHIP)) as src:
        profile = src.profile
        values = src.read(window=((0, width), (0, width)))
    profile.update(width=width, height=width)
    return values, profile


def block_mean(plane: np.ndarray, factor: int) -> np.ndarray:
    h, w = plane.shape
    return plane.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def band_at_resolution(plane: np.ndarray, band: str) -> np.ndarray:
    """The 10 m plane as the band's native resolution (block mean, rounded like a DN)."""
    factor = RESOLUTION.get(band, 20) // 10
    return plane if factor == 1 else np.rint(block_mean(plane.astype(np.float64), factor))


def _write_jp2(path: Path, planes: np.ndarray, profile: dict, factor: int, dtype: str = "uint16") -> None:
    transform = profile["transform"] @ Affine.scale(factor)
    count, height, width = planes.shape
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=width, height=height, count=count, dtype=dtype,
                       crs=profile["crs"], transform=transform, QUALITY=100, REVERSIBLE="YES") as dst:  # fmt: skip
        dst.write(planes.astype(dtype))


def _metadata(level: str, offset: bool, old_format: bool = False) -> str:
    tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    quantification = "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE"
    if old_format and level == "L2A":  # Sen2Cor's PSD 13 metadata
        quantification = "L2A_BOA_QUANTIFICATION_VALUE"
    offsets = "".join(f'<{tag} band_id="{i}">-1000</{tag}>' for i in range(13)) if offset else ""
    wrapper = "BOA_ADD_OFFSET_VALUES_LIST" if level == "L2A" else "Radiometric_Offset_List"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<n1:Level-{level[1:]}_User_Product '
        f'xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd">'
        f"<n1:General_Info><Product_Info><PRODUCT_TYPE>S2MSI{level[1:]}</PRODUCT_TYPE>"
        f"<PROCESSING_BASELINE>{'04.00' if offset else '02.08'}</PROCESSING_BASELINE></Product_Info>"
        f'<Product_Image_Characteristics><{quantification} unit="none">10000</{quantification}>'
        f"<{wrapper}>{offsets}</{wrapper}></Product_Image_Characteristics></n1:General_Info>"
        f"</n1:Level-{level[1:]}_User_Product>"
    )


def write_safe(
    root: Path,
    level: str = "L1C",
    offset: bool = True,
    cloud: bool = True,
    metadata: bool = True,
    time: str = TIME,
    tile: str = TILE,
    columns: tuple[int, int] | None = None,
    at_most: int | None = None,
    old_format: bool = False,
) -> Path:
    """The chip as a ``.SAFE`` folder under ``root`` sensed at ``time``; returns the folder. ``columns`` (multiples
    of 6): only those columns of the chip, as a tile that covers part of it (two overlapping parts: two MGRS tiles).
    ``at_most``: the crop's side at most (see :func:`side`). ``old_format``: named as products were before the
    compact naming of December 2016 (L1C, baseline 02.xx: ``S2A_OPER_PRD_MSIL1C_PDMC_<processed>_R094_V<sensed>_…``,
    granule and band files named ``S2A_OPER_MSI_L1C_TL_SGS__<processed>_A…_T30SYH_B01.jp2``, an
    ``S2A_OPER_MTD_SAFL1C_….xml``; L2A as Sen2Cor made it from such a product: ``S2A_USER_PRD_MSIL2A_…``, bands
    ``IMG_DATA/R10m/S2A_USER_MSI_L2A_TL_…_B02_10m.jp2``, ``IMG_DATA/S2A_USER_SCL_L2A_TL_…_20m.jp2``, an
    ``S2A_USER_MTD_SAFL2A_….xml`` with ``L2A_BOA_QUANTIFICATION_VALUE``), the processing time a day after ``time``."""
    values, profile = chip(at_most)
    if columns is not None:
        values = values[:, :, columns[0] : columns[1]]
        profile = {**profile, "width": columns[1] - columns[0],
                   "transform": profile["transform"] @ Affine.translation(columns[0], 0)}  # fmt: skip
    height, width = values.shape[-2:]
    baseline = "N0400" if offset else "N0208"
    safe = root / f"S2B_MSI{level}_{time}_{baseline}_R094_{tile}_{time[:8]}T131452.SAFE"
    granule = safe / "GRANULE" / f"{level}_{tile}_A028000_{time}"
    processed = f"{int(time[:8]) + 1}T151441"  # old names hold the processing time, not the sensing time
    origin = "USER" if level == "L2A" else "OPER"  # Sen2Cor's L2A products were the user's
    if old_format:
        stamp = f"PDMC_{processed}_R094_V{time}_{time}"
        safe = root / f"S2A_{origin}_PRD_MSI{level}_{stamp}.SAFE"
        granule = safe / "GRANULE" / f"S2A_{origin}_MSI_{level}_TL_SGS__{processed}_A003208_{tile}_N02.01"
    (granule / "QI_DATA").mkdir(parents=True)
    if metadata:
        name = f"S2A_{origin}_MTD_SAF{level}_{stamp}.xml" if old_format else f"MTD_MSI{level}.xml"
        (safe / name).write_text(_metadata(level, offset, old_format))
    for index, band in enumerate(BANDS):
        if level == "L2A" and band == "B10":
            continue  # L2A has no cirrus band
        plane = values[index].astype(np.float64)
        dn = band_at_resolution(plane, band) + (1000 if offset else 0)
        resolution = RESOLUTION.get(band, 20)
        code = band if band == "B8A" else f"B{int(band[1:]):02d}"
        if old_format and level == "L2A":
            folder = granule / "IMG_DATA" / f"R{resolution}m"
            name = f"{granule.name[: -len('_N02.01')]}_{code}_{resolution}m.jp2"
        elif old_format:
            folder, name = granule / "IMG_DATA", f"{granule.name[: -len('_N02.01')]}_{code}.jp2"
        elif level == "L1C":
            folder, name = granule / "IMG_DATA", f"{tile}_{time}_{code}.jp2"
        else:
            folder, name = granule / "IMG_DATA" / f"R{resolution}m", f"{tile}_{time}_{code}_{resolution}m.jp2"
        folder.mkdir(parents=True, exist_ok=True)
        _write_jp2(folder / name, dn[None], profile, resolution // 10)
    if cloud and level == "L1C":  # MSK_CLASSI at 60 m: opaque clouds, cirrus, snow
        rows, cols = cloud_pixels(at_most)
        mask = np.zeros((3, height // 6, width // 6), np.uint8)
        mask[0, rows.start // 6 : rows.stop // 6, cols.start // 6 : cols.stop // 6] = 1
        _write_jp2(granule / "QI_DATA" / "MSK_CLASSI_B00.jp2", mask, profile, 6, "uint8")
    if level == "L2A":  # SCL at 20 m: vegetation (4), high cloud (9) under cloud_pixels() when cloud
        scl = np.full((1, height // 2, width // 2), 4, np.uint8)
        if cloud:
            rows, cols = cloud_pixels(at_most)
            scl[0, rows.start // 2 : rows.stop // 2, cols.start // 2 : cols.stop // 2] = 9
        if old_format:  # in IMG_DATA itself, named for the granule
            stem = granule.name[: -len("_N02.01")].replace("_MSI_", "_SCL_")
            _write_jp2(granule / "IMG_DATA" / f"{stem}_20m.jp2", scl, profile, 2, "uint8")
        else:
            folder = granule / "IMG_DATA" / "R20m"
            _write_jp2(folder / f"{tile}_{time}_SCL_20m.jp2", scl, profile, 2, "uint8")
    return safe


def zip_safe(safe: Path) -> Path:
    """The ``.SAFE`` folder as the ``.SAFE.zip`` a download gives (the folder is removed)."""
    archive = shutil.make_archive(str(safe), "zip", root_dir=safe.parent, base_dir=safe.name)
    shutil.rmtree(safe)
    return Path(archive)


def write_eopf_zarr(
    root: Path,
    level: str = "L1C",
    cloud: bool = True,
    time: str = TIME,
    tile: str = TILE,
    crs_on_arrays: bool = True,
    zipped: bool = False,
    at_most: int | None = None,
    utm: bool = False,
    zarr_format: int = 2,
) -> Path:
    """The chip as an EOPF Zarr product (format 2, consolidated metadata, as the EOPF Sentinel Zarr Samples service
    publishes them) under ``root``: ``measurements/reflectance/r10m|r20m|r60m/bNN`` uint16 with ``scale_factor``
    0.0001 and ``add_offset`` -0.1 (the DNs are the chip's + 1000), each band at its native resolution and, as in
    the real products, resampled copies in the coarser groups (deliberately off by 7 DN, so that reading a copy
    shows); pixel-centre ``x``/``y`` per group; L1C ``conditions/mask/l1c_classification/r60m/b00`` (flags opaque 1,
    cirrus 2, snow 4: opaque under :func:`cloud_pixels`, snow on the crop's right half), L2A
    ``conditions/mask/l2a_classification/r20m/scl``. The CRS is on the arrays (``proj:epsg``) or, with
    ``crs_on_arrays=False``, only in the root's ``other_metadata.horizontal_CRS_code``. ``zipped``: the
    ``.zarr.zip`` (the folder is removed). ``at_most``: the crop's side at most (see :func:`side`). ``utm``: the pixels placed on tile T30SYH's
    own 10 m UTM grid (EPSG:32630, int64 metre coordinates, as every real product has) instead of the chip's degrees.
    ``zarr_format`` 3: the format EOPF moves to (``zarr.json`` with consolidated metadata, dimension names)."""
    import zarr

    values, profile = chip(at_most)
    height, width = values.shape[-2:]
    epsg = 32630 if utm else profile["crs"].to_epsg()
    transform = Affine(10, 0, 699960, 0, -10, 4300020) if utm else profile["transform"]
    coordinates = "int64" if utm else "float64"
    name = f"S2B_MSI{level}_{time}_N0511_R094_{tile}_{time[:8]}T131452.zarr"
    product = root / name
    group = zarr.open_group(product, mode="w", zarr_format=zarr_format)
    sensed = f"{time[:4]}-{time[4:6]}-{time[6:8]}T{time[9:11]}:{time[11:13]}:{time[13:15]}.024000Z"
    group.attrs.update({
        "stac_discovery": {"properties": {"start_datetime": sensed, "datetime": sensed, "processing:version": "05.11",
                                          "product:type": f"S02MSI{level}"}},
        "other_metadata": {"horizontal_CRS_code": f"EPSG:{epsg}"},
    })  # fmt: skip

    def dimensions(names: list[str]) -> dict:  # format 2: xarray's attribute; format 3: the array's own names
        return {"attributes": {"_ARRAY_DIMENSIONS": names}} if zarr_format == 2 else {"dimension_names": names}

    def resolution_group(path: str, factor: int):
        sub = group.require_group(path)
        if "x" not in sub:
            n_x, n_y = width // factor, height // factor
            x = sub.create_array("x", shape=(n_x,), dtype=coordinates, **dimensions(["x"]))
            x[:] = transform.c + (np.arange(n_x) + 0.5) * transform.a * factor
            y = sub.create_array("y", shape=(n_y,), dtype=coordinates, **dimensions(["y"]))
            y[:] = transform.f + (np.arange(n_y) + 0.5) * transform.e * factor
        return sub

    def array(path: str, name: str, plane: np.ndarray, factor: int, attributes: dict, dtype: str = "uint16") -> None:
        attrs = {**dimensions(["y", "x"]).get("attributes", {}), **attributes}
        if crs_on_arrays:
            attrs["proj:epsg"] = epsg
        sub = resolution_group(path, factor)
        names = {} if zarr_format == 2 else {"dimension_names": ["y", "x"]}
        stored = sub.create_array(name, shape=plane.shape, chunks=(60, 60), dtype=dtype, fill_value=0,
                                  attributes=attrs, **names)  # fmt: skip
        stored[:] = plane.astype(dtype)

    reflectance = {"scale_factor": 0.0001, "add_offset": -0.1, "units": "digital_counts"}
    for index, band in enumerate(BANDS):
        if level == "L2A" and band == "B10":
            continue
        plane = values[index].astype(np.float64)
        code = band.lower() if band == "B8A" else f"b{int(band[1:]):02d}"
        native = RESOLUTION.get(band, 20)
        for resolution in (10, 20, 60):
            if resolution < native:
                continue
            factor = resolution // 10
            dn = (plane if factor == 1 else np.rint(block_mean(plane, factor))) + 1000
            if resolution != native:
                dn = dn + 7  # a resampled copy: never what is read
            array(f"measurements/reflectance/r{resolution}m", code, dn, factor, reflectance)
    rows, cols = cloud_pixels(at_most)
    if level == "L1C":
        flags = np.zeros((height // 6, width // 6), np.uint8)
        flags[:, flags.shape[1] // 2 :] = 4  # snow and ice: valid
        if cloud:
            flags[rows.start // 6 : rows.stop // 6, cols.start // 6 : cols.stop // 6] = 1
        meanings = {"flag_masks": [1, 2, 4], "flag_meanings": "OPAQUE CIRRUS SNOW_ICE"}
        array("conditions/mask/l1c_classification/r60m", "b00", flags, 6, meanings, "uint8")
    else:
        scl = np.full((height // 2, width // 2), 4, np.uint8)
        if cloud:
            scl[rows.start // 2 : rows.stop // 2, cols.start // 2 : cols.stop // 2] = 9
        array("conditions/mask/l2a_classification/r20m", "scl", scl, 2, {"flag_values": list(range(12))}, "uint8")
    zarr.consolidate_metadata(product)
    return zip_safe(product) if zipped else product  # the folder as the zip a download gives
