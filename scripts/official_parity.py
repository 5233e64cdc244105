"""Numerical parity of skysense's encoders with the official SkySense definitions (run by hand; issue 17).

The official checkpoints come from OpenMMLab modules: the HR encoder is mmcls 0.x's ``SwinTransformerV2`` (SkySense++'s
``lib/models/backbones/swin_v2.py`` re-declares it unchanged apart from an unused ``vocabulary_size`` argument), the
Sentinel encoders are mmseg 0.x's ``VisionTransformer`` (``lib/models/backbones/vit.py``) and the fusion is SkySense++'s
``TransformerEncoder`` (``lib/models/necks/transformer_encoder.py``: a linear projection ``porj_linear``, a cls token and
mmseg ``TransformerEncoderLayer`` s). This script builds each reference, gives it random weights (every tensor
perturbed, so no zero bias or unit scale hides a swapped name), converts its state dict with skysense's converters
(the ones ``skysense.load_official_weights`` uses), loads it strictly into skysense's module and compares the
outputs on the same random input, in float64 (the mapping) and float32 (what users run).

With ``--official-repo PATH`` (a SkySense++ checkout) the three files are imported from that checkout; without it the
references are the mmcls/mmseg classes those files import, and the fusion is assembled from mmseg's layer as the file
does. No official code is copied into skysense.

``--keys-out FILE`` writes every tensor name and shape of the references at the paper's sizes, as the released
checkpoints hold them (HR with the single output norm ``norm3``); ``tests/models/test_official_keys.py`` checks
skysense's converters and ``paper`` preset against that file in CI, where mmcv cannot be installed.

Setup, in a separate environment (mmcv 1.x has no wheel for current torch; its compiled ops are not needed and are
replaced by a stub that raises if called)::

    python -m venv --system-site-packages /tmp/mmenv
    /tmp/mmenv/bin/pip install wheel yapf addict
    /tmp/mmenv/bin/pip install --no-deps mmcls==0.25.0 mmsegmentation==0.30.0
    MMCV_WITH_OPS=0 /tmp/mmenv/bin/pip install --no-deps --no-build-isolation mmcv==1.7.2
    PYTHONPATH=src /tmp/mmenv/bin/python scripts/official_parity.py --size small --size paper
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _stub_mmcv_ops() -> None:
    """mmseg imports compiled mmcv ops (focal loss, point sampling, ...) at import time; none is used by these
    encoders. Without mmcv's compiled extension, ``mmcv.ops`` is replaced by a module whose names raise when used."""
    try:
        import mmcv.ops  # noqa: F401
    except ModuleNotFoundError:
        ops = types.ModuleType("mmcv.ops")

        def missing(name: str) -> type:
            def fail(*args: Any, **kwargs: Any) -> None:
                raise RuntimeError(f"mmcv.ops.{name} needs mmcv's compiled ops, which this check does not use")

            return type(name, (), {"__init__": fail, "__call__": fail})

        ops.__getattr__ = lambda name: missing(name) if not name.startswith("__") else None  # type: ignore[attr-defined]
        sys.modules["mmcv.ops"] = ops


