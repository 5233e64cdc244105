"""Sensors as data: band names and order, central wavelengths, units and default normalisation (band sets and
wavelengths from the ESA Sentinel-1/-2 product specifications; S2 and S1 statistics those of the SkySense++ code).

The model's band order is fixed per modality. Conversions users expect are explicit functions here, never guessed:
Sentinel-2 L1C's 13 bands → the model's 10, linear backscatter → dB (:func:`to_model`). :func:`check_units` refuses
values that cannot be in a sensor's units (out of range, or implausible: reflectance in 0–1 where ×1e4 is expected,
linear power where dB is expected).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sensor:
    """One input modality as the model expects it.

    Attributes:
        name: short name ("hr", "s2", "s1").
        bands: band names in model order.
        units: what the raw values are ("DN 0-255", "reflectance x 1e4", "dB").
        mean: per-band mean in those units, subtracted before the model.
        std: per-band standard deviation in those units.
        valid_range: (low, high) that raw values of this unit must lie in; used to refuse wrong units.
        wavelengths: central wavelength of each band in micrometres (SAR: the radar wavelength), or None.
        model_sensor: for a source format the model does not take as is (S2 L1C, linear S1), the key in
            :data:`SENSORS` of the model sensor that :func:`to_model` converts it to; None for model sensors.
    """

    name: str
    bands: tuple[str, ...]
    units: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    valid_range: tuple[float, float]
    wavelengths: tuple[float, ...] | None = None
    model_sensor: str | None = None

    def normalize(self, values: np.ndarray, source: str = "input", plausibility: bool = True) -> np.ndarray:
        """(C, ...) raw values in this sensor's units → float32 (values - mean) / std (NaN stays NaN);
        ``plausibility`` as in :func:`check_units`.

        Raises:
            ValueError: if the band count differs or the values cannot be in this sensor's units (see
                :func:`check_units`), naming ``source``; or if this sensor is a source format without statistics
                (convert it with :func:`to_model` first).
        """
        if not self.mean:
            raise ValueError(
                f"{source}: {self.name} values in {self.units} are not normalised directly; convert them with "
                f"skysense.data.sensors.to_model (→ {self.model_sensor}) first"
            )
        if values.shape[0] != len(self.bands):
            raise ValueError(
                f"{source}: expected {len(self.bands)} bands {list(self.bands)} for {self.name}, got {values.shape[0]}"
            )
        check_units(values, self, source, plausibility)
        shape = (-1,) + (1,) * (values.ndim - 1)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return ((values.astype(np.float32) - mean) / std).astype(np.float32)


# Sentinel-2 MSI central wavelengths (µm, S2A; ESA Sentinel-2 User Handbook), by band name
S2_WAVELENGTHS = {
    "B1": 0.443, "B2": 0.490, "B3": 0.560, "B4": 0.665, "B5": 0.705, "B6": 0.740, "B7": 0.783,
    "B8": 0.842, "B8A": 0.865, "B9": 0.945, "B10": 1.375, "B11": 1.610, "B12": 2.190,
}  # fmt: skip
S1_WAVELENGTH = 299_792_458 / 5.405e9 * 1e6  # C band, 5.405 GHz → 55,466 µm (5.55 cm)

HR_RGB = Sensor(
    name="hr",
    bands=("red", "green", "blue"),
    units="DN 0-255",
    mean=(123.675, 116.28, 103.53),  # ImageNet statistics on the 0-255 scale
    std=(58.395, 57.12, 57.375),
    valid_range=(0.0, 255.0),
    wavelengths=(0.665, 0.560, 0.490),  # nominal: aerial/VHR cameras differ slightly
)
HR_RGBN = Sensor(
    name="hr",
    bands=("red", "green", "blue", "nir"),
    units="DN 0-255",
    mean=(123.675, 116.28, 103.53, 123.675),  # NIR: red's statistics, as the official RGB+NIR converter does
    std=(58.395, 57.12, 57.375, 58.395),
    valid_range=(0.0, 255.0),
    wavelengths=(0.665, 0.560, 0.490, 0.842),
)
S2_L2A = Sensor(
    name="s2",
    bands=("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
    units="reflectance x 1e4 (DN)",
    mean=(884.3, 1144.2, 1297.5, 1624.9, 2194.6, 2422.2, 2517.8, 2581.6, 2368.5, 1805.1),
    std=(1155.2, 1183.6, 1368.1, 1370.3, 1355.6, 1416.5, 1474.8, 1439.3, 1455.5, 1343.5),
    valid_range=(0.0, 30000.0),
    wavelengths=tuple(S2_WAVELENGTHS[b] for b in ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")),
)
S1_GRD = Sensor(
    name="s1",
    bands=("VV", "VH"),
    units="dB",
    mean=(-12.55, -20.19),
    std=(5.26, 5.91),
    valid_range=(-80.0, 40.0),
    wavelengths=(S1_WAVELENGTH, S1_WAVELENGTH),
)

S2_L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_L1C = Sensor(
    name="s2",
    bands=S2_L1C_BANDS,
    units="TOA reflectance x 1e4 (DN)",
    # SSL4EO-S12 v1.0 L1C ("S2C") statistics over 50k patches (Wang et al. 2022), for 13-band use; the model's
    # 10-band S2 encoder takes L1C through to_model (band selection), normalised with S2_L2A's statistics
    mean=(1605.6, 1390.8, 1314.9, 1363.5, 1549.4, 2091.7, 2371.7, 2299.9, 2560.3, 830.1, 22.1, 2177.1, 1524.1),
    std=(786.8, 850.3, 875.1, 1138.8, 1122.2, 1161.6, 1274.4, 1248.4, 1345.5, 577.3, 51.2, 1336.1, 1136.5),
    valid_range=(0.0, 30000.0),
    wavelengths=tuple(S2_WAVELENGTHS[b] for b in S2_L1C_BANDS),
    model_sensor="s2_l2a",
)
S1_GRD_LINEAR = Sensor(
    name="s1",
    bands=("VV", "VH"),
    units="linear power (sigma0)",
    mean=(),  # no statistics: the model reads dB (to_model applies linear_to_db)
    std=(),
    valid_range=(0.0, 1e4),
    wavelengths=(S1_WAVELENGTH, S1_WAVELENGTH),
    model_sensor="s1_grd",
)

SENSORS: dict[str, Sensor] = {
    "hr_rgb": HR_RGB,
    "hr_rgbn": HR_RGBN,
    "s2_l2a": S2_L2A,
    "s2_l1c": S2_L1C,
    "s1_grd": S1_GRD,
    "s1_grd_linear": S1_GRD_LINEAR,
}


# STAC ``eo:bands`` common names (and two widespread aliases) of the Sentinel-2 bands
S2_COMMON_NAMES = {
    "coastal": "B1", "blue": "B2", "green": "B3", "red": "B4", "rededge1": "B5", "rededge2": "B6", "rededge3": "B7",
    "nir": "B8", "nir08": "B8A", "nir09": "B9", "cirrus": "B10", "swir16": "B11", "swir22": "B12",
    "swir1": "B11", "swir2": "B12",
}  # fmt: skip
_S2_CODES = {"B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"}
_S1_POLARISATIONS = ("VV", "VH", "HH", "HV")


def canonical_band_name(name: str | None) -> str | None:
    """A Sentinel band's identity from a band name as files and catalogues write it, or None when the name says
    nothing: B-codes zero-padded or not ("B02", "b8a" → "B2", "B8A"), STAC common names ("red" → "B4", "nir08" →
    "B8A", "swir16" → "B11"), polarisations ("VV", "sigma0_vh", "VH_dB" → "VH")."""
    if not name:
        return None
    key = re.sub(r"[\s_\-.]+", "", name.strip().lower())
    code = re.fullmatch(r"(?:band)?b0*(\d{1,2}a?)", key)
    if code and f"B{code.group(1).upper()}" in _S2_CODES:
        return f"B{code.group(1).upper()}"
    if key in S2_COMMON_NAMES:
        return S2_COMMON_NAMES[key]
    tokens = set(re.split(r"[\s_\-.]+", name.strip().upper()))
    found = [p for p in _S1_POLARISATIONS if p in tokens]
    return found[0] if len(found) == 1 else None


def get_sensor(key: str) -> Sensor:
    """The sensor registered under ``key`` in :data:`SENSORS` (e.g. "s2_l1c")."""
    if key not in SENSORS:
        raise KeyError(f"unknown sensor {key!r}; known: {sorted(SENSORS)}")
    return SENSORS[key]


# below this many finite values the plausibility checks of check_units say nothing (a tiny crop can be all dark)
_PLAUSIBILITY_MIN_VALUES = 100


LINEAR_POWER_SHARE = 0.99  # a share of values >= 0 that says linear power (dB backscatter is mostly negative)


def check_units(values: np.ndarray, sensor: Sensor, source: str = "input", plausibility: bool = True) -> None:
    """Refuse values that cannot be in ``sensor``'s units; NaN is ignored.

    Checks, in order: every finite value lies in ``sensor.valid_range``; then, with at least 100 finite values,
    plausibility: reflectance ×1e4 whose maximum is ≤ 1.5 (reflectance on a 0–1 scale), dB values that are almost
    all ≥ 0 (linear power), and 0–255 DN whose maximum is ≤ 1 (an image already scaled to 0–1).

    Args:
        values: (C, ...) raw values.
        sensor: the sensor they claim to come from.
        source: the file or sample named in the error.
        plausibility: also run the plausibility checks (off for one tile of a scene, which can be legitimately
            dark; the scene as a whole is checked instead).

    Raises:
        ValueError: naming ``source``, the values' span and the expected units.
    """
    finite = values[np.isfinite(values)]
    if not finite.size:
        return
    low, high = float(finite.min()), float(finite.max())
    if low < sensor.valid_range[0] or high > sensor.valid_range[1]:
        raise ValueError(
            f"{source}: {sensor.name} values span [{low:g}, {high:g}], outside the range "
            f"{list(sensor.valid_range)} expected for {sensor.units}; check the units (see skysense.data.sensors)"
        )
    if not plausibility or finite.size < _PLAUSIBILITY_MIN_VALUES:
        return
    hint = None
    if "x 1e4" in sensor.units and high <= 1.5:
        hint = "this looks like reflectance on a 0-1 scale: multiply by 10000"
    elif sensor.units == "dB" and float(np.mean(finite >= 0)) > LINEAR_POWER_SHARE:
        hint = "almost all values are >= 0 dB, which looks like linear power: convert with linear_to_db"
    elif sensor.units == "DN 0-255" and high <= 1.0:
        hint = "this looks like an image already scaled to 0-1: give the 0-255 values"
    if hint:
        raise ValueError(f"{source}: {sensor.name} values span [{low:g}, {high:g}] in {sensor.units}; {hint}")


def to_model(values: np.ndarray, sensor: Sensor, source: str = "input") -> tuple[np.ndarray, Sensor]:
    """Convert values of a source format to the model sensor it stands for: S2 L1C (13, ...) → the 10 model bands
    (:data:`S2_L2A` order, TOA values kept), linear S1 → dB. Model sensors pass through unchanged.

    Returns:
        (values, model sensor).
    """
    if sensor.model_sensor is None:
        return values, sensor
    if sensor is S2_L1C or sensor.bands == S2_L1C_BANDS:
        return s2_l1c_to_model_bands(values, source), SENSORS[sensor.model_sensor]
    if sensor.units.startswith("linear"):
        return linear_to_db(values, source), SENSORS[sensor.model_sensor]
    raise ValueError(f"{source}: no conversion from {sensor.units} to {sensor.model_sensor}")


def s2_l1c_to_model_bands(values: np.ndarray, source: str = "input") -> np.ndarray:
    """Select the model's 10 bands (drop B1, B9, B10) from a 13-band L1C stack (13, ...) in L1C order."""
    if values.shape[0] != len(S2_L1C_BANDS):
        raise ValueError(f"{source}: expected the 13 L1C bands {list(S2_L1C_BANDS)}, got {values.shape[0]} bands")
    return values[[S2_L1C_BANDS.index(band) for band in S2_L2A.bands]]


def linear_to_db(values: np.ndarray, source: str = "input") -> np.ndarray:
    """Linear backscatter (σ⁰, > 0) → dB. Refuses negative values, which mean the data is not linear power."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0:
        raise ValueError(f"{source}: negative values ({finite.min():g}) cannot be linear backscatter; already dB?")
    with np.errstate(divide="ignore"):
        return (10.0 * np.log10(values)).astype(np.float32)
