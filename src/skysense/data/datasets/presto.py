"""Presto's labelled per-pixel monthly Sentinel-1 + Sentinel-2 time series: algae blooms and fuel moisture.

Tseng, Cartuyvels, Zvonkov, Purohit, Rolnick, Kerner: "Lightweight, Pre-trained Transformers for Remote Sensing
Timeseries" (Presto), 2023. Arrays from github.com/nasaharvest/presto @ 13173d02, ``data/<task>/`` (MIT licence).
Label provenance: algae blooms = DrivenData "Tick Tick Bloom" competition labels (cyanobacteria severity 1..5);
fuel moisture = the US National Fuel Moisture Database (live fuel moisture, %).

``npy/s1_s2_era5_srtm.npy`` is float64 (N, T, 18), raw values in Presto's channel order (:data:`PRESTO_BANDS`):
VV, VH (dB) | B2, B3, B4, B5, B6, B7, B8, B8A, B9, B11, B12 (Sentinel-2 L1C reflectance × 1e4) | ERA5 temperature
(K), precipitation | SRTM elevation, slope | NDVI. Each time step is one 30-day export window; ``month.npy`` holds the
(0-based) calendar month in which each window starts. Presto's exporter filled gaps before saving (its
``Engineer.fillna``): there is no NaN, and filled values cannot be told from observed ones, so every pixel is valid.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import torch

from skysense.containers import Sample, TimeSeries
from skysense.data.datasets.base import SkySenseDataset, Transform, grouped_split, require_path, stratified_split
from skysense.data.sensors import S1_GRD, S2_L2A

PRESTO_BANDS = (
    "VV", "VH",
    "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12",
    "temperature_2m", "total_precipitation",
    "elevation", "slope",
    "NDVI",
)  # fmt: skip
S1_CHANNELS = [PRESTO_BANDS.index(band) for band in S1_GRD.bands]  # VV, VH
S2_CHANNELS = [PRESTO_BANDS.index(band) for band in S2_L2A.bands]  # B2..B12 without B9 (not a model band)
DAYS_PER_TIMESTEP = 30  # Presto/CropHarvest export windows
NOMINAL_FIRST_YEAR = 2001  # see PrestoTimeSeries: the year of month-only dates is unknown


def month_dates(months: np.ndarray, first_year: int = NOMINAL_FIRST_YEAR) -> list[dt.date]:
    """The 15th of each (0-based) month, in ascending years: the year goes up by one whenever the month goes down.

    Args:
        months: (T,) 0-based months of consecutive windows.
        first_year: year of the first frame.
    """
    dates, year = [], first_year
    for step, month in enumerate(months.tolist()):
        if step and month < months[step - 1]:
            year += 1
        dates.append(dt.date(year, int(month) + 1, 15))
    return dates


class PrestoTimeSeries(SkySenseDataset):
    """One labelled pixel's monthly S2 and S1 series (base class of :class:`PrestoAlgaeBlooms` and
    :class:`PrestoFuelMoisture`).

    Each sample: ``s2`` a :class:`~skysense.containers.TimeSeries` (T, 10, P, P) of the model's bands B2, B3, B4, B5,
    B6, B7, B8, B8A, B11, B12 in L1C reflectance × 1e4 (B9, Presto's channel 10, is dropped; normalise with
    ``S2_L2A``, the closest published statistics), ``s1`` (T, 2, P, P) VV, VH in dB, both all valid; ``lat``/``lon``
    the pixel's centre from ``latlon.npy``; ``target`` from ``target.npy`` in the task's form. ERA5, SRTM and NDVI
    have no SkySense encoder and are not passed.

    Spatial size: the data is one pixel, but the Sentinel ViT needs at least one patch (4 pixels). ``pixel_size``
    (default 4) repeats the pixel into a homogeneous ``pixel_size``² patch: every value is the real pixel's, nothing
    is interpolated or invented; ``pixel_size=1`` keeps the single pixel.

    Dates: see the subclasses (``date_source`` says which rule a dataset used).

    Splits: "test" = ``is_test.npy`` == 1 (Presto's split); "train"/"val" cut the rest with ``val_fraction`` in a
    seeded SHA-256 order (the subclass says how it groups); "all" = everything.

    Args:
        root: the folder holding ``<task>/npy/`` (e.g. ``../shared/data/presto_s1s2_timeseries``), or the task folder.
        split: "all", "train", "val" or "test".
        val_fraction: share of the non-test samples held out as "val".
        seed: split seed.
        pixel_size: side of the homogeneous patch the pixel is repeated into.
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.
    """

    sensors = {"s2": S2_L2A, "s1": S1_GRD}
    splits = ("all", "train", "val", "test")
    task: str = ""
    date_source: str = "month"

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        val_fraction: float = 0.2,
        seed: int = 0,
        pixel_size: int = 4,
        transforms: Transform | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, split, transforms, download)
        if pixel_size < 1:
            raise ValueError(f"pixel_size must be >= 1, got {pixel_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.pixel_size, self.val_fraction, self.seed = pixel_size, val_fraction, seed
        self.folder = self.root if self.root.name == self.task else self.root / self.task
        npy = require_path(self.folder / "npy", f"Presto {self.task} arrays folder")
        self.array_path = npy / "s1_s2_era5_srtm.npy"
        arrays = self._load_arrays(self.array_path)
        n, steps, channels = arrays.shape
        if channels != len(PRESTO_BANDS):
            raise ValueError(f"{self.array_path}: expected {len(PRESTO_BANDS)} channels {PRESTO_BANDS}, got {channels}")
        self.months = self._load_arrays(npy / "month.npy", (n, steps))
        self.latlon = self._load_arrays(npy / "latlon.npy", (n, 2))
        self.targets = self._load_arrays(npy / "target.npy", (n,))
        self.is_test = self._load_arrays(npy / "is_test.npy", (n,)).astype(bool)
        if ((self.months < 0) | (self.months > 11)).any():
            raise ValueError(f"{npy / 'month.npy'}: months must be 0-based (0..11)")
        self._read_extra(npy, n)
        self.s2 = arrays[..., S2_CHANNELS].astype(np.float32)  # (N, T, 10)
        self.s1 = arrays[..., S1_CHANNELS].astype(np.float32)  # (N, T, 2)
        self.dates = self._frame_dates()

        if split == "all":
            self.indices = np.arange(n)
        elif split == "test":
            self.indices = np.flatnonzero(self.is_test)
        else:
            rest = np.flatnonzero(~self.is_test)
            chosen = self._split_rest(rest, {"train": 1.0 - val_fraction, "val": val_fraction})[split]
            self.indices = rest[chosen]

    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _load_arrays(path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
        require_path(path, "Presto array")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {path}: {err}") from err
        if shape is not None and array.shape != shape:
            raise ValueError(f"{path}: expected shape {shape}, got {array.shape}")
        return array

    def _read_extra(self, npy: Path, n: int) -> None:
        """Read the task's own arrays (ids, sites)."""

    def _frame_dates(self) -> list[list[dt.date]]:
        return [month_dates(months) for months in self.months]

    def _split_rest(self, rest: np.ndarray, fractions: dict[str, float]) -> dict[str, list[int]]:
        raise NotImplementedError

    def _target(self, row: int) -> int | float:
        raise NotImplementedError

    def _id(self, row: int) -> str:
        return str(row)

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> Sample:
        row = int(self.indices[index])
        size = self.pixel_size
        steps = self.s2.shape[1]
        s2 = torch.from_numpy(self.s2[row])[:, :, None, None].expand(-1, -1, size, size).contiguous()  # (T, 10, P, P)
        s1 = torch.from_numpy(self.s1[row])[:, :, None, None].expand(-1, -1, size, size).contiguous()  # (T, 2, P, P)
        valid = torch.ones(steps, size, size, dtype=torch.bool)
        dates = self.dates[row]
        return Sample(
            s2=TimeSeries(s2, list(dates), valid),
            s1=TimeSeries(s1, list(dates), valid.clone()),
            lat=float(self.latlon[row, 0]),
            lon=float(self.latlon[row, 1]),
            target=self._target(row),
            meta={
                "source": str(self.array_path),
                "row": row,
                "id": self._id(row),
                "months": self.months[row].tolist(),
                "date_source": self.date_source,
            },
        )


class PrestoAlgaeBlooms(PrestoTimeSeries):
    """Algae blooms (Tick Tick Bloom, US Midwest): 12 monthly windows ending at the sampling date, 5 classes.

    Target: int class 0..4 = cyanobacteria severity 1..5 of ``target.npy`` minus one (index in :attr:`classes`).

    Dates: only the windows' start months are stored (the competition's ``metadata.csv`` with the sampling dates is
    not shipped), so frame ``t`` is dated the 15th of its month. The year is unknown: the first frame gets the nominal
    year 2001 (before Sentinel, so it cannot be mistaken for a real one) and the year increases whenever the month
    goes down. The model only reads the calendar day (:func:`~skysense.containers.day_of_year_index`), so
    the nominal year changes nothing but the frames' order, which it keeps. Each month's window starts somewhere in
    that month and lasts 30 days, so the true window centres lie 0–30 days after the date given here (and two windows
    can start in the same month: their frames then share a date).

    Splits: "val" is stratified by class (severity 5 has only 6 samples), cut in a seeded hash order of the ``uid``.
    """

    task = "algae_blooms"
    classes = ("severity 1", "severity 2", "severity 3", "severity 4", "severity 5")
    date_source = "month"

    def _read_extra(self, npy: Path, n: int) -> None:
        self.uids = self._load_arrays(npy / "uid.npy", (n,))
        bad = np.setdiff1d(np.unique(self.targets), np.arange(1, len(self.classes) + 1))
        if bad.size:
            raise ValueError(f"{npy / 'target.npy'}: severities must be 1..{len(self.classes)}, found {bad.tolist()}")

    def _split_rest(self, rest: np.ndarray, fractions: dict[str, float]) -> dict[str, list[int]]:
        return stratified_split([str(self.uids[i]) for i in rest], self.targets[rest].tolist(), fractions, self.seed)

    def _target(self, row: int) -> int:
        return int(self.targets[row]) - 1

    def _id(self, row: int) -> str:
        return str(self.uids[row])


class PrestoFuelMoisture(PrestoTimeSeries):
    """Live fuel moisture (western US): 3 monthly windows ending at the measurement date; regression.

    Target: float, live fuel moisture in percent of dry weight (``target.npy``).

    Dates: real. ``single_file_labels.geojson`` (shipped with the task) holds each measurement's date; Presto built
    its arrays from that file's rows dated after 2015-09-24, in order, skipping rows without imagery. We replay that
    walk, matching each array row to its label row by site and target, and check that the windows it implies
    (start = date − 90 days, then every 30 days) start in exactly the months of ``month.npy`` and that the
    coordinates agree; a mismatch raises. Frame ``t`` is dated at the centre of its window, start + 30·t + 15 days.
    Without the GeoJSON the month rule of :class:`PrestoAlgaeBlooms` is used instead (``date_source`` = "month").

    Splits: Presto's "test" holds out whole sites; "val" does the same: sites, in a seeded hash order, go to "val"
    until it holds ``val_fraction`` of the non-test samples, so no site is in both "train" and "val".
    """

    task = "fuel_moisture"
    labels_file = "single_file_labels.geojson"
    first_export_date = dt.date(2015, 9, 24)  # Presto's MIN_EXPORT_DATE: labels on or before it were not exported

    def _read_extra(self, npy: Path, n: int) -> None:
        self.sites = self._load_arrays(npy / "site.npy", (n,))

    def _frame_dates(self) -> list[list[dt.date]]:
        path = self.folder / self.labels_file
        if not path.is_file():
            self.date_source = "month"
            return super()._frame_dates()
        self.date_source = "label_date"
        try:
            features = json.loads(path.read_text())["features"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{path}: not a GeoJSON FeatureCollection: {err}") from err
        labels = []
        for feature in features:
            props = feature["properties"]
            date = dt.datetime.fromisoformat(props["date"]).date()
            if date > self.first_export_date:
                labels.append((props["site"], float(props["percent(t)"]), date, feature["geometry"]["coordinates"]))
        steps = self.months.shape[1]
        dates, cursor = [], 0
        for row in range(len(self.sites)):
            site, target = str(self.sites[row]), float(self.targets[row])
            while cursor < len(labels) and not (labels[cursor][0] == site and abs(labels[cursor][1] - target) < 1e-6):
                cursor += 1
            if cursor == len(labels):
                raise ValueError(f"{self.array_path} row {row} ({site}, {target}) has no matching label in {path}")
            _, _, end, (lon, lat) = labels[cursor]
            cursor += 1
            start = end - dt.timedelta(days=DAYS_PER_TIMESTEP * steps)
            window_starts = [start + dt.timedelta(days=DAYS_PER_TIMESTEP * t) for t in range(steps)]
            if [d.month - 1 for d in window_starts] != self.months[row].tolist() or (
                max(abs(lat - self.latlon[row, 0]), abs(lon - self.latlon[row, 1])) > 1e-3
            ):
                raise ValueError(
                    f"{self.array_path} row {row}: the label {site} of {end} in {path} does not reproduce the stored "
                    f"months {self.months[row].tolist()} or coordinates {self.latlon[row].tolist()}"
                )
            dates.append([d + dt.timedelta(days=DAYS_PER_TIMESTEP // 2) for d in window_starts])
        return dates

    def _split_rest(self, rest: np.ndarray, fractions: dict[str, float]) -> dict[str, list[int]]:
        return grouped_split([str(self.sites[i]) for i in rest], fractions, self.seed)

    def _target(self, row: int) -> float:
        return float(self.targets[row])

    def _id(self, row: int) -> str:
        return f"{self.sites[row]}#{row}"
