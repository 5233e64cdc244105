"""Satellite products as users download them, turned into bands, masks, a date and a tile.

- :mod:`skysense.data.products.sentinel2`: Sentinel-2 L1C/L2A ``.SAFE`` folders and zips, ``IMG_DATA`` folders,
  loose per-band files with product names, and scene folders of bare band names (Earth Search's COGs, AWS's
  ``tiles/`` layout) (radiometric offsets and cloud masks applied).
- :mod:`skysense.data.products.sentinel1`: Sentinel-1 GRD as one file per polarisation (VV, VH), stacked per date;
  files in radar geometry (ground control points only) refused.
- :mod:`skysense.data.products.stac`: STAC Items and ItemCollections with per-band assets.
- :mod:`skysense.data.products.mosaic`: Sentinel-2 products of one date from several MGRS tiles, read as one frame.
"""

from skysense.data.products.mosaic import S2Mosaic, mosaic_by_date
from skysense.data.products.sentinel1 import S1Pair, check_geocoded, group_polarisations
from skysense.data.products.sentinel2 import (
    S2Product,
    find_s2_products,
    is_s2_product_path,
    read_s2_product,
    refuse_unnamed_band_files,
)

__all__ = [
    "S2Mosaic",
    "mosaic_by_date",
    "S1Pair",
    "check_geocoded",
    "group_polarisations",
    "S2Product",
    "find_s2_products",
    "is_s2_product_path",
    "read_s2_product",
    "refuse_unnamed_band_files",
]
