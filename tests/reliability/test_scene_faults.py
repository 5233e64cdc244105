"""Faults and bad input against `skysense predict` / `embed` (issue 13): every case a clean one-line refusal or the
right result, nothing lost, nothing left behind. Inputs are real rasters from ../shared/data, copied, re-tagged,
cropped or rewritten in tmp_path; the kill -9 cases are in test_kill_resume.py."""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from skysense.cli import main
from skysense.errors import UsageError
from skysense.inference import SceneSources, load_scene_model, predict_scene
from skysense.inference.writer import CLASS_NODATA, scratch_path
from tests.conftest import shared_path
from tests.reliability.scene_fixtures import (
    RASTERIO,
    S1_CHIPS,
    crop,
    read_all,
    segmentation_checkpoint,
    sha256,
    skysense_process,
)


@pytest.fixture(scope="module")
def hr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return segmentation_checkpoint(tmp_path_factory.mktemp("hr") / "seg.ckpt")


@pytest.fixture(scope="module")
def s1_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return segmentation_checkpoint(tmp_path_factory.mktemp("s1") / "flood.ckpt", modalities=("s1",), num_classes=2)


@pytest.fixture
def cogeo(tmp_path: Path) -> Path:
    """A private copy of the real cogeo.tif (1024² RGB, EPSG:3857), uncompressed so that rewriting pixels keeps the
    file's size."""
    with rasterio.open(shared_path(*RASTERIO, "cogeo.tif")) as src:
        profile = src.profile
        profile.update(compress=None, tiled=True, blockxsize=256, blockysize=256, photometric="RGB")
        profile.pop("compress")
        with rasterio.open(tmp_path / "scene.tif", "w", **profile) as dst:
            dst.write(src.read())
    return tmp_path / "scene.tif"


