"""Geo-context prototypes of SkySense (Guo et al., CVPR 2024, Sec. 3.3 "Geo-Context Prototype Learning").

The globe is divided into regions; each region owns a set of prototypes (a bank of shape
(num_regions, num_prototypes, dim)). A sample's latitude/longitude picks its region r, and every fused feature F
attends to that region's prototypes P_r:

    F_geo = softmax(q(F) · P_rᵀ / √d) · P_r,        output = concat[F, o(F_geo)]

where q is a query projector from the fusion width into the prototype space and o projects the read-out back to
the fusion width (both our choice: the paper does not say how widths are matched). The bank is a *buffer*, not a
parameter: it receives no gradient and is updated by the pretraining objective (Sinkhorn-Knopp assignment + EMA,
:mod:`skysense.losses`), then frozen.

Region mapping (our choice, documented in docs/model.md): an equal-area latitude/longitude grid. Rows split
sin(latitude) ∈ [-1, 1] into ``region_rows`` equal bands (cylindrical equal-area projection, so every region covers
the same surface), columns split longitude ∈ [-180, 180) into ``region_cols`` equal sectors. Region index =
row · region_cols + col. Default 64 × 64 = 4096 regions, each ≈ 124,500 km².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GeoContextConfig:
    """Configuration of the geo-context prototype bank and its read-out."""

    in_dim: int = 1024  # width of the fused features
    dim: int = 512  # prototype width
    num_prototypes: int = 100  # prototypes per region
    region_rows: int = 64  # equal-area latitude bands
    region_cols: int = 64  # longitude sectors
    query_hidden_dim: int = 2048  # hidden width of the 2-layer query projector (0: a single linear layer)

    @property
    def num_regions(self) -> int:
        return self.region_rows * self.region_cols


def region_index(lat: torch.Tensor, lon: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Equal-area region of each location.

    Args:
        lat: (B,) latitude in degrees, [-90, 90].
        lon: (B,) longitude in degrees; any value, wrapped into [-180, 180).

    Returns:
        (B,) int64 region index in [0, rows · cols).

    Raises:
        ValueError: for NaN coordinates or latitudes outside [-90, 90], naming the sample.
    """
    bad = torch.isnan(lat) | torch.isnan(lon) | (lat.abs() > 90)
    if bad.any():
        samples = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"latitude/longitude missing (NaN) or latitude outside [-90, 90] for samples {samples}: "
            f"lat={lat[bad].tolist()}, lon={lon[bad].tolist()}"
        )
    sin_lat = torch.sin(torch.deg2rad(lat.double()))
    row = ((sin_lat + 1) / 2 * rows).floor().long().clamp(0, rows - 1)
    lon_wrapped = torch.remainder(lon.double() + 180.0, 360.0)
    col = (lon_wrapped / 360.0 * cols).floor().long().clamp(0, cols - 1)
    return row * cols + col


class GeoContextPrototypes(nn.Module):
    """Region-selected prototype attention: fused tokens (B, N, in_dim) → (B, N, 2 · in_dim)."""

    def __init__(self, cfg: GeoContextConfig) -> None:
        super().__init__()
        self.config = cfg
        bank = torch.empty(cfg.num_regions, cfg.num_prototypes, cfg.dim)
        if not bank.is_meta:
            bank = F.normalize(torch.randn_like(bank), dim=-1)  # unit prototypes, as the cosine assignment expects
        self.register_buffer("bank", bank)
        if cfg.query_hidden_dim > 0:
            self.query = nn.Sequential(
                nn.Linear(cfg.in_dim, cfg.query_hidden_dim), nn.GELU(), nn.Linear(cfg.query_hidden_dim, cfg.dim)
            )
        else:
            self.query = nn.Linear(cfg.in_dim, cfg.dim)
        self.out_proj = nn.Linear(cfg.dim, cfg.in_dim)

    def regions(self, lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        """(B,) region index of each sample; see :func:`region_index`."""
        return region_index(lat, lon, self.config.region_rows, self.config.region_cols)

    def read_out(
        self, fused: torch.Tensor, region: torch.Tensor, return_query: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Geo-context read-out F_geo.

        Args:
            fused: (B, N, in_dim) fused features of N locations per sample.
            region: (B,) region index.
            return_query: also return the queries q(F) (B, N, d), what prototype learning assigns to the bank.

        Returns:
            (B, N, in_dim): o(softmax(q(F)·P_rᵀ/√d)·P_r) [, (B, N, d) queries].
        """
        prototypes = self.bank[region].to(fused.dtype)  # (B, P, d)
        query = self.query(fused)  # (B, N, d)
        attention = torch.softmax(query @ prototypes.transpose(1, 2) / math.sqrt(self.config.dim), dim=-1)  # (B, N, P)
        geo = self.out_proj(attention @ prototypes)  # (B, N, in_dim)
        return (geo, query) if return_query else geo

    def forward(self, fused: torch.Tensor, lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        """concat[F, F_geo] for fused tokens (B, N, in_dim) and coordinates (B,) in degrees → (B, N, 2 · in_dim)."""
        geo = self.read_out(fused, self.regions(lat, lon))
        return torch.cat([fused, geo], dim=-1)
