"""The scene pipeline's stages on their own (issue 15: read → run → blend → write, each measurable): the read stage
gives the same batches, in the same order, from reader threads as from the model's thread, never holds more than
its bounded queue, and a real SAFE product's batches never cross a chunk row (a resume must form the same batches);
the clock moves time from one stage to another without losing any."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from skysense.inference import SceneSources, SeriesSource, load_scene_model
from skysense.inference.plan import plan_scene
from skysense.inference.sources import TileReader
from skysense.inference.stages import ModelRun, StageClock, TileReads, batches_of
from skysense.models.registry import create_model
from skysense.models.weights import save_pretrained
from tests.data.s2_safe import write_safe


def _plan(tmp_path: Path, sources: SceneSources, workers: int, prefetch: int = 2):
    model = load_scene_model(save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors"), "embedding",
                             sentinel_reference=True)  # fmt: skip
    plan = plan_scene(model, sources, tmp_path / "out.tif", tile=64, overlap=16, batch_size=3, output_kind=None,
                      chunk=128, device="cpu", precision="32", compress="auto", block=128, prefetch=prefetch,
                      workers=workers, checkpoint=None, allow_ungeoreferenced=False, dtype="float32")  # fmt: skip
    return model, plan


def _reads(model, plan, clock: StageClock) -> TileReads:
    chunks = list(plan.layout.chunks())
    first = TileReader(plan.sources, plan.modalities, model.hr_channels)
    return TileReads(plan, chunks, first, model.hr_channels, clock)


def test_reader_threads_give_the_batches_of_the_model_thread_in_order(tmp_path: Path) -> None:
    product = write_safe(tmp_path / "safe", time="20220917T105619")
    sources = SceneSources(s2=SeriesSource.from_arg(product, "s2_l1c"))
    results = {}
    for workers in (0, 2):
        model, plan = _plan(tmp_path, sources, workers)
        clock = StageClock()
        reads = _reads(model, plan, clock)
        batches = []
        try:
            for batch in reads:
                assert len(reads._pending) <= plan.prefetch + 1  # the bounded queue, never the whole scene
                rows = {reads.chunks[index][0] for index, _, _ in batch.items}
                assert len(rows) == 1 and len(batch.items) <= plan.batch_size  # never across a chunk row
                batches.append(batch)
        finally:
            reads.close()
        assert [item for batch in batches for item in batch.items] == reads.items  # every tile, in the layout's order
        assert clock.seconds["read"] > 0
        results[workers] = batches
    assert len(results[0]) == len(results[2]) > 1
    run_tiles = 0
    for alone, threaded in zip(results[0], results[2], strict=True):
        assert alone.items == threaded.items and alone.run == threaded.run
        assert alone.with_input == threaded.with_input
        if alone.run:
            assert torch.equal(alone.valid, threaded.valid)
            assert torch.equal(alone.inputs.s2, threaded.inputs.s2)
            run_tiles += len(alone.run)
    assert run_tiles > 0

    model, plan = _plan(tmp_path, sources, 0)  # the run stage on the first batch: outputs on the output grid
    batch = next(b for b in results[0] if b.run)
    outputs, valid = ModelRun(model, plan, StageClock())(batch)
    side = plan.tile // plan.stride
    assert outputs.shape == (len(batch.run), plan.channels, side, side) and outputs.dtype == torch.float32
    assert valid.shape == (len(batch.run), side, side) and valid.dtype == torch.bool


def test_batches_of_break_at_each_group_and_the_clock_moves_time() -> None:
    items = [(0, i) for i in range(5)] + [(1, i) for i in range(2)]
    assert list(batches_of(items, 2, lambda item: item[0])) == [
        [(0, 0), (0, 1)], [(0, 2), (0, 3)], [(0, 4)], [(1, 0), (1, 1)]
    ]  # fmt: skip
    clock = StageClock()
    with clock("blend"):
        pass
    clock.seconds["blend"] = 2.0
    clock.move(0.5, "blend", "write")
    assert clock.seconds["blend"] == 1.5 and clock.seconds["write"] == 0.5
    assert sum(clock.seconds.values()) == pytest.approx(2.0)
