"""Tiles, blending weights and the chunked blender against a whole-scene accumulation."""

from __future__ import annotations

import numpy as np
import pytest

from skysense.inference.tiling import ChunkedBlender, TileLayout, blend_weights, tile_origins


def test_tile_origins_cover_and_align() -> None:
    assert tile_origins(1000, 256, 192) == [0, 192, 384, 576, 744]
    assert tile_origins(1000, 256, 192, align=32) == [0, 192, 384, 576, 768]  # last reaches 24 px past the end
    assert tile_origins(100, 256, 192) == [0]
    assert tile_origins(256, 256, 192) == [0]
    for length in (257, 511, 700, 1023):
        origins = tile_origins(length, 128, 96, align=32)
        assert all(o % 32 == 0 for o in origins) and origins[-1] + 128 >= length
        assert all(b - a <= 96 for a, b in zip(origins, origins[1:], strict=False))
    with pytest.raises(ValueError, match="larger than the tile"):
        tile_origins(100, 32, 64)
    with pytest.raises(ValueError, match="multiples of 32"):
        tile_origins(100, 48, 32, align=32)


def test_blend_weights_ramp_and_floor() -> None:
    weights = blend_weights(64, 16)
    assert weights.shape == (64, 64) and weights.min() > 0
    assert weights[32, 32] == 1.0 and weights[0, 0] < 1e-2
    assert np.allclose(weights, weights.T) and np.allclose(weights, weights[::-1, ::-1])
    assert (blend_weights(8, 0) == 1).all()


@pytest.mark.parametrize(
    ("height", "width", "tile", "stride", "chunk", "align"),
    [(100, 77, 32, 24, 32, 8), (300, 517, 64, 48, 128, 16), (20, 20, 32, 32, 64, 1), (257, 255, 32, 16, 40, 8)],
)
@pytest.mark.parametrize("classes", [False, True])
def test_chunked_blender_equals_whole_scene_blend(height, width, tile, stride, chunk, align, classes, tmp_path) -> None:
    """Chunks with carried strips give exactly the weighted mean of every tile over the whole scene (with
    ``classes``: its argmax, as a uint8 class map)."""
    rng = np.random.default_rng(0)
    layout = TileLayout(height, width, tile, stride, chunk, align)
    channels = 3
    out = np.full((channels, height, width), np.nan, np.float32)
    emitted = np.zeros((height, width), int)

    labels = np.full((height, width), 255, np.uint8)

    def emit(row: int, col: int, values: np.ndarray, valid: np.ndarray) -> None:
        window = (slice(row, row + values.shape[1]), slice(col, col + values.shape[2]))
        if classes:
            assert values.dtype == np.uint8 and values.shape[0] == 1
            labels[window] = np.where(valid, values[0], 255)
        else:
            out[(slice(None), *window)] = np.where(valid, values, np.nan)
        emitted[window] += 1

    blender = ChunkedBlender(layout, channels, emit, scratch=tmp_path / "strips", classes=classes)
    numerator = np.zeros((channels, height + tile, width + tile))
    denominator = np.zeros((height + tile, width + tile))
    weights = blend_weights(tile, tile - stride)
    invalid = rng.random((height + tile, width + tile)) < 0.05  # nodata pixels
    invalid[height:, :] = invalid[:, width:] = True  # outside the scene
    count = 0
    for a, b, tiles in layout.chunks():
        blender.start_chunk(a, b)
        for row, col in tiles:
            values = rng.normal(size=(channels, tile, tile)).astype(np.float32)
            valid = ~invalid[row : row + tile, col : col + tile]
            blender.add(row, col, values, valid)
            numerator[:, row : row + tile, col : col + tile] += values * weights * valid
            denominator[row : row + tile, col : col + tile] += weights * valid
            count += 1
        blender.finish_chunk()
        if b == layout.chunk_grid[1] - 1:  # a finished chunk row: its strips durable, the row above's dropped
            blender.sync_strips()
            assert all((tmp_path / "strips" / f"strip_{a}_{k}.npy").is_file() for k in range(b + 1)) or (
                a == layout.chunk_grid[0] - 1
            )
            blender.drop_strips(a - 1)
    assert count == layout.num_tiles
    assert (emitted == 1).all()  # every pixel written once
    with np.errstate(invalid="ignore"):
        expected = numerator[:, :height, :width] / denominator[:height, :width]
    if classes:
        inside = ~invalid[:height, :width]
        assert np.array_equal(labels[inside], expected.argmax(axis=0)[inside]) and (labels[~inside] == 255).all()
    else:
        assert np.array_equal(np.isnan(out[0]), invalid[:height, :width])
        assert np.nanmax(np.abs(out - expected)) < 1e-5
    assert not list((tmp_path / "strips").glob("*.npy*"))  # carried strips are removed once read
