"""A Dataset over a manifest: one :class:`~skysense.containers.Sample` per sample id, read with
:mod:`skysense.data.raster` and :func:`skysense.data.series.read_time_series` (the same series reader scene inference
uses).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.transform import Affine
from rasterio.windows import Window
from torch.utils.data import Dataset

from skysense.containers import Grid, Sample
from skysense.data.datasets.base import check_fractions, cut_in_order, hash_order
from skysense.data.dates import check_series_dates
from skysense.data.manifest.products import product_of
from skysense.data.manifest.schema import PRODUCT_DRIVERS, SPLITS, ManifestEntry, read_manifest
from skysense.data.raster import (
    RasterInfo,
    coregistered_grids,
    hr_bands_from_tags,
    raster_info,
    read_raster,
    reproject_to_grid,
    sensor_bands,
)
from skysense.data.sensors import HR_RGB, S1_GRD, S2_L1C, S2_L2A, SENSORS, Sensor
from skysense.data.series import read_time_series
from skysense.data.stretch import HRStretch, checked_range
from skysense.errors import InputError, UsageError


def _auto_s2_sensor(info: RasterInfo) -> Sensor:
    """S2 L1C for 13-band files, else the model's L2A bands (selected by name or count)."""
    return S2_L1C if len(info.data_bands) == 13 else S2_L2A


@dataclass
class _Group:
    sample: str
    files: dict[str, list[ManifestEntry]] = field(default_factory=dict)


DEFAULT_SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


