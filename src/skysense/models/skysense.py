"""The SkySense model (Guo et al., CVPR 2024, Sec. 3 and Fig. 2): a factorised multi-modal spatiotemporal encoder.

    HR image ──Swin V2──────────────────────────────► (B, 2816, H/32, W/32) ─┐
    S2 frames ─ViT (per frame)─ up-sampling head ───► (B, T2, 2816, h, w) ────┼─► temporal fusion per location
    S1 frames ─ViT (per frame)─ up-sampling head ───► (B, T1, 2816, h, w) ────┘   (day-of-year encoding)
                                                                              ─► F (B, 1024, G, G)
                                                   lat/lon ─► region prototypes ─► concat[F, F_geo] (B, 2048, G, G)

Every module can be used alone (``model.hr``, ``model.s2``, ``model.s1``, ``model.fusion``, ``model.geo``) and
any subset of modalities can be given. One HR stride-32 pixel = one Sentinel pixel (0.3 m · 32 ≈ 10 m), so a
2048² HR tile and a 64² Sentinel tile meet on one 64×64 grid (``hr_ratio``; an HR encoder of smaller output stride
is average-pooled onto that grid before the fusion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange, repeat
from torch import nn
from torch.nn import functional as F

from skysense.batch import SkySenseInput, SkySenseOutput
from skysense.containers import NO_DATE
from skysense.models.base import resolve_indices
from skysense.models.fusion import FusionConfig, TemporalFusion
from skysense.models.projection import ProjectionHeadsConfig
from skysense.models.prototypes import GeoContextConfig, GeoContextPrototypes
from skysense.models.swin_v2 import SwinTransformerV2, SwinV2Config
from skysense.models.vit import UpsampleHead, UpsampleHeadConfig, VisionTransformer, ViTConfig, interpolate_grid

SENTINEL_MODALITIES = ("s2", "s1")


CPU_FUSION_CHUNK = 1024  # locations per temporal-fusion chunk on a CPU (SkySenseConfig.fusion_chunk_size = 0)


@dataclass
class SkySenseConfig:
    """The whole model; a module whose config is None is not built."""

    hr: SwinV2Config | None = field(default_factory=SwinV2Config)
    s2: ViTConfig | None = field(default_factory=lambda: ViTConfig(in_chans=10))
    s1: ViTConfig | None = field(default_factory=lambda: ViTConfig(in_chans=2))
    s2_head: UpsampleHeadConfig | None = field(default_factory=UpsampleHeadConfig)
    s1_head: UpsampleHeadConfig | None = field(default_factory=UpsampleHeadConfig)
    fusion: FusionConfig | None = field(default_factory=FusionConfig)
    geo: GeoContextConfig | None = field(default_factory=GeoContextConfig)
    # Pretraining projection heads: built by the pretraining meta-architecture, listed here so that a preset
    # states its full size (``skysense models``).
    projection: ProjectionHeadsConfig | None = field(default_factory=ProjectionHeadsConfig)
    # What to do when the modalities' grids differ in size (e.g. HR at 1 m: H/32 ≠ Sentinel size):
    # "error" refuses (the paper's co-registered setting), "resample" bilinearly resamples the Sentinel feature
    # maps onto the HR grid (or S1 onto S2's when there is no HR).
    grid_mismatch: str = "error"
    # HR pixels per Sentinel pixel in co-registered inputs (0.3 m · 32 ≈ 10 m). An HR encoder whose last stage has a
    # smaller stride s (the cpu preset's 3-stage encoder: 16) has that map average-pooled by hr_ratio / s before the
    # fusion, so that one HR token still meets one Sentinel pixel; the HR features themselves keep their stride.
    hr_ratio: int = 32
    # Locations fused per chunk in the temporal transformer. 0: CPU_FUSION_CHUNK on a CPU (small chunks stay in
    # cache and reuse memory; measured in docs/benchmarks.md, issue 14), all at once on a GPU; < 0: all at once.
    fusion_chunk_size: int = 0


class SkySense(nn.Module):
    """Multi-modal encoder: :class:`SkySenseInput` → :class:`SkySenseOutput`."""

    def __init__(self, cfg: SkySenseConfig) -> None:
        super().__init__()
        self.config = cfg
        if cfg.grid_mismatch not in ("error", "resample"):
            raise ValueError(f"grid_mismatch must be 'error' or 'resample', got {cfg.grid_mismatch!r}")
        self.hr = SwinTransformerV2(cfg.hr) if cfg.hr is not None else None
        if self.hr is not None:
            stride = self.hr.feature_info[-1].reduction
            if stride < cfg.hr_ratio and cfg.hr_ratio % stride:
                raise ValueError(
                    f"hr_ratio={cfg.hr_ratio} (HR pixels per Sentinel pixel) must be a multiple of the HR encoder's "
                    f"last-stage stride {stride} to pool its map onto the Sentinel grid; set hr_ratio to the inputs' "
                    "resolution ratio"
                )
        self.s2 = VisionTransformer(cfg.s2) if cfg.s2 is not None else None
        self.s1 = VisionTransformer(cfg.s1) if cfg.s1 is not None else None
        self.s2_head = UpsampleHead(cfg.s2_head) if cfg.s2 is not None and cfg.s2_head is not None else None
        self.s1_head = UpsampleHead(cfg.s1_head) if cfg.s1 is not None and cfg.s1_head is not None else None
        self.fusion = TemporalFusion(cfg.fusion) if cfg.fusion is not None else None
        self.geo = GeoContextPrototypes(cfg.geo) if cfg.geo is not None and cfg.fusion is not None else None
        self._check_widths()

    def _check_widths(self) -> None:
        """All spatial features meet in one space: HR last stage = up-sampling outputs = fusion input."""
        widths = {}
        if self.hr is not None:
            widths["hr last stage"] = self.hr.out_channels[-1]
        for name in SENTINEL_MODALITIES:
            encoder, head = getattr(self, name), getattr(self, f"{name}_head")
            if encoder is None:
                continue
            if head is not None:
                if head.config.in_dim != encoder.config.embed_dim:
                    raise ValueError(
                        f"{name}_head.in_dim={head.config.in_dim} differs from the {name} encoder's width "
                        f"{encoder.config.embed_dim}"
                    )
                widths[f"{name}_head output"] = head.config.out_dim
            elif self.fusion is not None:
                raise ValueError(f"the {name} encoder needs an up-sampling head ({name}_head) to feed the fusion")
        if self.fusion is not None:
            widths["fusion input"] = self.fusion.config.in_dim
        if len(set(widths.values())) > 1:
            raise ValueError(f"spatial feature widths must agree, got {widths}")
        if self.geo is not None and self.geo.config.in_dim != self.fusion.config.embed_dim:
            raise ValueError(
                f"geo.in_dim={self.geo.config.in_dim} must equal fusion.embed_dim={self.fusion.config.embed_dim}"
            )

    @property
    def out_channels(self) -> int:
        """Channels of ``SkySenseOutput.features``."""
        if self.fusion is None:
            raise ValueError("this model has no fusion module; use its encoders' out_channels")
        return self.fusion.config.embed_dim * (2 if self.geo is not None else 1)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing in every transformer."""
        for module in (self.hr, self.s2, self.s1, self.fusion):
            if module is not None:
                module.set_grad_checkpointing(enable)

    # ----------------------------------------------------------------------------------------------------------
    def encode_sentinel(self, name: str, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Encode a Sentinel time series frame by frame, skipping padded frames.

        Args:
            name: "s2" or "s1".
            frames: (B, T, C, h, w).
            valid: (B, T) bool.

        Returns:
            (B, T, C', h', w') features (on the shared grid if the modality has an up-sampling head, else the
            ViT's token map); padded frames are zeros.
        """
        encoder, head = getattr(self, name), getattr(self, f"{name}_head")
        if encoder is None:
            raise ValueError(f"the batch has {name} data but this model has no {name} encoder")
        batch, steps = frames.shape[:2]
        flat = rearrange(frames, "b t c h w -> (b t) c h w")
        keep = valid.flatten()
        if not bool(keep.any()):
            raise ValueError(f"every {name} frame of the batch is marked invalid; drop {name} from the batch instead")
        features = encoder.forward_features(flat[keep])  # (N_valid, D, h/p, w/p)
        if head is not None:
            features = head(features)  # (N_valid, C', h, w)
        if bool(keep.all()):  # no padded frame: no zeroed copy (on a CPU a new tensor's page faults cost most)
            out = features
        else:
            out = features.new_zeros((batch * steps, *features.shape[1:]))
            out[keep] = features
        return rearrange(out, "(b t) c h w -> b t c h w", b=batch)

    def fusion_chunk(self, device: torch.device) -> int:
        """Locations fused per chunk (``config.fusion_chunk_size``; 0: :data:`CPU_FUSION_CHUNK` on a CPU, all at
        once elsewhere; negative: all at once)."""
        chunk = self.config.fusion_chunk_size
        if chunk == 0:
            return CPU_FUSION_CHUNK if device.type == "cpu" else -1
        return chunk

    def fuse_locations(self, stacked: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Run the temporal fusion at every location of a dated stack.

        Chunked over locations (:meth:`fusion_chunk`): each chunk's (n, L, C) sequence is cut from the stack as a
        strided view, so the whole (B·Gh·Gw, L, C) sequence is never laid out. On a CPU a scene tile's full sequence
        is hundreds of MB per tensor, and allocating each of the 24 blocks' intermediates anew costs more in page
        faults than the arithmetic (see docs/benchmarks.md, issue 14).

        Args:
            stacked: (B, L, C, Gh, Gw) spatial features of all time steps, date encoding already added.
            valid: (B, L) bool, False for padded or missing time steps.

        Returns:
            (B, D, Gh, Gw) fused features.
        """
        size, steps, _, height, width = stacked.shape
        locations = height * width
        chunk = self.fusion_chunk(stacked.device)
        if chunk < 0 or chunk >= size * locations:
            chunk = size * locations
        pieces = []  # (n, D) in (b, h, w) order
        if chunk >= locations:  # whole samples per chunk
            per = chunk // locations
            for start in range(0, size, per):
                part = stacked[start : start + per]
                sequence = rearrange(part, "b l c h w -> (b h w) l c")
                rows = repeat(valid[start : start + per], "b l -> (b n) l", n=locations)
                pieces.append(self.fusion(sequence, None, rows, dated=True))
        else:
            flat = stacked.flatten(3)  # (B, L, C, Gh·Gw), a view
            for index in range(size):
                for start in range(0, locations, chunk):
                    sequence = flat[index, :, :, start : start + chunk].permute(2, 0, 1)  # (n, L, C) view
                    rows = valid[index].expand(sequence.shape[0], steps)
                    pieces.append(self.fusion(sequence, None, rows, dated=True))
        fused = pieces[0] if len(pieces) == 1 else torch.cat(pieces)  # (B·Gh·Gw, D)
        return rearrange(fused, "(b h w) d -> b d h w", b=size, h=height)

    def forward(
        self, batch: SkySenseInput | None = None, use_geo: bool = True, **inputs: torch.Tensor
    ) -> SkySenseOutput:
        """Encode and fuse whatever modalities the batch holds.

        Args:
            batch: the input; alternatively pass its fields as keyword arguments (``model(hr=x, s2=..., ...)``).
            use_geo: apply the geo-context prototypes (needs ``lat``/``lon``) when the model has them.

        Returns:
            :class:`SkySenseOutput`. Without a fusion module only the per-modality features are filled.
        """
        if batch is None:
            batch = SkySenseInput(**inputs)
        elif inputs:
            raise TypeError("pass either a SkySenseInput or keyword tensors, not both")
        size = batch.batch_size
        out = SkySenseOutput()
        tokens, days, valids = [], [], []  # per modality: (B, L, C, Gh, Gw), (B, L), (B, L)

        if batch.hr is not None and (batch.hr_valid is None or bool(batch.hr_valid.any())):
            if self.hr is None:
                raise ValueError("the batch has an HR image but this model has no HR encoder")
            hr_valid = _default_mask(batch.hr_valid, (size,), batch.hr.device, "hr_valid")
            num_stages = len(self.hr.feature_info)
            out_indices = resolve_indices(self.hr.config.out_indices, num_stages)
            wanted = sorted(set(out_indices) | {num_stages - 1})  # the last stage always feeds the fusion
            maps = _run_selected(lambda x: self.hr.forward_maps(x, indices=wanted), batch.hr, hr_valid)
            out.hr_features = [maps[wanted.index(i)] for i in out_indices]
            pool = max(1, self.config.hr_ratio // self.hr.feature_info[-1].reduction)
            tokens.append((F.avg_pool2d(maps[-1], pool, ceil_mode=True) if pool > 1 else maps[-1]).unsqueeze(1))
            hr_day = batch.hr_day_of_year
            if hr_day is None:
                hr_day = torch.full((size,), NO_DATE, dtype=torch.long, device=batch.hr.device)
            days.append(_check_shape(hr_day, (size,), "hr_day_of_year").unsqueeze(1))
            valids.append(hr_valid.unsqueeze(1))

        for name in SENTINEL_MODALITIES:
            frames = getattr(batch, name)
            if frames is None:
                continue
            if frames.ndim != 5:
                raise ValueError(f"{name} must be (B, T, C, H, W), got shape {tuple(frames.shape)}")
            steps = frames.shape[1]
            day = getattr(batch, f"{name}_day_of_year")
            if day is None:
                raise ValueError(f"{name} frames need {name}_day_of_year (B, T); use -1 for frames without a date")
            valid = _default_mask(getattr(batch, f"{name}_valid"), (size, steps), frames.device, f"{name}_valid")
            if not bool(valid.any()):  # no valid frame in the whole batch: as if absent (as an all-invalid HR image)
                continue
            features = self.encode_sentinel(name, frames, valid)
            setattr(out, f"{name}_features", features)
            tokens.append(features)
            days.append(_check_shape(day, (size, steps), f"{name}_day_of_year"))
            valids.append(valid)

        if self.fusion is None:
            return out
        if not tokens:
            raise ValueError(
                "no valid input in the batch: every HR image and every Sentinel frame is marked invalid (all nodata); "
                "leave such samples out"
            )

        grid = tuple(tokens[0].shape[-2:])
        for index, token in enumerate(tokens):
            if tuple(token.shape[-2:]) != grid:
                if self.config.grid_mismatch == "error":
                    raise ValueError(
                        f"modality grids differ: {[tuple(t.shape[-2:]) for t in tokens]} (HR first, then S2, "
                        f"S1). Co-register the inputs (one Sentinel pixel = "
                        f"{self.config.hr_ratio} HR pixels, the model's hr_ratio) or build the model with "
                        "grid_mismatch='resample'"
                    )
                steps = token.shape[1]
                token = interpolate_grid(rearrange(token, "b t c h w -> (b t) c h w"), grid)
                tokens[index] = rearrange(token, "(b t) c h w -> b t c h w", t=steps)

        # The date encoding is added to the (B, L, C, Gh, Gw) stack, one row of days per sample broadcast over the
        # grid, rather than to (B·Gh·Gw, L, C) with a gathered day row per location: 3 passes over the largest
        # tensor less (the fusion is told its tokens are dated).
        encoding = self.fusion.date_encoding.rows(torch.cat(days, dim=1))[..., None, None].to(tokens[0].dtype)
        if len(tokens) == 1:  # one pass: the sum is the new tensor (the features stay as ``out`` holds them)
            stacked = tokens[0] + encoding
        else:
            stacked = torch.cat(tokens, dim=1)  # (B, L, C, Gh, Gw), a new tensor: the in-place add is safe
            stacked.add_(encoding)
        out.fused = self.fuse_locations(stacked, torch.cat(valids, dim=1))
        out.features = out.fused

        if self.geo is not None and use_geo:
            if batch.lat is None or batch.lon is None:
                raise ValueError(
                    "this model has geo-context prototypes, which need lat and lon (B,) in degrees; "
                    "pass them or call the model with use_geo=False"
                )
            fused_tokens = rearrange(out.fused, "b d h w -> b (h w) d")
            geo, out.geo_query = self.geo.read_out(fused_tokens, self.geo.regions(batch.lat, batch.lon), True)
            out.geo = rearrange(geo, "b (h w) d -> b d h w", h=grid[0])
            out.features = torch.cat([out.fused, out.geo], dim=1)
        return out


def _default_mask(mask: torch.Tensor | None, shape: tuple[int, ...], device: torch.device, name: str) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {mask.dtype}")
    return _check_shape(mask, shape, name)


def _check_shape(tensor: torch.Tensor, shape: tuple[int, ...], name: str) -> torch.Tensor:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}")
    return tensor


def _run_selected(fn, x: torch.Tensor, select: torch.Tensor) -> list[torch.Tensor]:
    """Apply ``fn`` (returning a list of maps) to the selected samples only; unselected samples get zeros."""
    if bool(select.all()):
        return fn(x)
    maps = fn(x[select])
    outs = []
    for m in maps:
        full = m.new_zeros((x.shape[0], *m.shape[1:]))
        full[select] = m
        outs.append(full)
    return outs
