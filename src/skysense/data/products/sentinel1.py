"""Sentinel-1 GRD as users download it: one file per polarisation, stacked into the model's VV, VH.

A single-band file is a polarisation when its band description says so ("VV", "sigma0_vh", ...) or its name holds
the polarisation as a token: ``vv.tif``/``vh.tif`` (one folder per acquisition, as Planetary Computer's RTC items
are laid out), ``s1a-iw-grd-vv-20190917t175953-….tiff`` (a SAFE ``measurement/`` folder, once terrain-corrected),
``…_VV.tif``. Files of one date whose names differ only in the polarisation are one acquisition
(:class:`S1Pair`); units (linear or dB) are the sensor's, detected and converted as for stacked files. The
single-band layers an RTC product ships beside its polarisations (ASF HyP3's ``…_dem.tif``, ``_ls_map``,
``_inc_map``, ``_area``, ``_rgb``) are skipped with one warning line; a HyP3 ``.zip`` is read in place
(:mod:`skysense.data.raster.archive`).

Files georeferenced only by ground control points — a raw GRD in radar (slant/ground-range) geometry — are refused
(:func:`check_geocoded`): they need terrain correction first (ESA SNAP's Range-Doppler Terrain Correction, or
sarsen), after which the per-polarisation GeoTIFFs (RTC products) read here.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from skysense.containers import Grid
from skysense.data.raster import Raster, raster_info, reproject_to_grid
from skysense.data.sensors import LINEAR_POWER_SHARE, canonical_band_name
from skysense.errors import InputError

POLARISATIONS = ("VV", "VH", "HH", "HV")  # in the order an acquisition's files are stacked
_POLARISATION_TOKEN = re.compile(r"(?<![a-z0-9])(vv|vh|hh|hv)(?![a-z0-9])", re.IGNORECASE)


def check_geocoded(path: str | Path) -> None:
    """Refuse a raster georeferenced only by ground control points (radar geometry).

    Raises:
        InputError: naming the file and the terrain-correction tools.
    """
    with rasterio.open(path) as src:
        gcps, _ = src.gcps
        if src.crs is None and gcps:
            raise InputError(
                f"{path}: georeferenced only by {len(gcps)} ground control points (a Sentinel-1 GRD in radar "
                "geometry); terrain-correct it first (ESA SNAP's Range-Doppler Terrain Correction, or sarsen) or "
                "use an RTC product, then give the geocoded GeoTIFFs"
            )


# ASF HyP3 RTC names: S1A_IW_20190918T060043_DVP_RTC30_G_gpuned_5F0F_VV.tif — the 6 letters after the software
# letter are radiometry (g/s), scale (p power, d decibel, a amplitude), masking, filtering, area, DEM matching
_HYP3_NAME = re.compile(r"_RTC\d+_[A-Z]_(?P<radiometry>[gs])(?P<scale>[pda])[uw][nf][ec][dm]_", re.IGNORECASE)
_HYP3_SCALES = {"p": "power (linear)", "d": "decibel", "a": "amplitude"}
_HYP3_SENSORS = {"p": "s1_grd_linear", "d": "s1_grd"}  # the sensor of each scale skysense reads


def check_hyp3_scale(path: Path, sensor: str) -> None:
    """Refuse an ASF HyP3 RTC file whose name says a scale the series' sensor does not read: amplitude (neither dB
    nor power: read as power it would be silently wrong), power given as dB, or dB given as power.

    Raises:
        InputError: naming the file, its scale and the option to give.
    """
    match = _HYP3_NAME.search(path.name)
    if match is None:
        return
    scale = match["scale"].lower()
    wanted = _HYP3_SENSORS.get(scale)
    if wanted is None:
        raise InputError(
            f"{path}: an ASF HyP3 RTC product in amplitude scale, which skysense does not read (it reads power or "
            "decibels); order the product with scale power or decibel, or square the values into power"
        )
    if wanted != sensor:
        raise InputError(
            f"{path}: an ASF HyP3 RTC product in {_HYP3_SCALES[scale]} scale (its name says so) given as {sensor}; "
            f"use --s1-sensor {wanted}"
        )


def s1_units(files: Sequence[str | Path]) -> tuple[str, str]:
    """Whether a Sentinel-1 series holds decibels or linear power, for ``--s1-sensor auto``: ("s1_grd" or
    "s1_grd_linear", the reason in words).

    An ASF HyP3 RTC name says its scale (``…_RTC30_G_gpuned_…``: power; ``…_gduned_…``: decibels; amplitude is
    refused by :func:`check_hyp3_scale`). Otherwise the values decide: the first file is read decimated (at most
    256² pixels a band, from its overviews where it has them); dB backscatter is mostly negative (land VV about
    −5 to −25 dB, VH −15 to −30) and linear power is never negative, so a sample that is at least 99 % ≥ 0 is linear
    power — the rule :func:`~skysense.data.sensors.check_units` uses to refuse linear values given as dB.
    """
    for file in files:
        match = _HYP3_NAME.search(Path(str(file)).name)
        if match and match["scale"].lower() in _HYP3_SENSORS:
            scale = match["scale"].lower()
            return _HYP3_SENSORS[scale], f"its ASF HyP3 name says {_HYP3_SCALES[scale]}"
    first = str(files[0])
    with rasterio.open(first) as src:
        shape = (src.count, min(src.height, 256), min(src.width, 256))
        sample = src.read(out_shape=shape, masked=True)
    values = sample.compressed() if np.ma.isMaskedArray(sample) else np.ravel(sample)
    values = values[np.isfinite(values)]
    if not values.size:
        return "s1_grd", "no valid value in a sample of it: taken as dB"
    share = float(np.mean(values >= 0))
    units = "s1_grd_linear" if share >= LINEAR_POWER_SHARE else "s1_grd"
    return units, f"{share:.0%} of a sample of its values are ≥ 0: {'linear power' if units != 's1_grd' else 'dB'}"


def polarisation_of(path: Path) -> str | None:
    """ "VV", "VH", "HH" or "HV" for a single-band file that names its polarisation (description, then file name);
    None otherwise."""
    info = raster_info(path)
    if len(info.data_bands) != 1:
        return None
    return polarisation_named(info.descriptions[info.data_bands[0] - 1], path)


def polarisation_named(description: str | None, path: Path) -> str | None:
    """The polarisation a single band's description names, else the one its file name holds as a token; None when
    neither names exactly one (what :func:`polarisation_of` decides, for callers that already have the metadata)."""
    named = canonical_band_name(description)
    if named in POLARISATIONS:
        return named
    tokens = {t.upper() for t in _POLARISATION_TOKEN.findall(path.stem)}
    return tokens.pop() if len(tokens) == 1 else None


def acquisition_key(path: Path, date: dt.date) -> tuple:
    """What the polarisation files of one acquisition share: the date, the folder, and the name with the
    polarisation taken out (and the suffix)."""
    return date, path.parent, _POLARISATION_TOKEN.sub("*", path.stem).lower(), path.suffix.lower()


@dataclass(frozen=True)
class S1Pair:
    """One Sentinel-1 acquisition as one file per polarisation.

    Attributes:
        date: acquisition date.
        polarisations: "VV"/"VH"/… → file.
        source: the folder (one per acquisition) or the VV file, named in messages.
    """

    date: dt.date
    polarisations: dict[str, Path]
    source: Path
    sensor = None  # units (linear or dB) are the sensor's the user gives, as for stacked files

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self.polarisations.values())

    @property
    def rasters(self) -> list[Path]:
        return list(self.polarisations.values())

    def grid(self) -> Grid:
        return raster_info(next(iter(self.polarisations.values()))).grid

    def read(self, grid: Grid, bands: Sequence[str], resampling: str = "bilinear") -> Raster:
        """The polarisations ``bands`` (e.g. VV, VH) onto ``grid``: values (C, H, W) float32 NaN where invalid.

        Raises:
            InputError: a polarisation this acquisition has no file for.
        """
        wanted = [canonical_band_name(b) or b for b in bands]
        missing = [b for b in wanted if b not in self.polarisations]
        if missing:
            raise InputError(
                f"{self.source}: the {self.date} acquisition has files for {', '.join(self.polarisations)} but not "
                f"{', '.join(missing)}; give a file per polarisation the model reads ({', '.join(wanted)})"
            )
        read = [
            reproject_to_grid(self.polarisations[b], grid.crs, grid.transform, grid.shape, resampling) for b in wanted
        ]
        values = np.concatenate([r.values for r in read]).astype(np.float32)
        valid = np.concatenate([r.valid for r in read])
        return Raster(values, valid, tuple(wanted), grid.crs, grid.transform, self.source)


def group_polarisations(items: Sequence, dates: Sequence[dt.date]) -> tuple[list, list[dt.date]]:
    """Per-polarisation files of one date (and one name once the polarisation is taken out) → :class:`S1Pair`;
    other items (stacked files, products) pass through. Returns (items, their dates).

    Raises:
        InputError: a polarisation file with no partner of its date, or one polarisation twice for an acquisition.
    """
    groups: dict[tuple, dict[str, Path]] = {}
    out, out_dates = [], []
    for item, date in zip(items, dates, strict=True):
        polarisation = polarisation_of(item) if isinstance(item, Path) else None
        if polarisation is None:
            out.append(item)
            out_dates.append(date)
            continue
        group = groups.setdefault(acquisition_key(item, date), {})
        if polarisation in group:
            raise InputError(
                f"{item}: a second {polarisation} file for the acquisition of {date} ({group[polarisation]}); give one "
                "file per polarisation and date"
            )
        group[polarisation] = item
    for (date, folder, _, _), group in groups.items():
        if len(group) == 1:
            ((polarisation, path),) = group.items()
            raise InputError(
                f"{path}: the only polarisation file ({polarisation}) of the acquisition of {date}; give its partner "
                "(VV and VH) with the same name but the polarisation, or a stacked VV/VH file"
            )
        ordered = dict(sorted(group.items(), key=lambda kv: POLARISATIONS.index(kv[0])))
        names = {p.stem.lower() for p in ordered.values()}
        source = folder if names <= {p.lower() for p in POLARISATIONS} else next(iter(ordered.values()))
        out.append(S1Pair(date, ordered, source))
        out_dates.append(date)
    return _without_ancillary_layers(out, out_dates, groups)


def _without_ancillary_layers(items: list, dates: list[dt.date], groups: dict) -> tuple[list, list[dt.date]]:
    """Drop the single-band layers an RTC product ships beside its polarisations (ASF HyP3's ``…_5F0F_dem.tif``,
    ``_ls_map``, ``_inc_map``, ``_area``, ``_rgb`` next to ``…_5F0F_VV.tif``): files of an acquisition's date and
    folder whose names start with the acquisition's name up to the polarisation. Read as they are, each would be
    another date of the series. What is dropped is said in one warning line."""
    prefixes = {
        (date, folder, pattern.split("*", 1)[0])
        for date, folder, pattern, _ in groups
        if len(pattern.split("*", 1)[0]) >= 8
    }
    kept, kept_dates, dropped = [], [], []
    for item, date in zip(items, dates, strict=True):
        if isinstance(item, Path) and any(
            date == d and item.parent == f and item.stem.lower().startswith(prefix) for d, f, prefix in prefixes
        ):
            dropped.append(item.name)
            continue
        kept.append(item)
        kept_dates.append(date)
    if dropped:
        warnings.warn(
            f"skipped {len(dropped)} ancillary layer{'s' * (len(dropped) > 1)} of RTC products (not polarisations): "
            f"{', '.join(dropped[:5])}{' …' if len(dropped) > 5 else ''}",
            stacklevel=3,
        )
    return kept, kept_dates