class ManifestDataset(Dataset):
    """One :class:`~skysense.containers.Sample` per sample id of a manifest, in sensor units.

    Per sample: the HR image (one file; a second dated HR file becomes ``hr_t2``), the S2 and S1 time series read
    onto the Sentinel grid co-registered with the HR image (:func:`~skysense.data.raster.coregistered_grids`,
    ``ratio`` HR pixels per Sentinel pixel; without an HR image, the earliest S2 (else S1) file's grid), the label
    (one single-band file, on the HR grid, else the Sentinel grid) as a long (H, W) target with ``ignore_index``
    where invalid, latitude/longitude of the grid's centre, and dates from the manifest (or the files).

    Args:
        manifest: a manifest file or its entries.
        ratio: HR pixels per Sentinel pixel (32 for 0.3 m HR and ~10 m Sentinel).
        crop: crop HR images whose size is not a multiple of ``ratio`` (top-left part) instead of refusing them.
        transforms: callable ``Sample -> Sample`` applied to every sample (e.g. Normalize then FillInvalid).
        hr_sensor, s2_sensor, s1_sensor: the sensors the files hold (HR default RGB: pass
            :data:`~skysense.data.sensors.HR_RGBN` for 4-band RGB+NIR; alpha bands are masks, not bands; S1 default
            GRD in dB; :data:`~skysense.data.sensors.S1_GRD_LINEAR` for linear power); ``s2_sensor=None`` picks by
            band count: L1C for 13 bands, else the L2A model bands. Source formats (L1C, linear S1) are converted to
            the model's (:func:`~skysense.data.sensors.to_model`).
        label_nodata: a label value meaning "no data" when the file does not declare one (Sen1Floods11: -1).
        ignore_index: target value of invalid label pixels.
        resampling: for S2/S1 values placed on the Sentinel grid (labels always use nearest).
        samples: only these sample ids (default: every sample with an hr, s2 or s1 file).
        allow_duplicate_dates: keep S2 (or S1) files of one sample that share a date as separate frames; by default
            such a sample is refused, as is a date after today (:func:`~skysense.data.dates.check_series_dates`,
            checked on the manifest's dates when the dataset is made, and on the files' dates when read).
        split: "all" (every sample), or "train", "val", "test": the samples of that split. A manifest whose
            ``split`` column names splits (``skysense data index`` fills it from ``train/``, ``val/``, ``test/``
            folders; it can be edited) is split by it, and samples it leaves empty belong to no split (a warning
            counts them). A manifest without any is split by ``split_fractions``: the samples in a seeded hash order
            of their ids (:func:`~skysense.data.datasets.base.hash_order`) cut at the rounded fractions. A split
            without any sample is refused, naming the split.
        split_fractions: train/val/test fractions for a manifest without a ``split`` column.
        seed: the seed of that hash order.
        chip_size: cut each sample into chips of this many pixels (of its HR grid, else its Sentinel grid; a
            multiple of ``ratio`` with an HR image) that tile it, the last row and column shifted inwards to stay
            whole: one item per chip, each read as a window (a large scene is never read whole). Default: one item
            per sample. A sample smaller than a chip is refused by name. The chips of a sample share its split.
        hr_range: (low, high): HR values that become 0 and 255 (a linear stretch, clipped), for HR imagery that is
            not 8-bit (11-bit DN: ``(0, 2047)``); the same for every sample, as scene inference's ``--hr-range``.
        label_values: the label files' values in class order (``[0, 255]`` for a binary mask stored 0/255:
            255 becomes class 1). Valid label pixels holding another value are refused, naming the file and the
            values. Default: the values are the class indices.

    Attributes:
        sensors: the model sensors of "hr", "s2", "s1" (what :class:`~skysense.data.transforms.Normalize` needs).
        sample_ids: the samples, in order.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[ManifestEntry],
        *,
        ratio: int = 32,
        crop: bool = False,
        transforms: Callable[[Sample], Sample] | None = None,
        hr_sensor: Sensor | str = HR_RGB,
        s2_sensor: Sensor | str | None = None,
        s1_sensor: Sensor | str = S1_GRD,
        label_nodata: float | None = None,
        ignore_index: int = -1,
        resampling: str = "bilinear",
        samples: Sequence[str] | None = None,
        allow_duplicate_dates: bool = False,
        split: str = "all",
        split_fractions: Mapping[str, float] | None = None,
        seed: int = 0,
        label_values: Sequence[float] | None = None,
        hr_range: Sequence[float] | None = None,
        chip_size: int | None = None,
    ) -> None:
        entries = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
        self.source = str(manifest) if isinstance(manifest, (str, Path)) else "manifest entries"
        hr_sensor, s1_sensor = _sensor(hr_sensor, "hr_sensor"), _sensor(s1_sensor, "s1_sensor")
        s2_sensor = None if s2_sensor is None else _sensor(s2_sensor, "s2_sensor")
        if split not in self.splits:
            raise UsageError(f"{self.source}: split {split!r}; give one of {', '.join(self.splits)}")
        self.split = split
        self.hr_stretch = (
            HRStretch(*checked_range(hr_range, "hr_range", "[low, high]")) if hr_range is not None else None
        )
        groups: dict[str, _Group] = {}
        for entry in entries:
            if not entry.sample:
                raise InputError(f"{self.source}: {entry.path} has no sample id (index the folder first)")
            groups.setdefault(entry.sample, _Group(entry.sample)).files.setdefault(entry.modality, []).append(entry)
        if samples is None:
            samples = [s for s, g in groups.items() if any(m in g.files for m in ("hr", "s2", "s1"))]
        missing = [s for s in samples if s not in groups]
        if missing:
            raise KeyError(f"{self.source}: no sample {missing[:5]} (of {len(missing)} missing) in the manifest")
        if split != "all":
            samples = self._split_samples(groups, list(samples), split, split_fractions, seed)
        self.groups = groups
        self.sample_ids = list(samples)
        self.allow_duplicate_dates = allow_duplicate_dates
        undated = [str(e.path) for s in self.sample_ids for m in ("s2", "s1") for e in groups[s].files.get(m, [])
                   if e.date is None]  # fmt: skip
        if undated:  # refused here, not at the first sample: a series needs each frame's day of year
            raise InputError(
                f"{self.source}: {len(undated)} Sentinel files have no date ({', '.join(undated[:3])}"
                f"{', …' * (len(undated) > 3)}); index the folder again with --filename-regex or --sidecar "
                "(skysense data index), or fill the manifest's date column"
            )
        for sample_id in self.sample_ids:
            for name in ("s2", "s1"):
                series = sorted(groups[sample_id].files.get(name, []), key=_by_date)
                check_series_dates(
                    [e.date for e in series],
                    [e.path for e in series],
                    allow_duplicates=allow_duplicate_dates,
                    what=f"the {name} series of sample {sample_id!r} of {self.source}",
                )
        self.ratio, self.crop, self.transforms = ratio, crop, transforms
        self.hr_sensor, self.s2_sensor, self.s1_sensor = hr_sensor, s2_sensor, s1_sensor
        self.label_nodata, self.ignore_index, self.resampling = label_nodata, ignore_index, resampling
        self.label_values = None if label_values is None else [float(v) for v in label_values]
        # the classes a task must have: one per listed value (unknown without label_values)
        self.classes = tuple(f"{v:g}" for v in self.label_values) if self.label_values is not None else ()
        if self.label_values is not None and len(set(self.label_values)) != len(self.label_values):
            raise UsageError(f"label_values {list(label_values or [])} lists a value twice; list each value once")
        model = {"hr": hr_sensor, "s2": s2_sensor, "s1": s1_sensor}
        self.sensors = {k: (SENSORS[s.model_sensor] if s and s.model_sensor else s) for k, s in model.items()}
        if self.sensors["s2"] is None:
            self.sensors["s2"] = S2_L2A  # both automatic choices end in the model's L2A bands
        self.chip_size = chip_size
        self.items: list[tuple[str, tuple[int, int] | None]] = [(s, None) for s in self.sample_ids]
        if chip_size is not None:
            self.items = [(s, origin) for s in self.sample_ids for origin in self._chips(s, chip_size)]

    splits = ("all", *SPLITS)

    def _split_samples(
        self,
        groups: dict[str, _Group],
        samples: list[str],
        split: str,
        fractions: Mapping[str, float] | None,
        seed: int,
    ) -> list[str]:
        """The samples of ``split``: by the manifest's ``split`` column when it names any, else by a seeded hash
        split of the sample ids (see the class docstring)."""
        named: dict[str, str] = {}
        for sample_id in samples:
            found = {e.split for es in groups[sample_id].files.values() for e in es if e.split}
            if len(found) > 1:
                raise InputError(
                    f"{self.source}: sample {sample_id!r} has files in the splits {', '.join(sorted(found))}; give "
                    "all its files one split (the manifest's split column)"
                )
            if found:
                named[sample_id] = found.pop()
        if named:
            unassigned = len(samples) - len(named)
            if unassigned:
                warnings.warn(
                    f"{self.source}: {unassigned} of {len(samples)} samples have no split in the manifest's split "
                    "column and belong to no split (only to 'all'); fill the column to use them",
                    stacklevel=3,
                )
            chosen = [s for s in samples if named.get(s) == split]
            if not chosen:
                counts = Counter(named.values())
                raise InputError(
                    f"{self.source}: no sample of split {split!r} (its split column: "
                    f"{', '.join(f'{k} {counts[k]}' for k in self.splits if counts[k])}); fill the column for some "
                    f"samples, or leave the {split} split out (a data module's {split}_split: null)"
                )
            return chosen
        fractions = check_fractions(fractions if fractions is not None else DEFAULT_SPLIT_FRACTIONS)
        unknown = sorted(set(fractions) - set(self.splits[1:]))
        if unknown:
            raise UsageError(f"split_fractions names {unknown}; name only train, val and test")
        chosen = sorted(cut_in_order(hash_order(samples, seed), fractions).get(split, []))
        if not chosen:
            raise InputError(
                f"{self.source}: split_fractions {fractions} leave no sample of its {len(samples)} for split "
                f"{split!r}; raise that fraction, or leave the {split} split out (a data module's {split}_split: null)"
            )
        return [samples[i] for i in chosen]

    def _chips(self, sample_id: str, chip: int) -> list[tuple[int, int]]:
        """The (row, col) origins of the chips of ``sample_id`` on its reference grid (see ``chip_size``)."""
        files = self.groups[sample_id].files
        hr = sorted(files.get("hr", []), key=_by_date)
        reference = hr[0] if hr else sorted(files.get("s2", []) + files.get("s1", []), key=_by_date)[0]
        height, width = reference.height, reference.width
        if hr:
            if chip % self.ratio:
                raise UsageError(f"chip_size {chip} is not a multiple of ratio {self.ratio}; give a multiple")
            if self.crop:
                height, width = height // self.ratio * self.ratio, width // self.ratio * self.ratio
        if chip < 1 or height < chip or width < chip:
            raise InputError(
                f"sample {sample_id!r} of {self.source}: {reference.path} is {height}×{width} pixels, smaller than "
                f"chip_size {chip}; give a smaller chip_size, or leave the sample out"
            )

        def starts(size: int) -> list[int]:
            return sorted({*range(0, size - chip + 1, chip), size - chip})

        return [(row, col) for row in starts(height) for col in starts(width)]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        split = "" if self.split == "all" else f", split {self.split!r}"
        return f"ManifestDataset({self.source}{split}, {len(self)} samples, ratio {self.ratio})"

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(*self.items[index])
        return self.transforms(sample) if self.transforms is not None else sample

    def load(self, sample_id: str, chip: tuple[int, int] | None = None) -> Sample:
        """The sample ``sample_id`` (or its chip of ``chip_size`` pixels at (row, col) of its reference grid), before
        transforms."""
        group = self.groups[sample_id]
        files = group.files
        where = f"sample {sample_id!r} of {self.source}"
        item = sample_id if chip is None else f"{sample_id}@{chip[0]},{chip[1]}"
        meta: dict[str, Any] = {
            "id": item,
            "source": item,
            "files": {m: [str(e.path) for e in sorted(es, key=_by_date)] for m, es in files.items()},
        }
        hr_entries = sorted(files.get("hr", []), key=_by_date)
        if len(hr_entries) > 2:
            raise InputError(
                f"{where}: {len(hr_entries)} HR files {[str(e.path) for e in hr_entries]}; expected one (or two "
                "dates for change detection)"
            )
        if len(files.get("label", [])) > 1:
            raise InputError(f"{where}: {len(files['label'])} label files {meta['files']['label']}; expected one")
        hr = hr_valid = hr_t2 = hr_date = None
        hr_grid = sentinel_grid = None
        if hr_entries:
            info = raster_info(hr_entries[0].path)
            hr_grid, sentinel_grid = coregistered_grids(info, self.ratio, self.crop)
            hr_window = _top_left(hr_grid.shape)
            if chip is not None:
                hr_window = Window(chip[1], chip[0], self.chip_size, self.chip_size)
                hr_grid = _subgrid(hr_grid, hr_window)
                sentinel_grid = _subgrid(sentinel_grid, _scaled(hr_window, self.ratio))
            sensor = self.hr_sensor
            raster = read_raster(info.path, _hr_bands(info, sensor), hr_window)
            values, valid = self._stretched(raster.values), raster.valid
            hr = torch.from_numpy(values)
            hr_valid = torch.from_numpy(valid.all(axis=0))
            hr_date = hr_entries[0].date
            if len(hr_entries) == 2:
                second = raster_info(hr_entries[1].path)
                bands = _hr_bands(second, sensor)
                if hr_grid.crs is not None:
                    other = reproject_to_grid(second.path, hr_grid.crs, hr_grid.transform, hr_grid.shape, bands=bands)
                else:
                    other = read_raster(second.path, bands, hr_window)
                if other.values.shape != values.shape:
                    raise InputError(
                        f"{where}: the second HR image {second.path} has shape {other.values.shape}, expected "
                        f"{values.shape}"
                    )
                hr_t2 = torch.from_numpy(self._stretched(other.values))
                hr_valid = hr_valid & torch.from_numpy(other.valid.all(axis=0))
        series = {}
        for name in ("s2", "s1"):
            entries = sorted(files.get(name, []), key=_by_date)
            if not entries:
                continue
            frames = [product_of(e) if e.driver in PRODUCT_DRIVERS else e.path for e in entries]
            if sentinel_grid is None:
                first = frames[0]
                sentinel_grid = raster_info(first).grid if isinstance(first, Path) else first.grid()
                if chip is not None:
                    sentinel_grid = _subgrid(sentinel_grid, Window(chip[1], chip[0], self.chip_size, self.chip_size))
            elif sentinel_grid.crs is None:
                raise InputError(
                    f"{where}: the HR image {hr_entries[0].path} has no CRS, so the {name} files cannot be "
                    "co-registered with it"
                )
            if name == "s1":
                sensor = self.s1_sensor
            elif self.s2_sensor is not None:
                sensor = self.s2_sensor
            elif isinstance(frames[0], Path):
                sensor = _auto_s2_sensor(raster_info(frames[0]))
            else:
                sensor = SENSORS[frames[0].sensor or "s2_l2a"]  # a STAC Item that does not say its level
            dates = [e.date for e in entries]
            series[name] = read_time_series(
                frames,
                grid=sentinel_grid,
                sensor=sensor,
                dates=None if any(d is None for d in dates) else dates,
                resampling=self.resampling,
                allow_duplicate_dates=self.allow_duplicate_dates,
            )
        valid_anywhere = (hr_valid is not None and bool(hr_valid.any())) or any(
            series_.valid is not None and bool(series_.valid.any()) for series_ in series.values()
        )
        if (hr_entries or series) and not valid_anywhere:
            inputs = [path for m in ("hr", "s2", "s1") for path in meta["files"].get(m, [])]
            raise InputError(
                f"{where}: no valid pixel in any input ({', '.join(inputs)}: all nodata); nothing can be learnt or "
                "predicted from it: delete its rows from the manifest, or replace its files"
            )
        target = None
        if files.get("label"):
            label_entry = files["label"][0]
            grid = hr_grid or sentinel_grid
            if grid is None:
                raise InputError(f"{where}: a label {label_entry.path} but no HR, S2 or S1 image to place it on")
            if grid.crs is not None:
                label = reproject_to_grid(
                    label_entry.path, grid.crs, grid.transform, grid.shape, "nearest", nodata=self.label_nodata
                )
            else:
                window = _top_left(grid.shape) if chip is None else Window(chip[1], chip[0], *grid.shape[::-1])
                label = read_raster(label_entry.path, None, window, nodata=self.label_nodata)
            if label.values.shape[0] != 1:
                raise InputError(f"{where}: label {label_entry.path} has {label.values.shape[0]} bands, expected 1")
            classes = np.where(label.valid[0], self._classes(label.values[0], label.valid[0], label_entry.path),
                               self.ignore_index)  # fmt: skip
            target = torch.from_numpy(classes.astype(np.int64))
        lat = lon = None
        grid = hr_grid or sentinel_grid
        if grid is not None and grid.crs is not None:
            lat, lon = grid.center_lat_lon()
            # where the sample lies, for outputs written as GeoTIFFs (skysense.tasks.writer.PredictionWriter)
            meta["grid"] = {"crs": grid.crs.to_wkt(), "transform": list(grid.transform)[:6], "height": grid.height,
                            "width": grid.width}  # fmt: skip
        return Sample(
            hr=hr,
            hr_valid=hr_valid,
            hr_date=hr_date,
            hr_t2=hr_t2,
            s2=series.get("s2"),
            s1=series.get("s1"),
            lat=lat,
            lon=lon,
            target=target,
            meta=meta,
        )

    def _stretched(self, values: np.ndarray) -> np.ndarray:
        """HR values through ``hr_range``'s stretch (as they are without one)."""
        return values if self.hr_stretch is None else self.hr_stretch(values)

    def _classes(self, values: np.ndarray, valid: np.ndarray, path: Path) -> np.ndarray:
        """A label band's class indices (where ``valid``): its values, or their positions in ``label_values``.

        Raises:
            InputError: a valid pixel holds a value that ``label_values`` does not list, or a value that is not a
                whole number, naming the file and the values.
        """
        found = np.unique(values[valid])
        if self.label_values is None:
            if not np.array_equal(found, np.round(found)):
                raise InputError(
                    f"label {path}: values {_few(found[found != np.round(found)])} are not class indices; give "
                    "label_values (the values in class order) or a label of whole numbers"
                )
            if (found == self.ignore_index).any():  # it would be ignored without a word: a 0/255 mask's change
                raise InputError(
                    f"label {path}: valid pixels hold {self.ignore_index:g}, the ignore_index; give label_values "
                    f"(the values in class order, e.g. [0, 255] for a 0/255 mask) to make it a class, or label_nodata "
                    f"{self.ignore_index:g} if it means no data"
                )
            return values
        listed = np.asarray(self.label_values, dtype=np.float64)
        unlisted = found[~np.isin(found, listed)]
        if unlisted.size:
            raise InputError(
                f"label {path}: values {_few(unlisted)} are not in label_values {_few(listed)}; add them (in class "
                "order), or declare the file's nodata value (label_nodata)"
            )
        classes = np.zeros(values.shape, dtype=np.int64)
        for index, value in enumerate(listed):
            classes[values == value] = index
        return classes


