"""Named presets: each is data (a :class:`SkySenseConfig`), registered by name.

``tiny`` runs in tests in seconds; ``small`` and ``base`` are for CPU experiments and single GPUs; ``paper``
reproduces the sizes of the paper (HR ≈ 654 M, each Sentinel ViT ≈ 302 M, fusion + up-sampling heads ≈ 398 M,
prototypes ≈ 215 M, projection heads ≈ 189 M, total ≈ 2.06 B).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from skysense.models.fusion import FusionConfig
from skysense.models.projection import ProjectionHeadsConfig, build_projection_heads
from skysense.models.prototypes import GeoContextConfig
from skysense.models.skysense import SkySense, SkySenseConfig
from skysense.models.swin_v2 import SwinV2Config
from skysense.models.vit import UpsampleHeadConfig, ViTConfig

_PRESETS: dict[str, Callable[[], SkySenseConfig]] = {}
# nested config classes by SkySenseConfig field name
_SUBCONFIGS: dict[str, type] = {
    "hr": SwinV2Config,
    "s2": ViTConfig,
    "s1": ViTConfig,
    "s2_head": UpsampleHeadConfig,
    "s1_head": UpsampleHeadConfig,
    "fusion": FusionConfig,
    "geo": GeoContextConfig,
    "projection": ProjectionHeadsConfig,
}


def register_preset(fn: Callable[[], SkySenseConfig]) -> Callable[[], SkySenseConfig]:
    """Register ``fn`` (returning a config) under its name."""
    _PRESETS[fn.__name__] = fn
    return fn


def list_presets() -> list[str]:
    return list(_PRESETS)


def _sentinel_pair(embed_dim: int, depth: int, heads: int, out_dim: int, drop_path: float, eps: float = 1e-6) -> dict:
    vit = dict(
        img_size=64,
        patch_size=4,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        drop_path_rate=drop_path,
        norm_eps=eps,
    )
    head = UpsampleHeadConfig(in_dim=embed_dim, out_dim=out_dim, scale=4)
    return dict(s2=ViTConfig(in_chans=10, **vit), s1=ViTConfig(in_chans=2, **vit), s2_head=head, s1_head=head)


@register_preset
def tiny() -> SkySenseConfig:
    """2.5 M parameters (4.1 M with the pretraining heads): for tests and the demo."""
    hr = SwinV2Config(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=8, drop_path_rate=0.0)
    return SkySenseConfig(
        hr=hr,
        **_sentinel_pair(64, 2, 2, out_dim=256, drop_path=0.0),
        fusion=FusionConfig(in_dim=256, embed_dim=64, depth=2, num_heads=2),
        geo=GeoContextConfig(in_dim=64, dim=32, num_prototypes=8, region_rows=8, region_cols=8, query_hidden_dim=128),
        projection=ProjectionHeadsConfig(
            source_dims={"hr": 256, "s2": 256, "s1": 256, "fused": 128},
            hidden_dim=256,
            bottleneck_dim=64,
            num_prototypes=1024,
        ),
    )


@register_preset
def cpu() -> SkySenseConfig:
    """The preset for pretraining on a CPU with 64×64 HR inputs (``configs/pretrain/tiny.yaml``): ``tiny``'s
    Sentinel encoders and fusion with 384-wide up-sampling heads, and a 3-stage C96 HR encoder (depths 1-1-2, heads
    2-4-8) with a convolutional stem and blocks that start as blocks (residual post-norms at 1). Its last stage is a
    4×4×384 map at stride 16 on a 64×64 image, average-pooled to stride 32 (``hr_ratio``) where it meets the
    Sentinel grid in the fusion.

    Chosen by linear probes on EuroSAT (docs/benchmarks.md, issue 16). Random features, seeds 0 / 1: 74.0 / 74.2
    against 56.7 / 55.1 for the earlier C48 1-1-2-1 patch-stem encoder (a 2×2 last stage) and 63.2 for a random
    ViT-S/8. After 20 CPU-minutes of ``configs/pretrain/tiny.yaml`` (lr 1e-4, 201 steps): 75.7 ± 0.1 (student),
    74.9 ± 0.4 (teacher), random init 73.9 ± 0.5 (3 probe seeds)."""
    cfg = tiny()
    width = 384
    hr = dataclasses.replace(
        cfg.hr,
        embed_dim=96,
        depths=(1, 1, 2),
        num_heads=(2, 4, 8),
        pretrained_window_sizes=(0, 0, 0),
        out_indices=(0, 1, 2),
        output_norm_indices=(0, 1, 2),
        post_norm_init=1.0,
        stem="conv",
    )
    return dataclasses.replace(
        cfg,
        hr=hr,
        s2_head=dataclasses.replace(cfg.s2_head, out_dim=width),
        s1_head=dataclasses.replace(cfg.s1_head, out_dim=width),
        fusion=dataclasses.replace(cfg.fusion, in_dim=width),
        projection=dataclasses.replace(
            cfg.projection, source_dims={"hr": width, "s2": width, "s1": width, "fused": 128}
        ),
    )


@register_preset
def small() -> SkySenseConfig:
    """34 M parameters (56 M with the pretraining heads): CPU experiments."""
    hr = SwinV2Config(embed_dim=64, depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16), window_size=8, drop_path_rate=0.1)
    return SkySenseConfig(
        hr=hr,
        **_sentinel_pair(256, 6, 4, out_dim=512, drop_path=0.1),
        fusion=FusionConfig(in_dim=512, embed_dim=256, depth=4, num_heads=4),
        geo=GeoContextConfig(
            in_dim=256, dim=128, num_prototypes=32, region_rows=32, region_cols=32, query_hidden_dim=512
        ),
        projection=ProjectionHeadsConfig(
            source_dims={"hr": 512, "s2": 512, "s1": 512, "fused": 512},
            hidden_dim=1024,
            bottleneck_dim=128,
            num_prototypes=8192,
        ),
    )


@register_preset
def base() -> SkySenseConfig:
    """476 M parameters (566 M with the pretraining heads): SwinV2-B, 2 × ViT-B, a 12-layer fusion."""
    hr = SwinV2Config(
        embed_dim=128,
        depths=(2, 2, 18, 2),
        num_heads=(4, 8, 16, 32),
        window_size=8,
        drop_path_rate=0.2,
        extra_norm_period=6,
    )
    return SkySenseConfig(
        hr=hr,
        **_sentinel_pair(768, 12, 12, out_dim=1024, drop_path=0.2),
        fusion=FusionConfig(in_dim=1024, embed_dim=768, depth=12, num_heads=12),
        geo=GeoContextConfig(
            in_dim=768, dim=256, num_prototypes=100, region_rows=64, region_cols=64, query_hidden_dim=1536
        ),
        projection=ProjectionHeadsConfig(
            source_dims={"hr": 1024, "s2": 1024, "s1": 1024, "fused": 1536},
            hidden_dim=2048,
            bottleneck_dim=256,
            num_prototypes=16384,
        ),
    )


@register_preset
def paper() -> SkySenseConfig:
    """The paper's 2.06 B model (SwinV2-Huge, 2 × ViT-Large, 24-layer fusion, 4096 × 100 prototypes)."""
    hr = SwinV2Config(
        embed_dim=352,
        depths=(2, 2, 18, 2),
        num_heads=(8, 16, 32, 64),
        window_size=8,
        drop_path_rate=0.2,
        extra_norm_period=6,
        output_norm_indices=(3,),  # as released: a single output norm on the last stage
    )
    return SkySenseConfig(
        hr=hr,
        **_sentinel_pair(1024, 24, 16, out_dim=2816, drop_path=0.3, eps=1e-5),
        fusion=FusionConfig(in_dim=2816, embed_dim=1024, depth=24, num_heads=16),
        geo=GeoContextConfig(),
        projection=ProjectionHeadsConfig(),
    )