def _run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """``skysense ARGS`` in-process → (exit code, stderr); stderr must be one line when the code is not 0."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    if code != 0:  # one line of error (after any one-line warnings, e.g. bands read by position)
        lines = [line for line in err.splitlines() if ": warning: " not in line]
        assert len(lines) == 1 and lines[0].startswith("skysense "), err
        assert "Traceback" not in err
    return code, err


def _predict(checkpoint: Path, hr: Path, output: Path, *extra: object) -> list[str]:
    return ["predict", "--checkpoint", str(checkpoint), "--hr", str(hr), "--output", str(output), "--tile", "256",
            "--overlap", "64", "--no-progress", *map(str, extra)]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Harm 2: --resume after the inputs changed
# ----------------------------------------------------------------------------------------------------------------
def _interrupt_after_first_row(model, sources, output, **kwargs) -> None:
    def stop(row: int, col: int) -> None:
        if row == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_scene(model, sources, output, on_chunk=stop, **kwargs)
    assert scratch_path(output).exists() and not output.exists()


def test_resume_after_the_input_changed_is_refused(hr_checkpoint: Path, cogeo: Path, tmp_path: Path) -> None:
    """Same path, same size, same modification time, pixels rewritten: the resume is refused naming the file (the
    content hash differs), and nothing is published; a plain rerun then maps the new image."""
    model = load_scene_model(hr_checkpoint)
    kwargs = dict(tile=256, overlap=64, chunk=256, block=256, progress=False, checkpoint=hr_checkpoint)
    output = tmp_path / "map.tif"
    _interrupt_after_first_row(model, SceneSources(hr=cogeo), output, **kwargs)
    stat, size = cogeo.stat(), cogeo.stat().st_size
    with rasterio.open(cogeo, "r+") as dataset:  # the lower half of the image replaced by its mirror image
        pixels = dataset.read()
        dataset.write(np.ascontiguousarray(pixels[:, ::-1]))
    os.utime(cogeo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cogeo.stat().st_size == size and cogeo.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(UsageError, match=rf"--resume: the inputs changed .*hr file {cogeo}.* changed content"):
        predict_scene(model, SceneSources(hr=cogeo), output, resume=True, **kwargs)
    assert not output.exists() and scratch_path(output).exists()  # the interrupted run's rows are not touched
    predict_scene(model, SceneSources(hr=cogeo), output, **kwargs)
    fresh = predict_scene(model, SceneSources(hr=cogeo), tmp_path / "fresh.tif", **kwargs).output
    assert np.array_equal(read_all(output), read_all(fresh))


def test_resume_after_the_checkpoint_changed_is_refused(hr_checkpoint: Path, cogeo: Path, tmp_path: Path) -> None:
    """The same task fine-tuned further, saved at the same path (weights moved by 0.01): refused, naming the
    checkpoint."""
    checkpoint = shutil.copy(hr_checkpoint, tmp_path / "seg.ckpt")
    output = tmp_path / "map.tif"
    kwargs = dict(tile=256, overlap=64, chunk=256, block=256, progress=False, checkpoint=checkpoint)
    _interrupt_after_first_row(load_scene_model(checkpoint), SceneSources(hr=cogeo), output, **kwargs)
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, checkpoint)
    with pytest.raises(UsageError, match=rf"checkpoint file {checkpoint}"):
        predict_scene(load_scene_model(checkpoint), SceneSources(hr=cogeo), output, resume=True, **kwargs)


def test_an_input_changed_during_the_run_publishes_nothing(hr_checkpoint: Path, cogeo: Path, tmp_path: Path) -> None:
    """The image is rewritten while the map is computed: the run refuses to publish a map of two images, and
    removes its scratch folder (a resume would be refused anyway)."""
    output = tmp_path / "map.tif"
    output.write_bytes(b"an older map the user keeps")

    def rewrite(row: int, col: int) -> None:
        if (row, col) == (0, 0):
            with rasterio.open(cogeo, "r+") as dataset:
                dataset.write(np.zeros((3, 256, 256), np.uint8) + 7, window=Window(768, 768, 256, 256))

    model = load_scene_model(hr_checkpoint)
    with pytest.raises(ValueError, match=rf"an input changed while the map was computed .*{cogeo}.*nothing was"):
        predict_scene(model, SceneSources(hr=cogeo), output, tile=256, overlap=64, chunk=256, block=256,
                      progress=False, on_chunk=rewrite, checkpoint=hr_checkpoint)  # fmt: skip
    assert output.read_bytes() == b"an older map the user keeps" and not scratch_path(output).exists()


# ----------------------------------------------------------------------------------------------------------------
# Harm 3: --output equal to an input
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "relative path", "the checkpoint"])
def test_output_that_is_an_input_is_refused_before_any_work(
    capsys, hr_checkpoint: Path, cogeo: Path, tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = Path(shutil.copy(hr_checkpoint, tmp_path / "seg.ckpt"))
    before = {cogeo: sha256(cogeo), checkpoint: sha256(checkpoint)}
    output = {"same path": cogeo, "symlink": tmp_path / "link.tif", "hard link": tmp_path / "hard.tif",
              "relative path": Path("scene.tif"), "the checkpoint": checkpoint}[how]  # fmt: skip
    if how == "symlink":
        output.symlink_to(cogeo)
    elif how == "hard link":
        os.link(cogeo, output)
    elif how == "relative path":
        monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, *_predict(checkpoint, cogeo, output))
    assert code == 2 and f"--output {output} is the input" in err and "choose another output" in err
    assert {path: sha256(path) for path in before} == before
    assert not scratch_path(cogeo).exists() and not scratch_path(tmp_path / output.name).exists()


def test_output_that_a_vrt_input_reads_is_refused(capsys, hr_checkpoint: Path, cogeo: Path, tmp_path: Path) -> None:
    """--hr scene.vrt whose source is the real aerial COG, --output that COG: refused before any work (exit 2), the
    COG untouched. Before, the run wrote the class map over the VRT's source (exit 0)."""
    import rasterio.shutil

    source = Path(shutil.copy(cogeo, tmp_path / "tile.tif"))
    vrt = tmp_path / "scene.vrt"
    rasterio.shutil.copy(source, vrt, driver="VRT")
    digest = sha256(source)
    code, err = _run(capsys, *_predict(hr_checkpoint, vrt, source))
    assert code == 2 and f"--output {source} is {source}, a file the input --hr {vrt} reads" in err
    assert sha256(source) == digest and not scratch_path(source).exists()