def _import_file(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Sizes:
    """One architecture, in the official and in skysense's terms."""

    hr_dims: int
    hr_depths: tuple[int, ...]
    hr_heads: tuple[int, ...]
    hr_extra_norm: int
    vit_dims: int
    vit_depth: int
    vit_heads: int
    fusion_dims: int
    fusion_depth: int
    fusion_heads: int


SIZES = {
    "small": Sizes(32, (2, 2, 6, 2), (2, 4, 8, 16), 3, 64, 4, 4, 64, 4, 4),
    "paper": Sizes(352, (2, 2, 18, 2), (8, 16, 32, 64), 6, 1024, 24, 16, 1024, 24, 16),
}


class References:
    """Builds the official modules, from a SkySense++ checkout or from mmcls/mmseg."""

    def __init__(self, repo: Path | None) -> None:
        warnings.filterwarnings("ignore")
        _stub_mmcv_ops()
        if repo is None:
            from mmcls.models.backbones import SwinTransformerV2
            from mmseg.models.backbones import VisionTransformer
            from mmseg.models.backbones.vit import TransformerEncoderLayer

            self.swin_class, self.vit_class, self.layer_class, self.fusion_class = (
                SwinTransformerV2, VisionTransformer, TransformerEncoderLayer, None
            )  # fmt: skip
            self.source = "mmcls 0.x SwinTransformerV2, mmseg 0.x VisionTransformer and TransformerEncoderLayer"
        else:
            swin = _import_file(repo / "lib/models/backbones/swin_v2.py", "official_swin_v2")
            vit = _import_file(repo / "lib/models/backbones/vit.py", "official_vit")
            neck = _import_file(repo / "lib/models/necks/transformer_encoder.py", "official_transformer_encoder")
            self.swin_class, self.vit_class, self.layer_class = swin.SwinTransformerV2, vit.VisionTransformer, None
            self.fusion_class = neck.TransformerEncoder
            self.source = f"{repo}: lib/models/backbones/swin_v2.py, vit.py, lib/models/necks/transformer_encoder.py"

    def hr(self, s: Sizes, out_indices: tuple[int, ...]) -> nn.Module:
        arch = {"embed_dims": s.hr_dims, "depths": list(s.hr_depths), "num_heads": list(s.hr_heads),
                "extra_norm_every_n_blocks": s.hr_extra_norm}  # fmt: skip
        return self.swin_class(arch=arch, img_size=256, patch_size=4, in_channels=3, window_size=8, drop_path_rate=0.0,
                         out_indices=out_indices, stage_cfgs={"downsample_cfg": {"is_post_norm": True}})  # fmt: skip

    def vit(self, s: Sizes, in_channels: int) -> nn.Module:
        return self.vit_class(img_size=64, patch_size=4, in_channels=in_channels, embed_dims=s.vit_dims,
                        num_layers=s.vit_depth, num_heads=s.vit_heads, mlp_ratio=4, out_indices=(s.vit_depth - 1,),
                        with_cls_token=True, final_norm=True, interpolate_mode="bicubic")  # fmt: skip

    def fusion(self, s: Sizes, input_dims: int) -> nn.Module:
        if self.fusion_class is not None:
            return self.fusion_class(input_dims=input_dims, embed_dims=s.fusion_dims, num_layers=s.fusion_depth,
                                     num_heads=s.fusion_heads, with_cls_token=True, output_cls_token=False)  # fmt: skip
        module = nn.Module()  # the neck's parameters, under its names: porj_linear (sic), cls_token, layers
        module.porj_linear = nn.Linear(input_dims, s.fusion_dims)
        module.cls_token = nn.Parameter(torch.zeros(1, 1, s.fusion_dims))
        module.layers = nn.ModuleList(
            self.layer_class(
                embed_dims=s.fusion_dims,
                num_heads=s.fusion_heads,
                feedforward_channels=4 * s.fusion_dims,
                qkv_bias=True,
                batch_first=True,
            )  # fmt: skip
            for _ in range(s.fusion_depth)
        )
        return module


def fusion_forward(module: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The official neck's forward (``TransformerEncoder.forward``), returning the cls token: (N, L, C) → (N, D)."""
    if hasattr(module, "forward") and type(module).__name__ == "TransformerEncoder":
        return module(tokens)[:, 0]
    x = module.porj_linear(tokens)
    x = torch.cat([module.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    for layer in module.layers:
        x = layer(x)
    return x[:, 0]


def perturb(module: nn.Module, seed: int) -> None:
    """Random weights: every floating tensor gets N(0, 0.02²) added (norm scales stay near 1, logit scales near
    their init), so that a swapped or dropped name shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.02)


def ours(kind: str, s: Sizes, in_chans: int = 3) -> nn.Module:
    from skysense.models.fusion import FusionConfig, TemporalFusion
    from skysense.models.swin_v2 import SwinTransformerV2, SwinV2Config
    from skysense.models.vit import VisionTransformer, ViTConfig

    if kind == "hr":
        return SwinTransformerV2(SwinV2Config(in_chans=3, embed_dim=s.hr_dims, depths=s.hr_depths,
                                              num_heads=s.hr_heads, window_size=8, drop_path_rate=0.0,
                                              extra_norm_period=s.hr_extra_norm,
                                              output_norm_indices=(0, 1, 2, 3)))  # fmt: skip
    if kind == "vit":
        return VisionTransformer(ViTConfig(in_chans=in_chans, img_size=64, patch_size=4, embed_dim=s.vit_dims,
                                           depth=s.vit_depth, num_heads=s.vit_heads, drop_path_rate=0.0,
                                           norm_eps=1e-5))  # fmt: skip
    return TemporalFusion(FusionConfig(in_dim=s.hr_dims * 8, embed_dim=s.fusion_dims, depth=s.fusion_depth,
                                       num_heads=s.fusion_heads))  # fmt: skip


def compare(
    name: str, reference: nn.Module, mine: nn.Module, run_ref: Callable, run_mine: Callable, inputs: list[torch.Tensor]
) -> list[dict]:
    rows = []
    for dtype in (torch.float64, torch.float32):
        reference.to(dtype).eval()
        mine.to(dtype).eval()
        for x in inputs:
            with torch.no_grad():
                expected = run_ref(reference, x.to(dtype))
                got = run_mine(mine, x.to(dtype))
            diffs = [(a - b).abs().max().item() for a, b in zip(expected, got, strict=True)]
            scale = max(a.abs().max().item() for a in expected)
            rows.append({"module": name, "input": "×".join(map(str, x.shape)), "dtype": str(dtype).removeprefix("torch."),
                         "outputs": len(expected), "max_abs_diff": max(diffs), "max_abs_output": scale})  # fmt: skip
            print(f"{name:8s} {rows[-1]['input']:>16s} {rows[-1]['dtype']:8s} max |Δ| {max(diffs):.2e} "
                  f"(outputs up to {scale:.2f})", flush=True)  # fmt: skip
    return rows


def check_size(refs: References, size: str, seed: int) -> list[dict]:
    from skysense.models.fusion import convert_official_fusion_state_dict
    from skysense.models.swin_v2 import convert_official_hr_state_dict
    from skysense.models.vit import convert_official_vit_state_dict
    from skysense.models.weights import load_state_dict_strict

    s = SIZES[size]
    rows: list[dict] = []
    generator = torch.Generator().manual_seed(seed)

    torch.manual_seed(seed)
    reference, mine = refs.hr(s, out_indices=(0, 1, 2, 3)), ours("hr", s)
    perturb(reference, seed)
    load_state_dict_strict(mine, convert_official_hr_state_dict(reference.state_dict(), mine), "official HR")
    images = [torch.randn(2, 3, side, side, generator=generator, dtype=torch.float64) for side in (256, 320)]
    rows += compare(f"hr/{size}", reference, mine, lambda m, x: list(m(x)), lambda m, x: m.forward_maps(x), images)
    del reference, mine
    gc.collect()

    for modality, bands in (("s2", 10), ("s1", 2)):
        torch.manual_seed(seed)
        reference, mine = refs.vit(s, bands), ours("vit", s, bands)
        perturb(reference, seed)
        load_state_dict_strict(mine, convert_official_vit_state_dict(reference.state_dict()), f"official {modality}")
        frames = [torch.randn(3, bands, 64, 64, generator=generator, dtype=torch.float64)]
        if modality == "s2":  # a grid other than the position embedding's: bicubic resizing of the embedding
            frames.append(torch.randn(2, bands, 128, 96, generator=generator, dtype=torch.float64))
        rows += compare(f"{modality}/{size}", reference, mine, lambda m, x: list(m(x)), lambda m, x: m.forward_maps(x),
                        frames)  # fmt: skip
        del reference, mine
        gc.collect()

    torch.manual_seed(seed)
    reference, mine = refs.fusion(s, s.hr_dims * 8), ours("fusion", s)
    perturb(reference, seed)
    converted = convert_official_fusion_state_dict(reference.state_dict())
    # ctpe is a parameter of the official pipeline model, not of its neck: keep ours
    converted["date_encoding.weight"] = mine.date_encoding.weight.detach().clone()
    load_state_dict_strict(mine, converted, "official fusion")
    tokens = [torch.randn(64, 7, s.hr_dims * 8, generator=generator, dtype=torch.float64)]
    rows += compare(f"fusion/{size}", reference, mine, lambda m, x: [fusion_forward(m, x)],
                    lambda m, x: [m(x, None, torch.ones(x.shape[:2], dtype=torch.bool), dated=True)], tokens)  # fmt: skip
    return rows


def released_keys(refs: References) -> dict[str, list[list]]:
    """Tensor names and shapes of the official modules at the paper's sizes, as the released files hold them."""
    s = SIZES["paper"]
    keys = {}
    modules = {"hr": lambda: refs.hr(s, out_indices=(3,)), "s2": lambda: refs.vit(s, 10),
               "s1": lambda: refs.vit(s, 2), "fusion": lambda: refs.fusion(s, s.hr_dims * 8)}  # fmt: skip
    for name, build in modules.items():
        module = build()  # on the CPU: the official constructors call .item() on tensors, which meta ones refuse
        keys[name] = [[key, list(value.shape)] for key, value in module.state_dict().items()]
        del module
        gc.collect()
    return keys


def keys_document(source: str, keys: dict[str, list[list]]) -> str:
    """JSON with one line per tensor: ``{"source": ..., "modules": {"hr": [["name", [shape]], ...], ...}}``."""
    modules = ",\n".join(
        f"  {json.dumps(name)}: [\n" + ",\n".join(f"    {json.dumps(entry)}" for entry in entries) + "\n  ]"
        for name, entries in keys.items()
    )
    head = json.dumps({"source": source, "note": "tensor names and shapes only, no weights"})[:-1]
    return f'{head}, "modules": {{\n{modules}\n}}}}\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, help="a SkySense++ checkout to import the definitions from")
    parser.add_argument("--size", action="append", choices=sorted(SIZES), help="architectures to compare (repeat)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys-out", type=Path, help="write the paper-size tensor names and shapes here (JSON)")
    parser.add_argument("--json", type=Path, help="write the comparison rows here")
    args = parser.parse_args(argv)
    refs = References(args.official_repo)
    print(f"reference: {refs.source}; torch {torch.__version__}", flush=True)
    if args.keys_out is not None:
        keys = released_keys(refs)
        args.keys_out.write_text(keys_document(refs.source, keys))
        print(f"wrote {args.keys_out}: " + ", ".join(f"{k} {len(v)} tensors" for k, v in keys.items()))
    rows = [row for size in args.size or [] for row in check_size(refs, size, args.seed)]
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    worst = max((row["max_abs_diff"] for row in rows if row["dtype"] == "float64"), default=0.0)
    if rows:
        print(f"worst float64 difference: {worst:.2e} ({'PASS' if worst < 1e-5 else 'FAIL'} at 1e-5)")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
