"""Faulty checkpoints and weights files (issue 13): each is refused with one :class:`~skysense.errors.InputError` that
names the file and what to do; nothing in a checkpoint is imported or executed, and torch's advice to load with
``weights_only=False`` never reaches the user."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import skysense
from skysense.errors import InputError
from skysense.inference.models import _task_class, load_scene_model
from skysense.models.registry import config_to_dict, get_config
from skysense.models.weights import (
    WeightsMismatchError,
    from_pretrained,
    load_backbone_weights,
    read_config,
    torch_load_weights,
)
from skysense.tasks.change_detection import ChangeDetectionTask
from skysense.tasks.classification import ClassificationTask
from skysense.tasks.detection import DetectionTask
from skysense.tasks.segmentation import SegmentationTask

ZEN = "Beautiful is better than ugly"


class _Custom:
    """A non-tensor object that a pickled (not weights-only) checkpoint carries."""

    def __init__(self) -> None:
        self.value = 3


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``.safetensors`` file written by :func:`skysense.save_pretrained` (tiny preset)."""
    return skysense.save_pretrained(skysense.create_model("tiny"), tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="module")
def lightning_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Lightning-style pretraining ``.ckpt`` dict (what ``skysense pretrain`` writes), saved with ``torch.save``."""
    backbone = skysense.create_model("tiny")
    state = {f"meta.teacher.backbone.{k}": v for k, v in backbone.state_dict().items()}
    state.update({f"meta.student.backbone.{k}": v.clone() for k, v in backbone.state_dict().items()})
    path = tmp_path_factory.mktemp("ckpt") / "pretrain.ckpt"
    torch.save({"state_dict": state, "epoch": 1, "global_step": 10,
                "hyper_parameters": {"preset": "tiny"}, "pytorch-lightning_version": "2.4.0"}, path)  # fmt: skip
    return path


def _truncated(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _assert_one_clear_message(err: InputError, path: Path, *needles: str) -> None:
    message = str(err)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    assert "weights_only=False" not in message and "Weights only load failed" not in message
    assert "\n" not in message


# ------------------------------------------------------------------------------------------------------------------
# 1. The task class comes from an allowlist; a checkpoint cannot make skysense import a module
# ------------------------------------------------------------------------------------------------------------------
def test_a_checkpoint_cannot_import_a_module(tmp_path: Path) -> None:
    """Before: ``skysense_task="this.Zen"`` imported ``this`` (printing the Zen of Python), then failed on ``Zen``."""
    path = tmp_path / "zen.ckpt"
    torch.save({"state_dict": {"head.weight": torch.zeros(2)}, "skysense_task": "this.Zen"}, path)
    script = textwrap.dedent(f"""
        import sys
        from skysense.errors import InputError
        from skysense.inference.models import load_scene_model
        before = "this" in sys.modules
        try:
            load_scene_model({str(path)!r})
        except InputError as err:
            print("REFUSED:", err)
        print("IMPORTED:", "this" in sys.modules and not before)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert ZEN not in run.stdout
    assert "IMPORTED: False" in run.stdout
    refusal = next(line for line in run.stdout.splitlines() if line.startswith("REFUSED:"))
    assert str(path) in refusal and "'this.Zen'" in refusal
    assert "SegmentationTask" in refusal and "ClassificationTask" in refusal  # the allowed names are listed


@pytest.mark.parametrize("value", ["skysense.cli.main", "os.system", "skysense.tasks.segmentation.torch", 42,
                                   "SegmentationTask.__init__", "x" * 5000])  # fmt: skip
def test_only_skysense_task_names_are_accepted(tmp_path: Path, value: object) -> None:
    with pytest.raises(InputError, match="skysense_task") as info:
        _task_class({"skysense_task": value}, tmp_path / "task.ckpt")
    assert str(tmp_path / "task.ckpt") in str(info.value)
    assert len(str(info.value)) < 600  # a huge value is shortened, not echoed


def test_full_and_bare_task_names_resolve_to_the_task_classes(tmp_path: Path) -> None:
    for cls in (ClassificationTask, SegmentationTask, ChangeDetectionTask, DetectionTask):
        full = f"{cls.__module__}.{cls.__qualname__}"  # what BackboneTask.on_save_checkpoint writes
        assert _task_class({"skysense_task": full}, tmp_path / "a.ckpt") is cls
        assert _task_class({"skysense_task": cls.__name__}, tmp_path / "a.ckpt") is cls
    # Checkpoints written before the class was stored are still told apart by their options.
    assert _task_class({"hyper_parameters": {"ignore_index": 255}}, tmp_path / "a.ckpt") is SegmentationTask


# ------------------------------------------------------------------------------------------------------------------
# 2. Empty, truncated, corrupt and pickled files
# ------------------------------------------------------------------------------------------------------------------
def test_empty_checkpoint(tmp_path: Path) -> None:
    """Before: a bare ``EOFError`` with no message and no file name."""
    for name in ("empty.ckpt", "empty.pth"):
        path = tmp_path / name
        path.touch()
        with pytest.raises(InputError) as info:
            load_scene_model(path) if name.endswith(".ckpt") else torch_load_weights(path)
        _assert_one_clear_message(info.value, path, "empty file (0 bytes)")


@pytest.mark.parametrize("fraction", [0.5, 0.999, 0.0005])
def test_truncated_checkpoint(tmp_path: Path, lightning_checkpoint: Path, fraction: float) -> None:
    """Before: ``OSError: [Errno 22] Invalid argument`` or "PytorchStreamReader failed reading zip archive"."""
    path = _truncated(lightning_checkpoint, tmp_path / "cut.ckpt", fraction)
    with pytest.raises(InputError) as info:
        load_scene_model(path, "embedding")
    _assert_one_clear_message(info.value, path, "truncated", "save it again")
    assert "PytorchStreamReader" not in str(info.value)
    with pytest.raises(InputError, match="truncated"):
        load_backbone_weights(skysense.create_model("tiny"), path)


