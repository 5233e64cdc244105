"""Sen1Floods11 hand-labelled flood chips: Sentinel-1 (and Sentinel-2) with water masks.

Bonafilia, D., Tellman, B., Anderson, T., Issenberg, E. 2020. Sen1Floods11: a georeferenced dataset to train and test
deep learning flood algorithms for Sentinel-1. CVPR Workshops 2020, pp. 210–211. Contains modified Copernicus
Sentinel data. Neither source repository carries a licence file; the official README asks for this citation.

The development copy in ``../shared/data/sen1floods11_samples`` holds
``sample_data/`` (12 S1 chips with labels, from github.com/hardikkamboj/sen1floods11-segmentation @ 321f8cf7),
``cloudtostreet_official_sample/`` (one co-registered S1 + S2 + label triple, from github.com/cloudtostreet/Sen1Floods11
@ b9e460da) and ``Sen1Floods11_Metadata.geojson`` (per-event acquisition dates, from the official repository).
All chips: 512×512, EPSG:4326, ~10 m. S1: float32 VV, VH in dB, NaN = no data. S2: int16 L1C, 13 bands B1..B12 with
B8A, top-of-atmosphere reflectance × 1e4, 0 = no data. Labels: int16, -1 = no data, 0 = not water, 1 = water.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from skysense.containers import Sample, TimeSeries
from skysense.data.datasets.base import SkySenseDataset, Transform, natural_key, require_path
from skysense.data.raster import Raster, read_raster
from skysense.data.sensors import S1_GRD, S2_L2A, s2_l1c_to_model_bands


def read_event_dates(path: Path) -> dict[str, tuple[dt.date, dt.date]]:
    """Per-event acquisition dates from ``Sen1Floods11_Metadata.geojson``.

    Returns:
        location name (the geojson's ``location``, e.g. "Spain") → (S1 date, S2 date).

    Raises:
        FileNotFoundError / ValueError: naming the file when it is missing or a feature lacks a date.
    """
    require_path(path, "Sen1Floods11 metadata (per-event dates)")
    try:
        features = json.loads(path.read_text())["features"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path}: not a GeoJSON FeatureCollection: {err}") from err
    dates = {}
    for feature in features:
        props = feature.get("properties", {})
        try:
            s1, s2 = (dt.datetime.strptime(props[k], "%Y/%m/%d").date() for k in ("s1_date", "s2_date"))
            dates[props["location"]] = (s1, s2)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path}: feature {props.get('ID')} lacks a 'location' or a YYYY/MM/DD date: {err}"
            ) from err
    return dates


def same_grid(first: Raster, second: Raster, tolerance: float = 1e-3) -> bool:
    """Whether two reads share CRS, size and pixel grid, up to ``tolerance`` of a pixel (the official chips' transforms
    differ between modalities in the 18th digit)."""
    if first.crs != second.crs or first.values.shape[-2:] != second.values.shape[-2:]:
        return False
    pixel = min(abs(first.transform.a), abs(first.transform.e))
    return all(abs(x - y) <= tolerance * pixel for x, y in zip(first.transform[:6], second.transform[:6], strict=True))


class Sen1Floods11(SkySenseDataset):
    """Sen1Floods11 chips as one-frame Sentinel time series with a water mask (semantic segmentation).

    Each sample: ``s1`` a :class:`~skysense.containers.TimeSeries` of one frame (1, 2, h, w) VV, VH in dB (mode
    "s1", "s1s2"), ``s2`` one frame (1, 10, h, w) of the model's 10 bands, L1C reflectance × 1e4 (mode "s2", "s1s2";
    selected from the 13 L1C bands by :func:`~skysense.data.sensors.s2_l1c_to_model_bands`; normalise it with
    ``S2_L2A``, the closest published statistics: L1C is top-of-atmosphere, expect a small shift); ``valid`` False
    where any band is NaN/no data; dates of the event from the metadata GeoJSON; ``lat``/``lon`` the centre of the
    chip (or tile) from its georeferencing; ``target`` (h, w) int64 with 1 = water, 0 = not water, -1 = ignore
    (:attr:`ignore_index`, the labels' own no-data value; labels are passed through unchanged).

    No-data: the chip Paraguay_34417 is 100 % NaN in S1 (a quirk of the real dataset). It is kept: its frame has an
    all-False validity mask, which :func:`~skysense.data.collate.collate` turns into a masked frame (never fed to
    the encoder), and :class:`~skysense.data.transforms.FillInvalid` replaces its NaNs explicitly. A batch holding
    only such chips has no valid S1 frame at all, which the model refuses.

    Modes and folders: ``root`` is the folder with ``Sen1Floods11_Metadata.geojson``; chips are read from
    ``root/<chip_dir>/{S1,S2,Labels}`` (the official ``S1Hand``/``S2Hand``/``LabelHand`` names work too). By default
    ``chip_dir`` is "sample_data" for mode "s1" (12 chips) and "cloudtostreet_official_sample" for "s2"/"s1s2" (the one
    co-registered triple).

    Tiling: ``tile_size`` cuts every chip into non-overlapping ``tile_size``² tiles in row-major order (a remainder
    narrower than a tile is dropped; 512 divides by 64, 128, 256), read as windows, so that an index always names the
    same tile.

    Splits: "all", or one of the official hand-labelled lists "train", "valid" (alias "val"), "test", "bolivia", read
    from ``<splits_dir>/flood_<name>_data.csv`` ("..._S1Hand.tif,..._LabelHand.tif" per line). ``sample_data/splits``
    has "test" (9 chips) and "bolivia" (3 chips: Mekong, Pakistan, USA, as that repository ships it); the official
    triple has no lists, so only "all".

    Args:
        root: the dataset folder.
        mode: "s1", "s2" or "s1s2".
        split: "all" or a split-list name.
        chip_dir: folder under ``root`` with the chips (default: by mode, see above).
        splits_dir: folder with the split lists (default ``<chip_dir>/splits``).
        metadata: the metadata GeoJSON (default ``root/Sen1Floods11_Metadata.geojson``).
        tile_size: tile side in pixels, or None for whole chips.
        cache_chips: decoded chips kept in memory per process (least recently used dropped; 0 disables). A tile read
            from a cached chip is a slice, not a new decode (about 2.5 MB per S1 chip, 14 MB per S2 chip).
        transforms: ``Sample -> Sample`` applied to each sample.
        download: must stay False: nothing is downloaded.
    """

    classes = ("not water", "water")
    splits = ("all", "train", "val", "valid", "test", "bolivia")  # the official hand-labelled split lists
    ignore_index = -1
    modes = ("s1", "s2", "s1s2")
    filename_regex = re.compile(r"^(?P<event>.+)_(?P<chip>\d+)_(?P<kind>S1Hand|S2Hand|LabelHand)\.tif$")
    default_chip_dirs = {
        "s1": "sample_data",
        "s2": "cloudtostreet_official_sample",
        "s1s2": "cloudtostreet_official_sample",
    }
    folder_names = {"s1": ("S1", "S1Hand"), "s2": ("S2", "S2Hand"), "label": ("Labels", "LabelHand")}
    file_kinds = {"s1": "S1Hand", "s2": "S2Hand", "label": "LabelHand"}
    # chip-name prefixes that differ from the metadata's ``location``
    event_aliases = {"Mekong": "Cambodia"}

    def __init__(
        self,
        root: str | Path | None = None,
        mode: str = "s1",
        split: str = "all",
        chip_dir: str | None = None,
        splits_dir: str | Path | None = None,
        metadata: str | Path | None = None,
        tile_size: int | None = None,
        cache_chips: int = 16,
        transforms: Transform | None = None,
        download: bool = False,
    ) -> None:
        if mode not in self.modes:
            raise ValueError(f"mode must be one of {list(self.modes)}, got {mode!r}")
        super().__init__(root, split, transforms, download)
        self.mode = mode
        self.modalities = ("s1", "s2") if mode == "s1s2" else (mode,)
        self.sensors = {name: {"s1": S1_GRD, "s2": S2_L2A}[name] for name in self.modalities}
        self.chip_dir = require_path(self.root / (chip_dir or self.default_chip_dirs[mode]), "Sen1Floods11 chip folder")
        self.folders = {kind: self._folder(kind) for kind in (*self.modalities, "label")}
        self.event_dates = read_event_dates(Path(metadata) if metadata else self.root / "Sen1Floods11_Metadata.geojson")

        chips = []
        for path in sorted(self.folders[self.modalities[0]].glob("*.tif"), key=lambda p: natural_key(p.name)):
            match = self.filename_regex.match(path.name)
            if match is None:
                raise ValueError(
                    f"{path}: file name does not match <EVENT>_<CHIP>_{self.file_kinds[self.modalities[0]]}.tif"
                )
            chips.append(f"{match['event']}_{match['chip']}")
        if not chips:
            raise FileNotFoundError(f"no Sen1Floods11 chips (*.tif) in {self.folders[self.modalities[0]]}")
        if split != "all":
            listed = self._read_split(Path(splits_dir) if splits_dir else self.chip_dir / "splits", split)
            missing = sorted(set(listed) - set(chips))
            if missing:
                raise FileNotFoundError(
                    f"split {split!r} lists chips absent from {self.folders[self.modalities[0]]}: {missing}"
                )
            chips = [c for c in chips if c in set(listed)]
        for chip in chips:
            for kind in (*self.modalities, "label"):
                require_path(self._file(chip, kind), f"Sen1Floods11 {kind} file of chip {chip}")
            self._dates(chip)  # fail early on an event without dates
        self.chips = chips

        self.tile_size = tile_size
        # Decoded whole chips, least recently used last out. The chips are stored as single compressed strips, so a
        # window read decodes the whole band anyway; tiles of one chip then cost one decode instead of one each.
        self.cache_chips = cache_chips
        self._cache: OrderedDict[tuple[str, str], Raster] = OrderedDict()
        self.windows: list[tuple[int, Window | None]] = []
        for index, chip in enumerate(chips):
            if tile_size is None:
                self.windows.append((index, None))
                continue
            path = self._file(chip, self.modalities[0])
            with rasterio.open(path) as src:
                height, width = src.height, src.width
            if tile_size < 1 or tile_size > min(height, width):
                raise ValueError(f"tile_size {tile_size} does not fit the {height}×{width} chip {path}")
            for row in range(height // tile_size):
                for col in range(width // tile_size):
                    self.windows.append((index, Window(col * tile_size, row * tile_size, tile_size, tile_size)))

    # ------------------------------------------------------------------------------------------------------------
    def _folder(self, kind: str) -> Path:
        for name in self.folder_names[kind]:
            if (self.chip_dir / name).is_dir():
                return self.chip_dir / name
        raise FileNotFoundError(
            f"Sen1Floods11 {kind} folder not found: expected one of {[str(self.chip_dir / n) for n in self.folder_names[kind]]}"
        )

    def _file(self, chip: str, kind: str) -> Path:
        return self.folders[kind] / f"{chip}_{self.file_kinds[kind]}.tif"

    @staticmethod
    def _read_split(folder: Path, split: str) -> list[str]:
        name = "valid" if split == "val" else split
        path = require_path(folder / f"flood_{name}_data.csv", f"Sen1Floods11 split list {split!r}")
        chips = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            first = line.split(",")[0].strip()
            match = Sen1Floods11.filename_regex.match(first)
            if match is None:
                raise ValueError(f"{path}:{number}: expected '<EVENT>_<CHIP>_S1Hand.tif,...', got {line!r}")
            chips.append(f"{match['event']}_{match['chip']}")
        return chips

    def _dates(self, chip: str) -> tuple[dt.date, dt.date]:
        event = chip.rsplit("_", 1)[0]
        location = self.event_aliases.get(event, event)
        if location not in self.event_dates:
            raise ValueError(
                f"chip {chip}: event {event!r} has no dates in the metadata (locations: {sorted(self.event_dates)})"
            )
        return self.event_dates[location]

    def __len__(self) -> int:
        return len(self.windows)

    def _read(self, chip: str, kind: str, window: Window | None) -> Raster:
        """One file's window, from the chip cache when enabled."""
        if self.cache_chips <= 0:
            return read_raster(self._file(chip, kind), window=window)
        key = (chip, kind)
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            self._cache[key] = read_raster(self._file(chip, kind))
            while len(self._cache) > self.cache_chips * len(self.folders):
                self._cache.popitem(last=False)
        raster = self._cache[key]
        if window is None:
            window = Window(0, 0, raster.values.shape[2], raster.values.shape[1])
        return raster.crop(window)  # a copy: samples never share memory with the cache

    def _load(self, index: int) -> Sample:
        chip_index, window = self.windows[index]
        chip = self.chips[chip_index]
        s1_date, s2_date = self._dates(chip)
        rasters: dict[str, Raster] = {kind: self._read(chip, kind, window) for kind in self.folders}
        reference = rasters[self.modalities[0]]
        for raster in rasters.values():
            if not same_grid(raster, reference):
                raise ValueError(f"{raster.path} and {reference.path} are not co-registered (CRS, transform or size)")
        series = {}
        if "s1" in rasters:
            raster = rasters["s1"]
            if raster.values.shape[0] != 2:
                raise ValueError(f"{raster.path}: expected 2 bands (VV, VH in dB), got {raster.values.shape[0]}")
            series["s1"] = TimeSeries(
                torch.from_numpy(raster.values)[None],  # (1, 2, h, w)
                [s1_date],
                torch.from_numpy(raster.valid.all(axis=0))[None],  # (1, h, w)
            )
        if "s2" in rasters:
            raster = rasters["s2"]
            values = s2_l1c_to_model_bands(raster.values, str(raster.path))
            valid = s2_l1c_to_model_bands(raster.valid, str(raster.path)).all(axis=0)
            series["s2"] = TimeSeries(
                torch.from_numpy(np.ascontiguousarray(values))[None], [s2_date], torch.from_numpy(valid)[None]
            )
        label = rasters["label"]
        target = np.where(label.valid[0], label.values[0], self.ignore_index)
        unexpected = np.setdiff1d(np.unique(target), [self.ignore_index, 0, 1])
        if unexpected.size:
            raise ValueError(f"{label.path}: label values {unexpected.tolist()} outside {{-1, 0, 1}}")
        lat, lon = reference.center_lat_lon()
        sample_id = chip if window is None else f"{chip}_r{int(window.row_off)}_c{int(window.col_off)}"
        return Sample(
            s2=series.get("s2"),
            s1=series.get("s1"),
            lat=lat,
            lon=lon,
            target=torch.from_numpy(target.astype(np.int64)),
            meta={
                "source": [str(r.path) for r in rasters.values()],
                "id": sample_id,
                "window": None
                if window is None
                else (int(window.row_off), int(window.col_off), int(window.height), int(window.width)),
            },
        )