@pytest.mark.parametrize("how", ["under a file", "read-only folder", "another format", "no suffix"])
def test_an_output_that_cannot_be_a_map_is_refused_before_any_work(
    capsys, hr_checkpoint: Path, cogeo: Path, tmp_path: Path, how: str
) -> None:
    """--output under a file (scene.tif/map.tif), in a folder without write permission, named .png, or without a
    suffix: one line naming --output and what to do (exit 2), nothing written. Before: a raw "[Errno 2] … .partial.d"
    that claimed it removed a folder that never existed; .png and bare names got a GeoTIFF under that name."""
    folder = tmp_path / "maps"
    folder.mkdir()
    output = {"under a file": cogeo / "map.tif", "read-only folder": folder / "map.tif",
              "another format": folder / "map.png", "no suffix": folder / "map"}[how]  # fmt: skip
    if how == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes in any folder")
        folder.chmod(0o500)
    try:
        code, err = _run(capsys, *_predict(hr_checkpoint, cogeo, output))
    finally:
        folder.chmod(0o700)
    why = {"under a file": "is a file, not a folder", "read-only folder": "no permission",
           "another format": "give e.g.", "no suffix": "give e.g."}[how]  # fmt: skip
    assert code == 2 and f"--output {output}" in err and why in err and "removed" not in err
    assert list(folder.iterdir()) == []


def test_an_output_on_a_filesystem_that_takes_no_files_is_one_line(capsys, hr_checkpoint: Path, cogeo: Path) -> None:
    """--output /proc/map.tif (a folder that refuses new files even to root, as a read-only mount does): one line
    naming --output and its working folder (exit 1), and no claim of a folder removed."""
    code, err = _run(capsys, *_predict(hr_checkpoint, cogeo, Path("/proc/map.tif")))
    assert code in (1, 2) and "--output /proc/map.tif" in err and "removed" not in err


def test_output_equal_to_a_sentinel_input_is_refused(capsys, s1_checkpoint: Path, tmp_path: Path) -> None:
    chip = Path(shutil.copy(shared_path(*S1_CHIPS, "Spain_6860600_S1Hand.tif"), tmp_path / "s1.tif"))
    digest = sha256(chip)
    code, err = _run(capsys, "predict", "--checkpoint", s1_checkpoint, "--s1", chip, "--s1-dates", "2019-09-18",
                     "--output", chip)  # fmt: skip
    assert code == 2 and "is the input --s1" in err and sha256(chip) == digest


