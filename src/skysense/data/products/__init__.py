"""Satellite products as users download them, turned into bands, masks, a date and a tile.

- :mod:`skysense.data.products.sentinel2`: Sentinel-2 L1C/L2A ``.SAFE`` folders and zips, ``IMG_DATA`` folders and
  loose per-band files (radiometric offsets and cloud masks applied).
- :mod:`skysense.data.products.sentinel1`: Sentinel-1 GRD as one file per polarisation (VV, VH), stacked per date;
  files in radar geometry (ground control points only) refused.
- :mod:`skysense.data.products.stac`: STAC Items and ItemCollections with per-band assets.
- :mod:`skysense.data.products.mosaic`: Sentinel-2 products of one date from several MGRS tiles, read as one frame.
"""

from skysense.data.products.mosaic import S2Mosaic, mosaic_by_date
from skysense.data.products.sentinel1 import S1Pair, check_geocoded, group_polarisations
from skysense.data.products.sentinel2 import S2Product, find_s2_products, is_s2_product_path, read_s2_product

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
]
