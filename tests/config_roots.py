"""Point a recipe of configs/ at the test data: its own ``../shared/data`` paths, or the excerpts in tests/fixtures.

The configs name their data by paths relative to the repository (``root: ../shared/data/<dataset>``). On the real
data the tests run them as written; on the excerpts (``tests.conftest.using_fixtures``) these command-line overrides
move every root to the excerpt of the same dataset, so that the same recipe runs on a clone without ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import shared_path, using_fixtures

CONFIG_DATA = Path("..") / "shared" / "data"  # how the configs spell the data folder


def data_path(root: str, full: bool = False) -> Path:
    """``shared_path`` of a root as a config writes it (``../shared/data/<dataset>/...``); skips when it is missing."""
    return shared_path(*Path(root).relative_to(CONFIG_DATA).parts, full=full)


def root_overrides(config: Path, source_batch_size: int | None = None) -> list[str]:
    """CLI arguments that read the data of ``config`` from the test data (none on the real data).

    A task config (``data.init_args.root``) gets ``--data.init_args.root``; a pretraining config (``data.sources``,
    one root per source) gets the whole ``--data.sources`` with each root moved, since jsonargparse replaces a dict
    entry given by a dotted key instead of merging it. Skips the test when a dataset is in neither place.
    ``source_batch_size`` sets every pretraining source's batch size (tests that check plumbing, not learning).
    """
    data = yaml.safe_load(config.read_text())["data"]
    if "sources" in data:
        sources = data["sources"]
        roots = {name: data_path(spec["init_args"]["root"]) for name, spec in sources.items()}
        if not using_fixtures() and source_batch_size is None:
            return []
        for name, spec in sources.items():
            spec["init_args"]["root"] = str(roots[name])
            if source_batch_size is not None:
                spec["batch_size"] = source_batch_size
        return ["--data.sources", json.dumps(sources)]
    root = data_path(data["init_args"]["root"])
    return ["--data.init_args.root", str(root)] if using_fixtures() else []
