"""Sensors as data: band names and order, units and default normalisation (values from docs/SKYSENSE.md).

The model's band order is fixed per modality. Conversions users expect are explicit functions here, never guessed:
Sentinel-2 L1C's 13 bands → the model's 10, linear backscatter → dB.
"""

from __future__ import annotations

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
    """

    name: str
    bands: tuple[str, ...]
    units: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    valid_range: tuple[float, float]

    def normalize(self, values: np.ndarray, source: str = "input") -> np.ndarray:
        """(C, ...) raw values in this sensor's units → float32 (values - mean) / std.

        Raises:
            ValueError: if the band count differs or finite values lie outside ``valid_range`` (wrong units),
                naming ``source``.
        """
        if values.shape[0] != len(self.bands):
            raise ValueError(
                f"{source}: expected {len(self.bands)} bands {list(self.bands)} for {self.name}, got {values.shape[0]}"
            )
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            if low < self.valid_range[0] or high > self.valid_range[1]:
                raise ValueError(
                    f"{source}: {self.name} values span [{low:g}, {high:g}], outside the range "
                    f"{list(self.valid_range)} expected for {self.units}; check the units (see skysense.data.sensors)"
                )
        shape = (-1,) + (1,) * (values.ndim - 1)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return ((values.astype(np.float32) - mean) / std).astype(np.float32)


HR_RGB = Sensor(
    name="hr",
    bands=("red", "green", "blue"),
    units="DN 0-255",
    mean=(123.675, 116.28, 103.53),  # ImageNet statistics on the 0-255 scale
    std=(58.395, 57.12, 57.375),
    valid_range=(0.0, 255.0),
)
HR_RGBN = Sensor(
    name="hr",
    bands=("red", "green", "blue", "nir"),
    units="DN 0-255",
    mean=(123.675, 116.28, 103.53, 123.675),  # NIR: red's statistics, as the official RGB+NIR converter does
    std=(58.395, 57.12, 57.375, 58.395),
    valid_range=(0.0, 255.0),
)
S2_L2A = Sensor(
    name="s2",
    bands=("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
    units="reflectance x 1e4 (DN)",
    mean=(884.3, 1144.2, 1297.5, 1624.9, 2194.6, 2422.2, 2517.8, 2581.6, 2368.5, 1805.1),
    std=(1155.2, 1183.6, 1368.1, 1370.3, 1355.6, 1416.5, 1474.8, 1439.3, 1455.5, 1343.5),
    valid_range=(0.0, 30000.0),
)
S1_GRD = Sensor(
    name="s1",
    bands=("VV", "VH"),
    units="dB",
    mean=(-12.55, -20.19),
    std=(5.26, 5.91),
    valid_range=(-80.0, 40.0),
)

S2_L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


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
