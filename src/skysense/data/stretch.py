"""A linear stretch of HR values that are not 8-bit (11-, 12- or 16-bit DN) onto the 0–255 DN the HR encoder's
statistics describe: scene inference's ``--hr-range`` and :class:`~skysense.data.manifest.ManifestDataset`'s
``hr_range``. Written by hand: a clip and a scale, with the per-band form and the tag text skysense writes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skysense.errors import UsageError


def checked_range(values: Sequence[float], option: str, form: str, alternative: str = "") -> tuple[float, float]:
    """``(low, high)`` from a user's range option, refused in one line naming ``option`` unless it is two finite
    numbers with low < high (``form``: how to give it, e.g. "LOW,HIGH" or "[low, high]"; ``alternative``: what
    else the option takes, e.g. "auto").

    Raises:
        UsageError: naming the option, what was given and what to give.
    """
    values = list(values)
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        given = values
    else:
        if np.isfinite(low) and np.isfinite(high) and low < high:
            return low, high
        given = f"{low:g},{high:g}"
    other = f", or {alternative}" if alternative else ""
    raise UsageError(f"{option}: {given}; give {form} with low < high (e.g. 0,2047 for 11-bit DN){other}")


class HRStretch:
    """A linear stretch of HR values onto 0–255, clipped (``--hr-range``): per band ``low`` → 0, ``high`` → 255.

    Args:
        low, high: (C,) values per band (or scalars for every band).
    """

    def __init__(self, low: np.ndarray | float, high: np.ndarray | float) -> None:
        self.low = np.asarray(low, dtype=np.float32).reshape(-1, 1, 1) if np.ndim(low) else np.float32(low)
        self.high = np.asarray(high, dtype=np.float32).reshape(-1, 1, 1) if np.ndim(high) else np.float32(high)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """(C, ...) values → (C, ...) float32 in [0, 255] (NaN stays NaN)."""
        shape = values.shape
        flat = values.reshape(shape[0], -1, 1) if values.ndim == 2 else values
        scaled = (flat.astype(np.float32) - self.low) * (255.0 / (self.high - self.low))
        return np.clip(scaled, 0.0, 255.0).reshape(shape)

    def describe(self) -> str:
        """The stretch as written into the output's tags: "low,high" or "low1,low2,…;high1,high2,…"."""
        if np.ndim(self.low) == 0:
            return f"{float(self.low):g},{float(self.high):g}"
        return ",".join(f"{v:g}" for v in self.low.ravel()) + ";" + ",".join(f"{v:g}" for v in self.high.ravel())