def _few(values: np.ndarray) -> str:
    """At most 8 values, as numbers without a trailing .0: "[0, 255]", "[1, 2, 3, … (12 values)]"."""
    shown = [f"{v:g}" for v in values[:8]]
    return f"[{', '.join(shown)}{f', … ({len(values)} values)' if len(values) > 8 else ''}]"


def _sensor(sensor: Sensor | str, name: str) -> Sensor:
    """A sensor, or its name in :data:`~skysense.data.sensors.SENSORS` (config files give names)."""
    if isinstance(sensor, Sensor):
        return sensor
    if sensor not in SENSORS:
        raise UsageError(f"{name} {sensor!r}; give one of {', '.join(SENSORS)}")
    return SENSORS[sensor]


def _by_date(entry: ManifestEntry) -> tuple[dt.date, str]:
    return entry.date or dt.date.min, str(entry.path)


def _top_left(shape: tuple[int, int]) -> Window:
    return Window(0, 0, shape[1], shape[0])


def _subgrid(grid: Grid, window: Window) -> Grid:
    """The part of ``grid`` under ``window`` (same CRS and pixel size)."""
    transform = grid.transform * Affine.translation(window.col_off, window.row_off)
    return Grid(grid.crs, transform, int(window.height), int(window.width))


def _scaled(window: Window, ratio: int) -> Window:
    """An HR window as the Sentinel window it covers (its offsets and size are multiples of ``ratio``)."""
    return Window(window.col_off // ratio, window.row_off // ratio, window.width // ratio, window.height // ratio)


def _hr_bands(info: RasterInfo, sensor: Sensor) -> list[int]:
    """An HR file's bands in the sensor's order (red, green, blue[, nir]): from its colour interpretation and band
    descriptions, as scene inference reads them (:func:`~skysense.data.raster.hr_bands_from_tags`: a BGR file
    tagged blue, green, red is reordered, an RGB JPEG is read without a word), by position only when nothing tags
    them (:func:`~skysense.data.raster.sensor_bands`, which warns)."""
    tagged = hr_bands_from_tags(info, len(sensor.bands))
    return tagged if tagged is not None else sensor_bands(info, sensor)
