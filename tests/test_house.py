"""The floors of the package import one way (layers ← models ← heads ← tasks ← cli; data and losses never import
models), and the neutral structures (:mod:`skysense.containers`) let a model be built where GDAL is absent."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import skysense

PACKAGE = Path(skysense.__file__).parent

# what each floor may import from the package (besides itself)
ALLOWED = {
    "batch": set(),
    "errors": set(),
    "files": set(),  # crash-consistent writes: neutral, like errors
    "containers": {"batch"},
    "layers": {"batch", "containers", "errors", "files"},
    "losses": {"batch", "containers", "errors", "files"},
    "data": {"batch", "containers", "errors", "files"},
    "models": {"batch", "containers", "errors", "files", "layers"},
    "heads": {"batch", "containers", "errors", "files", "layers", "models"},
    "pretrain": {"batch", "containers", "errors", "files", "layers", "models", "losses", "data"},
    "tasks": {"batch", "containers", "errors", "files", "layers", "models", "heads", "losses", "data", "pretrain"},
    "inference": {"batch", "containers", "errors", "files", "layers", "models", "heads", "data", "tasks"},
}


def _imports(path: Path) -> set[str]:
    floors = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        floors |= {n.split(".")[1] for n in names if n.startswith("skysense.")}
    return floors


def test_floors_import_one_way() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        floor = rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")
        if floor not in ALLOWED:
            continue  # cli, demo, the package root: the top floor imports anything
        for imported in _imports(path) - {floor} - ALLOWED[floor]:
            wrong.append(f"{path.relative_to(PACKAGE)} imports skysense.{imported}")
    assert not wrong, wrong
    assert _imports(PACKAGE / "data" / "collate.py") <= {"batch", "containers", "data"}  # not layers any more


def test_models_and_pretraining_import_without_rasterio() -> None:
    code = """
import sys
sys.modules["rasterio"] = None  # importing it now fails, as where GDAL is not installed
import torch
from skysense.batch import SkySenseInput
from skysense.containers import day_of_year_index
from skysense.models.registry import create_model
import skysense.data.collate, skysense.tasks.pretrain  # pretraining collates batches without GDAL too
model = create_model("tiny").eval()
x = SkySenseInput(hr=torch.rand(1, 3, 128, 128), s2=torch.rand(1, 2, 10, 4, 4),
                  s2_day_of_year=day_of_year_index(["2020-01-05", "2020-07-01"])[None],
                  lat=torch.tensor([40.0]), lon=torch.tensor([-3.7]))
with torch.no_grad():
    out = model(x)
print("ok", tuple(out.fused.shape) if out.fused is not None else None)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")