# ----------------------------------------------------------------------------------------------------------------
# Harm 4: numeric options out of range
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-size", "-1", "--batch-size: -1 is out of range; give an integer >= 1"),
        ("--batch-size", "0", "--batch-size: 0 is out of range"),
        ("--batch-size", "two", "'two' is not an integer"),
        ("--tile", "250", "--tile 250 must be a multiple of 32"),
        ("--tile", "0", "--tile: 0 is out of range"),
        ("--overlap", "-32", "--overlap: -32 is out of range; give an integer >= 0"),
        ("--overlap", "256", "--overlap 256 must be smaller than --tile 256"),
        ("--overlap", "160", "with 0 <= overlap <= tile / 2"),
        ("--ratio", "0", "--ratio: 0 is out of range"),
        ("--chunk", "128", "--chunk 128 must be at least the tile in output pixels (256"),
        ("--workers", "-1", "--workers: -1 is out of range; give an integer >= 0"),
    ],
)
def test_out_of_range_options_are_refused_in_one_line(
    capsys, hr_checkpoint: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    scene = shared_path(*RASTERIO, "RGB.byte.tif")
    args = _predict(hr_checkpoint, scene, tmp_path / "map.tif")
    if option in args:
        position = args.index(option)
        del args[position : position + 2]
    code, err = _run(capsys, *args, option, value)
    assert code == 2 and message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


# ----------------------------------------------------------------------------------------------------------------
# Ctrl-C, a full disk, and the partial files
# ----------------------------------------------------------------------------------------------------------------
def _wait_for(predicate, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_ctrl_c_prints_the_exact_resume_command(hr_checkpoint: Path, cogeo: Path, tmp_path: Path) -> None:
    """SIGINT after the first chunk row: exit 130, one line with the exact `--resume` command; running that
    command publishes the uninterrupted map bit for bit."""
    output = tmp_path / "map.tif"
    args = _predict(hr_checkpoint, cogeo, output, "--chunk", "256", "--probabilities")
    process = skysense_process(args)
    _wait_for(lambda: (scratch_path(output) / "state.json").exists(), process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("skysense predict: interrupted: kept ") and " resume with: skysense predict " in err
    assert not output.exists() and scratch_path(output).exists()
    command = shlex.split(err.split("resume with: ", 1)[1])
    assert command[0] == "skysense" and command[-1] == "--resume"
    assert main(command[1:]) == 0
    reference = tmp_path / "reference.tif"
    assert main([*_predict(hr_checkpoint, cogeo, reference, "--chunk", "256", "--probabilities")]) == 0
    assert sha256(output) == sha256(reference) and not scratch_path(output).exists()


def test_ctrl_c_before_a_row_is_finished_leaves_nothing(hr_checkpoint: Path, cogeo: Path, tmp_path: Path) -> None:
    output = tmp_path / "map.tif"
    process = skysense_process(_predict(hr_checkpoint, cogeo, output, "--chunk", "1024"))  # one chunk row
    _wait_for(lambda: scratch_path(output).exists(), process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.count("\n") == 1, err
    assert "interrupted before a chunk row was finished" in err and "removed" in err
    assert list(tmp_path.iterdir()) == [cogeo]


def _one_skysense_line(err: str) -> bool:
    """One line of skysense's, the last; before it only libtiff's own "_tiffWriteProc: File too large." (or
    "_tiffSeekProc: …") lines, which the C library prints to the terminal itself on a failed write."""
    lines = err.strip().splitlines()
    libtiff = ("_tiffWriteProc: ", "_tiffSeekProc: ")
    return lines[-1].startswith("skysense predict: ") and all(line.startswith(libtiff) for line in lines[:-1])


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_before_the_first_row_keeps_the_old_output_and_nothing_else(
    hr_checkpoint: Path, cogeo: Path, tmp_path: Path
) -> None:
    """Writes fail (the file-size limit stands in for a full disk) at the first carried strip: exit 1 with one
    line, the older map at the output path untouched, no partial files."""
    output = tmp_path / "map.tif"
    output.write_bytes(b"an older map the user keeps")
    process = skysense_process(_predict(hr_checkpoint, cogeo, output, "--chunk", "256", "--probabilities"),
                               preexec_fn=_limit_file_size(1 << 20))  # fmt: skip
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1 and _one_skysense_line(err), err
    assert "strip_0_0.npy: cannot write" in err and "free space" in err and "nothing worth resuming" in err
    assert output.read_bytes() == b"an older map the user keeps"
    assert sorted(tmp_path.iterdir()) == sorted([cogeo, output])


def test_full_disk_while_publishing_keeps_the_rows_then_resumes(
    hr_checkpoint: Path, cogeo: Path, tmp_path: Path
) -> None:
    """The rows fit but the final COG does not: exit 1, every finished row kept (the line says how to resume);
    after space is freed, --resume publishes the uninterrupted map bit for bit."""
    output = tmp_path / "map.tif"
    args = _predict(hr_checkpoint, cogeo, output, "--chunk", "256", "--probabilities")
    process = skysense_process(args, preexec_fn=_limit_file_size(6 << 20))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1 and _one_skysense_line(err), err
    assert "kept 4 of 4 finished chunk rows" in err and "--resume" in err
    assert not output.exists()
    assert main([*args, "--resume"]) == 0
    reference = tmp_path / "reference.tif"
    assert main(_predict(hr_checkpoint, cogeo, reference, "--chunk", "256", "--probabilities")) == 0
    assert sha256(output) == sha256(reference)


def test_full_disk_in_an_uncompressed_embedding_row_is_not_recorded(tmp_path: Path) -> None:
    """A 128-band embedding's scratch rows are uncompressed, and GDAL closed such a row truncated at the file-size
    limit without an error (it was recorded as finished, and the publish failed on it later, or a resume read it).
    Now: exit 1 with one line naming the row file, nothing kept, no output."""
    from skysense.models.registry import create_model
    from skysense.models.weights import save_pretrained

    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    source = shared_path(*S1_CHIPS, "Spain_6860600_S1Hand.tif")
    side = min(256, _side(source))  # 256 (the excerpt's chip: its 128)
    chip = crop(source, tmp_path / "small.tif", side)
    output = tmp_path / "embedding.tif"
    args = ["embed", "--checkpoint", weights, "--s1", chip, "--s1-dates", "2019-09-18", "--source", "s1",
            "--output", output, "--no-progress"]  # fmt: skip
    limit = side * side * 128 * 4 // 4  # a quarter of the row's 128 float32 bands: 8 MiB of 32 MiB on 256²
    process = skysense_process(args, preexec_fn=_limit_file_size(limit))
    _, err = process.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert process.returncode == 1 and lines[-1].startswith("skysense embed: "), err
    # GDAL either closes the row truncated without an error (caught by check_blocks_written: "past the file's end")
    # or, depending on where the limit falls between its block writes, raises the OS's EFBIG itself
    assert "row_00000.tif.tmp: cannot write chunk row 0 of the output" in lines[-1], err
    assert any(why in err for why in ("past the file's end", "File too large", "EFBIG")), err
    assert "nothing worth resuming" in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.tif", "tiny.safetensors"]


def test_an_embedding_that_cannot_fit_on_the_disk_is_refused_before_the_first_tile(
    capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Embedding rows stay uncompressed until the publish: with less free space than they take (the disk's free
    space as the OS reports it, set low here), the run is refused at once, naming the output, the GiB needed and
    free and --dtype float16, and leaves nothing; with enough, it runs."""
    import skysense.inference.scene as scene_module
    from skysense.models.registry import create_model
    from skysense.models.weights import save_pretrained

    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    source = shared_path(*S1_CHIPS, "Spain_6860600_S1Hand.tif")
    side = min(256, _side(source))
    chip = crop(source, tmp_path / "small.tif", side)
    output = tmp_path / "embedding.tif"
    args = ["embed", "--checkpoint", weights, "--s1", chip, "--s1-dates", "2019-09-18", "--source", "s1",
            "--output", output, "--no-progress"]  # fmt: skip
    need = side * side * 128 * 4
    real = shutil.disk_usage
    monkeypatch.setattr(scene_module.shutil, "disk_usage", lambda path: real(path)._replace(free=need - 1))
    code, err = _run(capsys, *args)
    assert code == 1 and f"embedding.tif: the 128-band rows still to write take {need / 2**30:.2f} GiB" in err
    assert "give --dtype float16 (half the size)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.tif", "tiny.safetensors"]
    code, _ = _run(capsys, *args, "--dtype", "float16")  # half the size fits
    assert code == 0 and output.is_file()


# ----------------------------------------------------------------------------------------------------------------
# Ungeoreferenced scenes, small scenes, all-nodata maps
# ----------------------------------------------------------------------------------------------------------------
def test_an_image_without_georeferencing_is_refused_unless_allowed(capsys, hr_checkpoint: Path, tmp_path: Path) -> None:
    """A real NWPU VHR-10 JPEG (no CRS): refused, naming the file; with --allow-ungeoreferenced the map is written
    in pixel coordinates and its tags say so."""
    jpeg = next(iter(sorted(shared_path("nwpu_vhr10").rglob("*.jpg"))))
    output = tmp_path / "map.tif"
    code, err = _run(capsys, *_predict(hr_checkpoint, jpeg, output))
    assert code == 1 and f"{jpeg}: has no georeferencing (no CRS)" in err and "--allow-ungeoreferenced" in err
    assert not output.exists() and not scratch_path(output).exists()
    code, err = _run(capsys, *_predict(hr_checkpoint, jpeg, output, "--allow-ungeoreferenced"))
    assert code == 0 and "warning" not in err  # rasterio's notes on the missing geotransform are not the user's
    with rasterio.open(jpeg) as src, rasterio.open(output) as out:
        assert out.crs is None and out.shape == src.shape
        assert out.tags()["SKYSENSE_GEOREFERENCED"].startswith("no")


def test_a_fused_embedding_of_an_image_without_georeferencing_is_refused_before_any_work(
    capsys, tmp_path: Path
) -> None:
    """`embed --allow-ungeoreferenced` of a real NWPU JPEG with the default --source auto (the fused embedding,
    whose geo-context prototypes are picked by latitude/longitude): refused before any tile (exit 2) naming
    --source hr, nothing left. Before, the output was planned and the first tiles ran, then it failed with a
    message naming no option. With --source hr it is written."""
    from skysense.models.registry import create_model
    from skysense.models.weights import save_pretrained

    weights = save_pretrained(create_model("tiny"), tmp_path / "tiny.safetensors")
    jpeg = next(iter(sorted(shared_path("nwpu_vhr10").rglob("*.jpg"))))
    output = tmp_path / "embedding.tif"
    args = ["embed", "--checkpoint", weights, "--hr", jpeg, "--output", output, "--allow-ungeoreferenced",
            "--no-progress"]  # fmt: skip
    code, err = _run(capsys, *args)
    assert code == 2 and "geo-context prototypes" in err and "give --source hr" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]
    assert _run(capsys, *args, "--source", "hr")[0] == 0 and output.is_file()


def _side(source: Path) -> int:
    """The side of a square chip: 512 for Sen1Floods11, 128 for its excerpt in tests/fixtures."""
    with rasterio.open(source) as src:
        return src.width


def test_a_scene_smaller_than_half_a_tile_is_mapped(capsys, s1_checkpoint: Path, tmp_path: Path) -> None:
    """A real Sentinel-1 scene of 352² pixels (a Sen1Floods11 chip cropped; the excerpt's whole 128² chip) at tile 512
    (the default before issue 14 gave Sentinel grids a tile of 128): the tile is shrunk to the scene, and every valid
    input pixel gets a class (before: an all-nodata map, exit 0)."""
    source = shared_path(*S1_CHIPS, "Spain_6860600_S1Hand.tif")
    chip = crop(source, tmp_path / "small.tif", min(352, _side(source)))
    output = tmp_path / "water.tif"
    code, _ = _run(capsys, "predict", "--checkpoint", s1_checkpoint, "--s1", chip, "--s1-dates", "2019-09-18",
                   "--output", output, "--no-progress", "--tile", "512", "--overlap", "128")  # fmt: skip
    assert code == 0
    with rasterio.open(chip) as src:
        invalid = ~np.isfinite(src.read()).all(axis=0)
    classes = read_all(output)[0]
    assert invalid.mean() < 0.5 and np.array_equal(classes == CLASS_NODATA, invalid)


def test_a_map_without_any_valid_pixel_is_an_error_unless_the_input_has_none(
    capsys, s1_checkpoint: Path, tmp_path: Path
) -> None:
    """A real S1 chip with 60 % of its pixels masked (scattered): every frame falls below the valid fraction, so
    the map would be all nodata although the input is not: exit 1 and nothing published. The real all-NaN chip
    (Paraguay) maps to an all-nodata map with exit 0: that is its right result."""
    with rasterio.open(shared_path(*S1_CHIPS, "Spain_6860600_S1Hand.tif")) as src:
        profile, values = src.profile, src.read()
    values[:, np.random.default_rng(0).random(values.shape[1:]) < 0.6] = np.nan
    masked = tmp_path / "masked.tif"
    with rasterio.open(masked, "w", **profile) as dst:
        dst.write(values)
    output = tmp_path / "water.tif"
    code, err = _run(capsys, "predict", "--checkpoint", s1_checkpoint, "--s1", masked, "--s1-dates", "2019-09-18",
                     "--output", output, "--no-progress")  # fmt: skip
    assert code == 1 and "has no valid pixel although" in err and "removed" in err
    assert not output.exists() and not scratch_path(output).exists()
    empty = shared_path(*S1_CHIPS, "Paraguay_34417_S1Hand.tif")
    code, _ = _run(capsys, "predict", "--checkpoint", s1_checkpoint, "--s1", empty, "--s1-dates", "2018-10-31",
                   "--output", output, "--no-progress")  # fmt: skip
    assert code == 0 and (read_all(output) == CLASS_NODATA).all()


# ----------------------------------------------------------------------------------------------------------------
# Dates and files of the Sentinel series, truncated scenes
# ----------------------------------------------------------------------------------------------------------------
def test_duplicate_and_future_dates_are_refused_by_predict(capsys, s1_checkpoint: Path, tmp_path: Path) -> None:
    chips = shared_path(*S1_CHIPS)
    a = shutil.copy(chips / "Spain_6860600_S1Hand.tif", tmp_path / "s1_20190918.tif")
    b = shutil.copy(chips / "Spain_6860600_S1Hand.tif", tmp_path / "s1_2019-09-18.tif")
    output = tmp_path / "water.tif"
    base = ["predict", "--checkpoint", s1_checkpoint, "--output", output, "--tile", "128", "--overlap", "32",
            "--no-progress"]  # fmt: skip
    code, err = _run(capsys, *base, "--s1", a, b)
    assert code == 1 and "share a date" in err and Path(a).name in err and Path(b).name in err
    assert "--allow-duplicate-dates" in err
    assert _run(capsys, *base, "--s1", a, b, "--allow-duplicate-dates")[0] == 0
    code, err = _run(capsys, *base, "--s1", a, "--s1-dates", "2099-01-01")
    assert code == 2 and "--s1-dates: 2099-01-01 is after today" in err  # the option's value: a usage error


@pytest.mark.parametrize("name", ["RGB.byte.tif", "cogeo.tif"])
def test_a_truncated_scene_is_named_and_nothing_is_left(capsys, hr_checkpoint: Path, tmp_path: Path, name: str) -> None:
    """A real raster cut to 60 % of its bytes: RGB.byte.tif loses its header, the COG cogeo.tif keeps it (it opens,
    its last blocks are gone). Refused before any work in one line naming the file, exit 1; no output, no partial
    files."""
    data = shared_path(*RASTERIO, name).read_bytes()
    scene = tmp_path / f"cut_{name}"
    scene.write_bytes(data[: int(len(data) * 0.6)])
    output = tmp_path / "map.tif"
    code, err = _run(capsys, *_predict(hr_checkpoint, scene, output))
    assert code == 1 and str(scene) in err and "re-download or re-export" in err
    assert sorted(tmp_path.iterdir()) == [scene]


def test_a_truncated_sentinel_file_is_refused_before_any_work(capsys, s1_checkpoint: Path, tmp_path: Path) -> None:
    """One of two real S1 dates cut to 95 % of its bytes (tiled in 2 × 2 blocks, so it opens and its first block
    reads)."""
    chips = shared_path(*S1_CHIPS)
    with rasterio.open(chips / "Spain_6860600_S1Hand.tif") as src:
        profile, values = src.profile, src.read()
    half = values.shape[-1] // 2  # 256 (the excerpt: 64)
    profile.update(tiled=True, blockxsize=half, blockysize=half, interleave="band", compress=None)
    profile.pop("compress")
    good, cut = tmp_path / "s1_20190918.tif", tmp_path / "s1_20190930.tif"
    for path in (good, cut):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(values)
    cut.write_bytes(cut.read_bytes()[: int(cut.stat().st_size * 0.95)])
    output = tmp_path / "water.tif"
    code, err = _run(capsys, "predict", "--checkpoint", s1_checkpoint, "--s1", good, cut, "--output", output,
                     "--no-progress")  # fmt: skip
    assert code == 1 and f"{cut}: cannot read rows" in err and "band 2" in err
    assert sorted(tmp_path.iterdir()) == sorted([good, cut])


# ----------------------------------------------------------------------------------------------------------------
# Harm 7: band order from the file's tags
# ----------------------------------------------------------------------------------------------------------------
def _retagged(source: Path, target: Path, order: list[int], colours: list[str], descriptions=None) -> Path:
    from rasterio.enums import ColorInterp

    with rasterio.open(source) as src:
        profile = src.profile
        profile.pop("photometric", None)
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(order))
            dst.colorinterp = [ColorInterp[c] for c in colours]
            for index, text in enumerate(descriptions or [], start=1):
                dst.set_band_description(index, text)
    with rasterio.open(target) as check:
        assert [c.name for c in check.colorinterp] == colours  # the tags survive re-opening
    return target


def test_a_bgr_scene_is_mapped_as_rgb_and_contradicting_tags_are_refused(
    capsys, hr_checkpoint: Path, tmp_path: Path
) -> None:
    """The real RGB.byte.tif written in BGR order and tagged blue, green, red maps exactly like the RGB original
    (before: read by position, B as R, no warning); tags that contradict each other are refused in one line naming
    the file, and --hr-bands overrides the tags."""
    scene = shared_path(*RASTERIO, "RGB.byte.tif")
    bgr = _retagged(scene, tmp_path / "bgr.tif", [3, 2, 1], ["blue", "green", "red"])
    assert _run(capsys, *_predict(hr_checkpoint, scene, tmp_path / "rgb_map.tif"))[0] == 0
    assert _run(capsys, *_predict(hr_checkpoint, bgr, tmp_path / "bgr_map.tif"))[0] == 0
    assert np.array_equal(read_all(tmp_path / "rgb_map.tif"), read_all(tmp_path / "bgr_map.tif"))
    with rasterio.open(tmp_path / "bgr_map.tif") as out:
        assert out.tags()["SKYSENSE_HR_BANDS"] == "3,2,1"
    odd = _retagged(scene, tmp_path / "odd.tif", [3, 2, 1], ["red", "green", "blue"], ["blue", "green", "red"])
    code, err = _run(capsys, *_predict(hr_checkpoint, odd, tmp_path / "odd_map.tif"))
    assert code == 1 and str(odd) in err and "--hr-bands" in err and not (tmp_path / "odd_map.tif").exists()
    assert _run(capsys, *_predict(hr_checkpoint, odd, tmp_path / "odd_map.tif", "--hr-bands", "3,2,1"))[0] == 0
    assert np.array_equal(read_all(tmp_path / "rgb_map.tif"), read_all(tmp_path / "odd_map.tif"))


def test_a_single_band_image_names_the_remedy_and_resume_without_a_run_says_so(
    capsys, hr_checkpoint: Path, cogeo: Path, tmp_path: Path
) -> None:
    """The real aerial COG's first band alone (a panchromatic image): refused naming --hr-bands 1,1,1, which then
    maps it. --resume with no interrupted run starts over and says so in one warning line (it was silent)."""
    with rasterio.open(cogeo) as src:
        profile = src.profile
        band = src.read(1, window=rasterio.windows.Window(0, 0, 256, 256))
        profile.update(count=1, width=256, height=256, transform=src.window_transform(((0, 256), (0, 256))))
    profile.pop("photometric", None)
    gray = tmp_path / "gray.tif"
    with rasterio.open(gray, "w", **profile) as dst:
        dst.write(band, 1)
    output = tmp_path / "map.tif"
    code, err = _run(capsys, *_predict(hr_checkpoint, gray, output))
    assert code == 1 and "has 1 data bands" in err and "--hr-bands 1,1,1" in err
    code, err = _run(capsys, *_predict(hr_checkpoint, gray, output, "--hr-bands", "1,1,1", "--resume"))
    assert code == 0 and output.is_file() and "--resume: no interrupted run" in err


@pytest.mark.parametrize(("dates", "why"), [("17/09/2019", "cannot parse date"), ("2030-01-01", "is after today"),
                                            ("", "empty")])  # fmt: skip
def test_bad_dates_options_are_refused_naming_the_option(
    capsys, s1_checkpoint: Path, tmp_path: Path, dates: str, why: str
) -> None:
    """--s1-dates that cannot be parsed, lie in the future or are empty: one line naming --s1-dates (exit 2), before
    any work. Before, a bad value was reported against the S1 file (with a fix about its name or sidecar), and an
    empty one was ignored."""
    chip = shared_path(*S1_CHIPS, "Spain_6860600_S1Hand.tif")
    output = tmp_path / "water.tif"
    code, err = _run(capsys, "predict", "--checkpoint", s1_checkpoint, "--s1", chip, "--s1-dates", dates,
                     "--output", output)  # fmt: skip
    assert code == 2 and "--s1-dates" in err and why in err and not output.exists()