def _apply_overrides(cfg: SkySenseConfig, overrides: dict[str, Any]) -> SkySenseConfig:
    changes = {}
    for key, value in overrides.items():
        if key not in {f.name for f in dataclasses.fields(SkySenseConfig)}:
            raise TypeError(f"unknown model option {key!r}; options are {[f.name for f in dataclasses.fields(cfg)]}")
        current = getattr(cfg, key)
        if isinstance(value, dict) and key in _SUBCONFIGS:
            base_cfg = current if current is not None else _SUBCONFIGS[key]()
            changes[key] = dataclasses.replace(base_cfg, **value)
        else:
            changes[key] = value
    return dataclasses.replace(cfg, **changes)


def get_config(name: str, **overrides: Any) -> SkySenseConfig:
    """The preset's config with ``overrides`` applied (a dict for a module merges into its config, ``None``
    removes the module: ``get_config("tiny", hr={"in_chans": 4}, s1=None)``)."""
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {list_presets()}")
    return _apply_overrides(_PRESETS[name](), overrides)


def create_model(name: str, device: torch.device | str | None = None, **overrides: Any) -> SkySense:
    """Build a preset. ``device="meta"`` builds it without allocating memory (for inspection and counting)."""
    cfg = get_config(name, **overrides)
    if device is None:
        return SkySense(cfg)
    with torch.device(device):
        return SkySense(cfg)


def config_to_dict(cfg: SkySenseConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict[str, Any]) -> SkySenseConfig:
    """Inverse of :func:`config_to_dict` (lists back to tuples)."""

    def build(cls: type, values: dict[str, Any]) -> Any:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - fields
        if unknown:
            raise KeyError(f"unknown {cls.__name__} fields in saved config: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    kwargs = {
        key: build(_SUBCONFIGS[key], value) if key in _SUBCONFIGS and value is not None else value
        for key, value in data.items()
    }
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(SkySenseConfig)}
    if unknown:
        raise KeyError(f"unknown SkySenseConfig fields in saved config: {sorted(unknown)}")
    return SkySenseConfig(**kwargs)


def _numel(module: nn.Module | None) -> int:
    """Parameters plus persistent buffers (the prototype bank is a buffer): everything a checkpoint stores."""
    if module is None:
        return 0
    return sum(t.numel() for t in module.state_dict(keep_vars=True).values())


def count_parameters(model: SkySense, projection: ProjectionHeadsConfig | None = None) -> dict[str, int]:
    """Per-module sizes as the paper counts them (fusion includes the up-sampling heads; prototypes count the
    bank buffer); ``projection`` heads are built on the meta device to count them."""
    counts = {
        "hr": _numel(model.hr),
        "s2": _numel(model.s2),
        "s1": _numel(model.s1),
        "fusion": _numel(model.fusion) + _numel(model.s2_head) + _numel(model.s1_head),
        "prototypes": _numel(model.geo),
    }
    if projection is not None:
        with torch.device("meta"):
            counts["projection"] = _numel(build_projection_heads(projection))
    counts["total"] = sum(counts.values())
    return counts
