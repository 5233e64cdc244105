"""Satellite products as users download them, turned into bands, masks, a date and a tile.

- :mod:`skysense.data.products.sentinel2`: Sentinel-2 L1C/L2A ``.SAFE`` folders and zips, ``IMG_DATA`` folders and
  loose per-band files (radiometric offsets and cloud masks applied).
"""

from skysense.data.products.sentinel2 import S2Product, find_s2_products, is_s2_product_path, read_s2_product

__all__ = ["S2Product", "find_s2_products", "is_s2_product_path", "read_s2_product"]
