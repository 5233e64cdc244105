"""The small real sample shipped with the package (see ``sample_data/README.md``), as model inputs.

Used by ``skysense demo`` and the tests; the same functions read full-size files from the original datasets.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import rasterio
import torch

from skysense.batch import SkySenseInput
from skysense.containers import day_of_year_index
from skysense.data.datasets import EuroSAT
from skysense.data.datasets.base import read_rgb
from skysense.data.raster import read_raster
from skysense.data.sensors import HR_RGB, S1_GRD, S2_L2A, s2_l1c_to_model_bands

SAMPLE_DIR = Path(str(resources.files("skysense") / "sample_data"))
SEN1FLOODS11_S1 = SAMPLE_DIR / "sen1floods11_Spain_7370579_S1Hand_64.tif"
SEN1FLOODS11_S2 = SAMPLE_DIR / "sen1floods11_Spain_7370579_S2Hand_64.tif"
SEN1FLOODS11_LABEL = SAMPLE_DIR / "sen1floods11_Spain_7370579_LabelHand_64.tif"
EUROSAT_DIR = SAMPLE_DIR / "eurosat"  # EuroSAT's layout: <Class>/<Class>_<n>.jpg, 50 per class
EUROSAT_CLASSES = EuroSAT.classes


def require_all_valid(values: np.ndarray, valid: np.ndarray, path: Path) -> np.ndarray:
    if not valid.all():
        bands = sorted(set(np.nonzero(~valid)[0].tolist()))
        raise ValueError(
            f"{path}: {int((~valid).sum())} nodata/NaN values in bands {bands}; this simple reader refuses to fill "
            "them (mask or crop them away first)"
        )
    return values


def sen1floods11_input(
    s1_path: Path = SEN1FLOODS11_S1,
    s2_path: Path = SEN1FLOODS11_S2,
    s1_date: str | None = None,
    s2_date: str | None = None,
) -> SkySenseInput:
    """One co-registered Sen1Floods11 S1 (dB) + S2 (L1C) chip as a one-frame-per-modality model input.

    Dates come from the arguments or the files' ``ACQUISITION_DATE`` tag; latitude/longitude from the S2 chip's
    centre. S2 L1C's 13 bands are reduced to the model's 10 and normalised with the L2A statistics (the closest
    published ones; L1C is top-of-atmosphere, so expect a small shift).
    """
    s1 = read_raster(s1_path)
    s2 = read_raster(s2_path)
    if s1.crs != s2.crs or s1.transform != s2.transform or s1.values.shape[1:] != s2.values.shape[1:]:
        raise ValueError(f"{s1_path} and {s2_path} are not co-registered (CRS, transform or size differ)")
    dates = []
    for raster, given in ((s2, s2_date), (s1, s1_date)):
        with rasterio.open(raster.path) as src:
            date = given or src.tags().get("ACQUISITION_DATE")
        if date is None:
            raise ValueError(f"{raster.path}: no acquisition date (pass it, or set the ACQUISITION_DATE tag)")
        dates.append(date)
    s2_values = S2_L2A.normalize(
        s2_l1c_to_model_bands(require_all_valid(s2.values, s2.valid, s2.path), str(s2.path)), str(s2.path)
    )
    s1_values = S1_GRD.normalize(require_all_valid(s1.values, s1.valid, s1.path), str(s1.path))
    lat, lon = s2.center_lat_lon()
    s2_day, s1_day = day_of_year_index(dates)
    return SkySenseInput(
        s2=torch.from_numpy(s2_values)[None, None],  # (1, 1, 10, H, W)
        s2_day_of_year=s2_day.view(1, 1),
        s1=torch.from_numpy(s1_values)[None, None],  # (1, 1, 2, H, W)
        s1_day_of_year=s1_day.view(1, 1),
        lat=torch.tensor([lat]),
        lon=torch.tensor([lon]),
    )


def read_rgb_image(path: Path) -> torch.Tensor:
    """An 8-bit RGB image (JPEG/PNG) → normalised (3, H, W) float32 HR input."""
    return torch.from_numpy(HR_RGB.normalize(read_rgb(Path(path)).numpy(), str(path)))


def eurosat_samples(directory: Path = EUROSAT_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """The first shipped EuroSAT image of each class: images (10, 3, 64, 64) normalised, labels (10,)."""
    images, labels = [], []
    for label, name in enumerate(EUROSAT_CLASSES):
        images.append(read_rgb_image(directory / name / f"{name}_1.jpg"))
        labels.append(label)
    return torch.stack(images), torch.tensor(labels)
