"""Loading the official SkySense release files (names as in the official mmseg code) into a model."""

from __future__ import annotations

import pickle
import re
import warnings

import pytest
import torch

from skysense import create_model, load_official_weights
from skysense.errors import InputError

# ours → official (inverse of the converters' rules), to write files laid out like the released ones
_TO_OFFICIAL = [
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
    (r"^proj\.", "porj_linear."),
    (r"^date_encoding\.weight$", "ctpe"),
    (r"^blocks\.(\d+)\.norm1\.", r"layers.\1.ln1."),
    (r"^blocks\.(\d+)\.norm2\.", r"layers.\1.ln2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.weight$", r"layers.\1.attn.attn.in_proj_weight"),
    (r"^blocks\.(\d+)\.attn\.qkv\.bias$", r"layers.\1.attn.attn.in_proj_bias"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attn.attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"layers.\1.ffn.layers.0.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"layers.\1.ffn.layers.1."),
    (r"^norm\.", "ln1."),
    (r"^conv\.", "layers.0."),
]


def _official(module: torch.nn.Module, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in module.state_dict().items():
        for pattern, replacement in _TO_OFFICIAL:
            if re.search(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        out[prefix + key] = value.clone()
    return out


def test_load_official_sentinel_head_and_fusion_files(tmp_path) -> None:
    torch.manual_seed(0)
    source = create_model("tiny")
    files = {}
    for name in ("s2", "s1", "s2_head", "s1_head", "fusion"):
        files[name] = tmp_path / f"skysense_model_{name}.pth"
        torch.save({"state_dict": _official(getattr(source, name))}, files[name])
    torch.manual_seed(1)
    target = create_model("tiny")
    load_official_weights(target, **files)
    for name in files:
        for key, value in getattr(source, name).state_dict().items():
            assert torch.equal(getattr(target, name).state_dict()[key], value), (name, key)


def test_a_fusion_file_without_the_date_table_loads_with_a_warning(tmp_path) -> None:
    # the official fusion neck (SkySense++'s TransformerEncoder) has no ctpe: it is the pipeline model's parameter
    source = create_model("tiny")
    path = tmp_path / "skysense_model_fusion.pth"
    weights = _official(source.fusion, prefix="")
    weights.pop("ctpe")
    torch.save(weights, path)
    target = create_model("tiny")
    table = target.fusion.date_encoding.weight.detach().clone()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_official_weights(target, fusion=path)
    assert [str(w.message) for w in caught if "ctpe" in str(w.message) and str(path) in str(w.message)]
    assert torch.equal(target.fusion.date_encoding.weight, table)
    for key, value in source.fusion.state_dict().items():
        if key != "date_encoding.weight":
            assert torch.equal(target.fusion.state_dict()[key], value), key


def test_missing_and_unexpected_keys_are_listed(tmp_path) -> None:
    target = create_model("tiny")
    weights = _official(target.s2)
    weights.pop("backbone.layers.1.ln2.weight")
    path = tmp_path / "s2.pth"
    torch.save(weights, path)
    # A WeightsMismatchError: an InputError (exit code 1 in the command) that is still a KeyError.
    with pytest.raises(KeyError, match=r"s2.pth: its tensors do not match the model: 1 missing key \[blocks"):
        load_official_weights(target, s2=path)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_cannot_run_code(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, handle)
    with pytest.raises(InputError, match="evil.pth: a pickle that is not a weights-only PyTorch checkpoint") as info:
        load_official_weights(create_model("tiny"), s2=path)
    assert "weights_only=False" not in str(info.value)
    assert "this must never run" not in capsys.readouterr().out
