"""``benchmarks/gpu_check.py --device cpu --quick`` runs every section (the scene sections when rasterio is installed)
and writes one markdown table with a number in every row.

The scene section runs ``benchmarks/scene.py``, which reads the real ``cogeo.tif`` from ../shared/data itself (it has
no option for another data folder): on the excerpts in tests/fixtures (a clone without ../shared/data) the other
four sections run and the scene section is left out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_path, using_fixtures

ROOT = Path(__file__).resolve().parents[1]


def _table(text: str) -> list[list[str]]:
    """The rows of the markdown table (header and separator left out) as lists of cells."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[1:]]


@pytest.mark.slow
def test_gpu_check_runs_every_section_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.md"
    sections = ["matmul", "encoders", "forward", "pretrain", "scene", "sentinel"]
    if using_fixtures():  # benchmarks/scene.py would look for ../shared/data, which a clone need not have
        sections.remove("scene")
        sections.remove("sentinel")
    else:  # the scene and sentinel sections' inputs (skips if absent)
        shared_path("rasterio_testdata", "tests", "data", "cogeo.tif")
        shared_path("sen1floods11_samples", "cloudtostreet_official_sample", "S2", "Spain_7370579_S2Hand.tif")
    command = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out),
               "--sections", *sections]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    assert text in result.stdout  # the same table printed and written
    rows = _table(text)
    assert not [row for row in rows if row[1].startswith("FAILED")], text
    by_section: dict[str, list[list[str]]] = {}
    for row in rows:
        assert len(row) == 5, row
        by_section.setdefault(row[0], []).append(row)
    assert set(by_section) == set(sections), text
    for section, section_rows in by_section.items():
        if section in ("scene", "sentinel") and section_rows[0][1].startswith("skipped: rasterio"):
            continue
        for _, metric, value, _, ratio in section_rows:
            assert float(value) > 0, (section, metric, value)
            assert ratio == "–" or float(ratio) > 0, (section, metric, ratio)
    metrics = " ".join(row[1] for row in rows)
    for expected in ("bf16 peak TFLOP/s", "ours img/s", "samples/s", "s/step", "MFU", "HFU"):
        assert expected in metrics, expected
    # ours against timm for both encoders, with the timm rate as the reference
    encoder_rows = [row for row in by_section["encoders"] if re.search(r": ours( \(.*\))? img/s$", row[1])]
    assert len(encoder_rows) == 2 and all(row[3].startswith("timm ") for row in encoder_rows)
    # Swin V2 also with its other attention path (the per-device choice of issue 15, item 2)
    assert any("ours with explicit softmax attention" in row[1] for row in by_section["encoders"])
