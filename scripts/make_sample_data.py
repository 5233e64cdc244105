"""Rebuild the small real sample shipped in src/skysense/sample_data/ from ../shared/data (run by hand).

Sen1Floods11 (Bonafilia et al., CVPR-W 2020; contains modified Copernicus Sentinel data): a 64×64 window of the
co-registered Spain_7370579 S1 (VV, VH dB) and S2 (13-band L1C) chips and its water label, georeferencing kept.
EuroSAT (Helber et al., IEEE JSTARS 2019; MIT licence): the 50 lowest-numbered RGB images of each class, in
EuroSAT's own layout (``eurosat/<Class>/<Class>_<n>.jpg``), for the demo's pretraining and probe.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "src" / "skysense" / "sample_data"
WINDOW = Window(col_off=160, row_off=192, width=64, height=64)


PER_CLASS = 50  # EuroSAT images per class
DATES = {"S1": "2019-09-17", "S2": "2019-09-18"}  # Sen1Floods11_Metadata.geojson, event Spain


def crop(src_path: Path, dst_path: Path, date: str | None = None) -> None:
    with rasterio.open(src_path) as src:
        data = src.read(window=WINDOW)
        profile = src.profile | {
            "width": WINDOW.width, "height": WINDOW.height, "transform": src.window_transform(WINDOW),
            "compress": "deflate", "tiled": False,
        }
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = src.descriptions
            dst.update_tags(**src.tags())
            if date is not None:
                dst.update_tags(ACQUISITION_DATE=date)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    chip = SHARED / "sen1floods11_samples" / "cloudtostreet_official_sample"
    for kind, suffix in (("S1", "S1Hand"), ("S2", "S2Hand"), ("Labels", "LabelHand")):
        crop(chip / kind / f"Spain_7370579_{suffix}.tif", OUT / f"sen1floods11_Spain_7370579_{suffix}_64.tif",
             DATES.get(kind))
    eurosat = SHARED / "eurosat_rgb_dev"
    for class_dir in sorted(p for p in eurosat.iterdir() if p.is_dir()):
        target = OUT / "eurosat" / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.glob("*.jpg"), key=lambda p: int(p.stem.split("_")[-1]))[:PER_CLASS]:
            shutil.copy(image, target / image.name)


if __name__ == "__main__":
    main()