def test_not_a_checkpoint_at_all(tmp_path: Path, weights: Path) -> None:
    """Before: ``KeyError: '101'`` for a text file; an ``UnpicklingError`` for other bytes."""
    text = tmp_path / "notes.ckpt"
    text.write_text("hello world\n")
    renamed = tmp_path / "weights.pth"  # a safetensors file under a torch name
    renamed.write_bytes(weights.read_bytes())
    for path in (text, renamed):
        with pytest.raises(InputError) as info:
            torch_load_weights(path)
        _assert_one_clear_message(info.value, path, "not a PyTorch checkpoint")
    assert "looks like a .safetensors file" in str(info.value)


def test_truncated_legacy_pickle_checkpoint(tmp_path: Path) -> None:
    """Files of ``torch.save(..., _use_new_zipfile_serialization=False)``; before: a bare ``EOFError``."""
    path = tmp_path / "legacy.pth"
    torch.save({"x": torch.zeros(100, 100)}, path, _use_new_zipfile_serialization=False)
    for fraction in (0.5, 0.001):
        cut = _truncated(path, tmp_path / f"legacy_{fraction}.pth", fraction)
        with pytest.raises(InputError) as info:
            torch_load_weights(cut)
        _assert_one_clear_message(info.value, cut, "truncated")
    assert torch.equal(torch_load_weights(path)["x"], torch.zeros(100, 100))  # the whole file still loads


def test_pickled_objects_are_refused_without_suggesting_unsafe_loading(tmp_path: Path, capsys) -> None:
    """Before: torch's "Weights only load failed … set `weights_only=False`" text, which invites running the file."""
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "obj": _Custom()}, path)
    for load in (lambda: load_scene_model(path), lambda: torch_load_weights(path)):
        with pytest.raises(InputError) as info:
            load()
        err = info.value
        _assert_one_clear_message(err, path, "weights-only", "torch.save(model.state_dict(), path)", "_Custom")
        assert "weights_only" not in str(err)
        assert err.__cause__ is None and err.__suppress_context__  # torch's message is not chained either
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, evil)
    with pytest.raises(InputError, match="weights-only"):
        torch_load_weights(evil)
    assert "this must never run" not in capsys.readouterr().out


def test_faulty_safetensors_files(tmp_path: Path, weights: Path) -> None:
    """Before: the empty file said "header too small", a cut one "incomplete metadata, file not fully covered"."""
    data = weights.read_bytes()
    cases = {
        "empty": (b"", "empty file (0 bytes)"),
        "cut_in_data": (data[: len(data) // 2], "truncated"),
        "cut_in_header": (data[:40], "truncated"),
        "header_garbage": (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json garbage", "header"),
        "text": (b"this is not a weights file at all, just some text", "header"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        for load in (from_pretrained, read_config, lambda p: load_backbone_weights(skysense.create_model("tiny"), p),
                     lambda p: load_scene_model(p, "embedding")):  # fmt: skip
            with pytest.raises(InputError) as info:
                load(path)
            intro = () if name == "empty" else ("is not a readable safetensors file",)
            _assert_one_clear_message(info.value, path, *intro, problem)


# ------------------------------------------------------------------------------------------------------------------
# 3. Weights of another preset or config: a summary, not a 22,000-character KeyError
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return skysense.save_pretrained(skysense.create_model("small"), tmp_path_factory.mktemp("s") / "small.safetensors")


def test_weights_of_another_preset_are_summarised(small_weights: Path) -> None:
    """Before: a 21,929-character KeyError listing every key (``load_backbone_weights``, tiny model, small file)."""
    with pytest.raises(WeightsMismatchError) as info:
        load_backbone_weights(skysense.create_model("tiny"), small_weights)
    message = str(info.value)
    assert len(message) < 1000, len(message)
    assert str(small_weights) in message and "shape mismatches" in message
    assert "hr.embed_dim: file 64, model 32" in message  # says which part of the config differs
    assert "preset" in message
    assert isinstance(info.value, InputError) and isinstance(info.value, KeyError)  # old `except KeyError` still work


def test_edited_config_metadata_is_summarised(tmp_path: Path, small_weights: Path) -> None:
    """A small model's tensors under a tiny config: ``from_pretrained`` builds tiny and cannot load them."""
    path = tmp_path / "edited.safetensors"
    config = json.dumps(config_to_dict(get_config("tiny")))
    save_file(load_file(str(small_weights)), str(path), metadata={"format": "skysense/1", "config": config})
    with pytest.raises(WeightsMismatchError) as info:
        from_pretrained(path)
    message = str(info.value)
    assert len(message) < 1000, len(message)
    assert str(path) in message
    own = skysense.create_model("tiny").state_dict()
    file = load_file(str(small_weights))
    counts = {"missing keys": len(set(own) - set(file)), "unexpected keys": len(set(file) - set(own)),
              "shape mismatches": sum(own[k].shape != file[k].shape for k in set(own) & set(file))}  # fmt: skip
    assert counts["shape mismatches"] > 5
    for label, count in counts.items():  # a kind with no key is left out
        assert (f"{count} {label} [" in message) == (count > 0), (label, count, message)
    assert message.count("…") == sum(count > 5 for count in counts.values())  # only the first five are listed
    assert "save_pretrained" in message  # what to do: the config in the file does not describe its tensors
