"""Saving and loading weights.

* Our format: one ``.safetensors`` file holding the state dict and, in its metadata, the model config as JSON, so
  that :func:`from_pretrained` rebuilds the exact model with no code and no pickle.
* The official SkySense release: ``skysense_model_backbone_hr.pth``, ``…_backbone_s2.pth``, ``…_backbone_s1.pth``,
  ``…_head_s2.pth``, ``…_head_s1.pth``, ``…_fusion.pth`` (mmcv/mmseg names), mapped onto ours by the converters
  beside each model. ``.pth`` files are read with ``torch.load(weights_only=True)``: a checkpoint can never run code.
  Unknown or missing keys are errors that list them.

Every file is read through one of two checked readers — :func:`read_torch_checkpoint` (``.ckpt``/``.pth``/``.pt``)
and :func:`_read_safetensors` / :func:`read_config` (``.safetensors``) — which turn an empty, truncated or corrupt
file, or a pickle holding objects other than tensors, into one :class:`~skysense.errors.InputError` that names the
file, the problem and what to do. Weights that do not fit the model raise :class:`WeightsMismatchError`: counts of
missing, unexpected and mis-shaped keys with the first few of each, not every key.
"""

from __future__ import annotations

import json
import mmap
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from skysense.errors import InputError
from skysense.models.fusion import convert_official_fusion_state_dict
from skysense.models.registry import config_from_dict, config_to_dict
from skysense.models.skysense import SkySense
from skysense.models.swin_v2 import convert_official_hr_state_dict
from skysense.models.vit import convert_official_upsample_head_state_dict, convert_official_vit_state_dict

FORMAT = "skysense/1"
MISMATCH_EXAMPLES = 5  # keys listed per kind (missing, unexpected, mis-shaped) in a WeightsMismatchError
_MISMATCH_MESSAGE_LIMIT = 1000  # characters; fewer examples are listed when long key names would pass it
_AGAIN = "download or save it again"
# Signs, in torch's weights-only refusal, that the pickle holds objects (not a damaged stream)
_OBJECT_REFUSALS = ("GLOBAL ", "Trying to call reduce", "Can only build", "Can only create new object")


class WeightsMismatchError(InputError, KeyError):
    """A weights file or checkpoint whose tensors do not fit the model (missing, unexpected or mis-shaped keys).

    An :class:`~skysense.errors.InputError` (exit code 1 in the ``skysense`` command) that is also a ``KeyError``,
    which :func:`load_state_dict_strict` raised before; code that catches ``KeyError`` keeps working.
    """

    def __str__(self) -> str:  # the message as written, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


def save_pretrained(model: SkySense, path: str | Path) -> Path:
    """Write weights + config to a ``.safetensors`` file; returns the path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_pretrained writes .safetensors files, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": json.dumps(config_to_dict(model.config))}
    save_file(state, str(path), metadata=metadata)
    return path


def _examples(keys: list[str], count: int) -> str:
    shown = ", ".join(keys[:count])
    return f"[{shown}, …]" if len(keys) > count else f"[{shown}]"


def load_state_dict_strict(
    module: nn.Module, state_dict: dict[str, torch.Tensor], what: str, fix: str | None = None
) -> None:
    """Load every tensor into ``module``.

    Args:
        module: the model (or part of it) to fill.
        state_dict: the file's tensors, under the module's names.
        what: the file, as the message should name it (e.g. ``"weights file runs/a.safetensors"``).
        fix: what the user should do when the keys do not match (default: use weights saved from this model's
            preset/config, or build the model the file was saved from).

    Raises:
        WeightsMismatchError: naming ``what``, with the number of missing, unexpected and mis-shaped keys and the
            first :data:`MISMATCH_EXAMPLES` of each (a ``KeyError`` as well as an ``InputError``).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mismatched:
        if fix is None:
            fix = (
                "the file was saved from another preset or config: build the model it was saved from, or use "
                "weights saved from this model's preset"
            )
        for count in range(MISMATCH_EXAMPLES, 0, -1):  # fewer examples only when long names would flood the line
            parts = [
                f"{len(keys)} {label if len(keys) == 1 else plural} {_examples(keys, count)}"
                for keys, label, plural in (
                    (missing, "missing key", "missing keys"),
                    (unexpected, "unexpected key", "unexpected keys"),
                    (mismatched, "shape mismatch", "shape mismatches"),
                )  # fmt: skip
                if keys
            ]
            message = f"{what}: its tensors do not match the model: {', '.join(parts)}; {fix}"
            if len(message) < _MISMATCH_MESSAGE_LIMIT:
                break
        raise WeightsMismatchError(message)
    module.load_state_dict(state_dict, strict=True)


# ------------------------------------------------------------------------------------------------------------------
# Checked readers: one InputError naming the file for an empty, truncated, corrupt or unsafe file
# ------------------------------------------------------------------------------------------------------------------
def _check_readable(path: Path, what: str) -> int:
    """The file's size; raises FileNotFoundError (no file) or InputError (empty)."""
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes); {_AGAIN}")
    return size


def _holds_global(path: Path, name: str) -> bool:
    """Whether the file holds the pickle reference ``module\\nqualname\\n`` of ``name`` in full (a file cut short
    inside the reference makes torch refuse a partial name such as ``torch._utils._reb``)."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
        return False
    parts = name.split(".")
    references = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(1, len(parts))]
    if len(parts) == 1 or parts[0] == "builtins":  # torch names builtins bare; protocol 2 writes __builtin__
        qualname = name.removeprefix("builtins.")
        references += [("builtins", qualname), ("__builtin__", qualname)]
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return any(data.find(f"{module}\n{qualname}\n".encode()) >= 0 for module, qualname in references)


def read_torch_checkpoint(path: str | Path) -> Any:
    """``torch.load`` a ``.ckpt``/``.pth``/``.pt`` file with ``weights_only=True`` (a checkpoint can never run code).

    The only place skysense calls ``torch.load``. None of torch's own message reaches the user, not even as the
    error's cause: for a pickle that holds other objects it advises ``weights_only=False``, which runs the file's code.

    Raises:
        FileNotFoundError: no file at ``path``.
        InputError: naming the file: empty; truncated or corrupt (not a complete zip archive or pickle); not a
            PyTorch checkpoint; or holding pickled objects other than tensors, which only a full (unsafe) unpickler
            reads (the message says how to re-save it as a state dict of tensors).
    """
    path = Path(path)
    size = _check_readable(path, "checkpoint")
    with path.open("rb") as handle:  # an unreadable file raises its own OSError (permission, I/O) here
        head = handle.read(9)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (MemoryError, RecursionError):
        raise
    except Exception as err:  # noqa: BLE001 - torch raises anything from EOFError to KeyError on bad bytes
        error = err
    refusal = isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)
    problem = _checkpoint_problem(path, head, size, str(error) if refusal else None)
    raise InputError(f"{path}: {problem}") from (None if refusal else error)


def _checkpoint_problem(path: Path, head: bytes, size: int, refusal: str | None) -> str:
    """What is wrong with a file ``torch.load`` failed on, and what to do (none of torch's text).

    Args:
        path: the file.
        head: its first 9 bytes.
        size: its size in bytes.
        refusal: the weights-only unpickler's message when it refused the pickle, else None.
    """
    if not head.startswith((b"PK", b"\x80")):  # torch.save writes a zip archive, or a pickle (protocol >= 2)
        looks = " (it looks like a .safetensors file: give it that suffix)" if head[8:9] == b"{" else ""
        return f"not a PyTorch checkpoint (neither a zip archive nor a pickle){looks}; check that it is the right file"
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        return f"truncated: its zip archive has no end record ({size} bytes); {_AGAIN}"
    resave = (
        "skysense only reads weights-only checkpoints (unpickling objects can run code): where the file was made, "
        "re-save it as a state dict of tensors, e.g. `torch.save(model.state_dict(), path)`, or as a .safetensors "
        "file with skysense.save_pretrained"
    )
    if refusal is not None:
        found = re.search(r"GLOBAL (\S+?)[.]? (?:was|whose)", refusal)  # only the class's name is taken
        if found is not None and _holds_global(path, found.group(1)):
            return f"holds pickled Python objects other than tensors (the first is {found.group(1)}); {resave}"
        if found is None and any(sign in refusal for sign in _OBJECT_REFUSALS):
            return f"holds pickled Python objects other than tensors; {resave}"
        if found is None:
            return (
                "a pickle that is not a weights-only PyTorch checkpoint (it uses pickle features torch.save does "
                f"not write, e.g. a file of pickle.dump, or it is corrupt); {resave}"
            )
        # else a reference cut short (``torch._utils._reb``): the file ends inside it, it is truncated
    if head.startswith(b"PK"):
        problem = "truncated or corrupt: a zip archive that is not a complete PyTorch checkpoint"
    else:  # a pickle (torch's legacy format) cut short or damaged
        problem = f"truncated or corrupt: its pickle stream is incomplete or damaged ({size} bytes)"
    return f"{problem}; {_AGAIN}, or check that it is the right file"


def _safetensors_error(path: Path, err: Exception) -> InputError:
    text = str(err).lower()
    if "incomplete metadata" in text or "invalid header length" in text or "header too small" in text:
        problem = "truncated: the file is shorter than its header says (an interrupted download or save?)"
    else:
        problem = "its header is not valid safetensors (not a safetensors file, or corrupt)"
    return InputError(f"{path} is not a readable safetensors file: {problem}; {_AGAIN}, or check the file")


def _read_safetensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file; an empty, truncated or corrupt file raises InputError naming it."""
    _check_readable(path, "weights file")
    try:
        return load_file(str(path), device=device)
    except (MemoryError, OSError):
        raise
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type (SafetensorError)
        raise _safetensors_error(path, err) from err


def _config_differences(file_config: dict, model_config: dict, limit: int = 3) -> list[str]:
    """``"hr.embed_dim: file 64, model 32"`` for the first ``limit`` fields of the model's modules that differ."""
    differences = []
    for module, fields in model_config.items():
        theirs = file_config.get(module)
        if not isinstance(fields, dict) or not isinstance(theirs, dict):
            continue
        for field, value in fields.items():
            ours, other = json.dumps(value), json.dumps(theirs.get(field))  # tuples and lists alike, as JSON
            if field in theirs and ours != other:
                differences.append(f"{module}.{field}: file {other}, model {ours}")
    return differences[:limit]


def read_config(path: str | Path) -> dict:
    """The config stored in a skysense ``.safetensors`` file.

    Raises:
        FileNotFoundError: no file at ``path``.
        InputError: naming the file: empty, truncated, not safetensors, or not written by skysense.
    """
    path = Path(path)
    _check_readable(path, "weights file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (MemoryError, OSError):
        raise
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for corrupt headers
        raise _safetensors_error(path, err) from err
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise InputError(
            f"{path} is not a skysense weights file (no '{FORMAT}' config in its safetensors metadata); "
            "official .pth checkpoints are loaded with skysense.load_official_weights"
        )
    try:
        return json.loads(metadata["config"])
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: the model config in its metadata is not valid JSON ({err.msg} at character {err.pos}); "
            "save the model again with skysense.save_pretrained"
        ) from None


def from_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> SkySense:
    """Rebuild a model saved by :func:`save_pretrained` (config from the file's metadata, then strict load)."""
    path = Path(path)
    model = SkySense(config_from_dict(read_config(path)))
    fix = (
        "the model config in its metadata does not describe its tensors (edited, or written by other code): "
        "save the model again with skysense.save_pretrained"
    )
    load_state_dict_strict(model, _read_safetensors(path, str(map_location)), f"weights file {path}", fix)
    return model.to(map_location)


def torch_load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt``/``.ckpt`` file safely (:func:`read_torch_checkpoint`) and unwrap
    ``state_dict``/``model``.

    Raises:
        FileNotFoundError: no file at ``path``.
        InputError: naming the file, as :func:`read_torch_checkpoint`, or when it holds no state dict of tensors.
    """
    path = Path(path)
    checkpoint = read_torch_checkpoint(path)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise InputError(
            f"{path}: does not hold a state dict of tensors (nor one under 'state_dict' or 'model'); "
            "save one with `torch.save(model.state_dict(), path)`"
        )
    return checkpoint


def load_official_weights(
    model: SkySense,
    hr: str | Path | None = None,
    s2: str | Path | None = None,
    s1: str | Path | None = None,
    s2_head: str | Path | None = None,
    s1_head: str | Path | None = None,
    fusion: str | Path | None = None,
) -> SkySense:
    """Load any of the six official SkySense checkpoint files into ``model`` (normally the ``paper`` preset).

    For an RGB+NIR HR encoder (``hr={"in_chans": 4}``) the NIR patch-embedding weights are copied from the red
    channel, as the official converter does. A fusion file without the day-of-year table ``ctpe`` (the official
    neck's own parameters) loads with a warning and leaves ``model.fusion.date_encoding`` as it is.

    The mappings are checked numerically against the official definitions by ``scripts/official_parity.py``
    (float64 outputs within 1e-5) and by name and shape in CI (``tests/models/test_official_keys.py``).
    """
    converters: dict[str, Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
        "hr": lambda sd: convert_official_hr_state_dict(sd, model.hr),
        "s2": convert_official_vit_state_dict,
        "s1": convert_official_vit_state_dict,
        "s2_head": convert_official_upsample_head_state_dict,
        "s1_head": convert_official_upsample_head_state_dict,
        "fusion": convert_official_fusion_state_dict,
    }
    files = {"hr": hr, "s2": s2, "s1": s1, "s2_head": s2_head, "s1_head": s1_head, "fusion": fusion}
    for name, path in files.items():
        if path is None:
            continue
        module = getattr(model, name)
        if module is None:
            raise ValueError(f"cannot load {path}: this model has no {name} module")
        converted = converters[name](torch_load_weights(path))
        if name == "fusion" and "date_encoding.weight" not in converted:
            # The official neck (SkySense++'s TransformerEncoder) holds no day-of-year table: ``ctpe`` is a parameter
            # of the whole pipeline model. Load the neck, keep the table as it is and say so.
            converted["date_encoding.weight"] = module.date_encoding.weight.detach()
            warnings.warn(
                f"official fusion checkpoint {path} holds no day-of-year table ('ctpe', a parameter of the official "
                "pipeline model rather than of its fusion neck): the fusion's date_encoding keeps its current values; "
                "load it from the whole-model checkpoint (model.fusion.date_encoding.weight) for the official dates",
                stacklevel=2,
            )
        fix = (
            f"the official files fit the 'paper' preset (skysense.create_model('paper')): check that the model is "
            f"built from it and that this is the {name} file"
        )
        load_state_dict_strict(module, converted, f"official {name} checkpoint {path}", fix)
    return model


def load_backbone_weights(backbone: SkySense, path: str | Path, network: str = "teacher") -> list[str]:
    """Load pretrained weights into a (possibly partial) backbone for fine-tuning.

    Reads a ``.safetensors`` file of :func:`save_pretrained`, or a pretraining checkpoint (``.ckpt`` of
    ``skysense pretrain``, read with ``weights_only=True``) whose ``network`` ("teacher", the EMA network that
    DINO-style methods evaluate, or "student") is taken. Every parameter and buffer of ``backbone`` must be in the
    file with its shape; modules the file has but the backbone was built without (e.g. S1 for an HR-only task) are
    skipped and returned.

    Returns:
        The top-level modules of the file that were not loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    fix = None
    if path.suffix == ".safetensors":
        file_config = read_config(path)  # refuses files that are not ours
        state = _read_safetensors(path)
        differences = _config_differences(file_config, config_to_dict(backbone.config))
        if differences:
            fix = (
                f"the file was saved from another preset or config ({'; '.join(differences)}): build the model "
                "with the preset the file was saved from, or use weights saved from this one"
            )
    else:
        if network not in ("teacher", "student"):
            raise ValueError(f"network must be 'teacher' or 'student', got {network!r}")
        checkpoint = torch_load_weights(path)
        prefix = f"meta.{network}.backbone."
        state = {k[len(prefix) :]: v for k, v in checkpoint.items() if k.startswith(prefix)}
        if not state:
            raise KeyError(f"{path} has no '{prefix}*' weights: is it a skysense pretraining checkpoint?")
    own_modules = {name.split(".", 1)[0] for name in backbone.state_dict()}
    skipped = sorted({k.split(".", 1)[0] for k in state} - own_modules)
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] in own_modules}
    load_state_dict_strict(backbone, state, f"weights file {path}", fix)
    return skipped
