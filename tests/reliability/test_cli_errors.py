"""The `skysense` command's error contract (issue 13): an error the user caused is one line,
`skysense <command>: <file or option>: <problem>; <what to do>`, exit 2 for options and 1 for data; `--debug` or
SKYSENSE_DEBUG=1 shows the traceback; an unexpected exception (a bug) keeps its traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from skysense.cli import main
from skysense.errors import InputError, expected_exit_code
from tests.conftest import shared_path


def _one_line(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nonsense"], 2, "skysense: argument command: invalid choice: 'nonsense'"),
        (["fit", "--config", "/no/such/config.yaml"], 2, 'skysense fit: Parser key "config": File does not exist'),
        (["pretrain", "--config", "/no/such/config.yaml"], 2, 'skysense pretrain: Parser key "config"'),
        (["data", "info", "/no/such/raster.tif"], 1, "skysense data info: no raster at /no/such/raster.tif"),
        (
            ["predict", "--checkpoint", "/no/such.ckpt", "--hr", "/no/such.tif", "--output", "x.tif"],
            1,
            "skysense predict: no HR image at /no/such.tif",
        ),
        (
            ["embed", "--checkpoint", "x.ckpt", "--output", "x.tif", "--tile", "-3"],
            2,
            "skysense embed: argument --tile: -3 is out of range; give an integer >= 1",
        ),
    ],
)
def test_user_errors_are_one_line_with_their_exit_code(capsys, args: list[str], code: int, message: str) -> None:
    got, err = _one_line(capsys, args)
    assert got == code and err.startswith(message), err


def test_export_of_a_missing_checkpoint_is_one_line(capsys, tmp_path: Path) -> None:
    scene = shared_path("rasterio_testdata", "tests", "data", "RGB.byte.tif")
    code, err = _one_line(capsys, ["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--hr", str(scene),
                                   "--output", str(tmp_path / "m.onnx")])  # fmt: skip
    assert code == 1 and "none.ckpt" in err and not (tmp_path / "m.onnx").exists()


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="no raster at /no/such/raster.tif"):
        main(["--debug", "data", "info", "/no/such/raster.tif"])
    monkeypatch.setenv("SKYSENSE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["data", "info", "/no/such/raster.tif"])


def test_unexpected_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug is not disguised as a user error: an exception raised outside skysense's own checks propagates."""
    import skysense.data.cli

    monkeypatch.setattr(skysense.data.cli, "raster_info", lambda path: int("not a number", base=99))
    with pytest.raises(ValueError, match="base"):  # raised inside Python's int(), not by a skysense check
        main(["data", "info", "x.tif"])
    assert expected_exit_code(ZeroDivisionError()) is None
    assert expected_exit_code(InputError("x.tif: bad; fix it")) == 1


def test_notes_are_part_of_the_line(capsys) -> None:
    """What a failed run kept or removed (exception notes) is printed on the same line."""
    from skysense.errors import one_line

    err = InputError("scene.tif: bad values;\n  fix them")
    err.__notes__ = ["kept 2 of 4 finished chunk rows in x.partial.d"]
    assert one_line(err) == "scene.tif: bad values; fix them; kept 2 of 4 finished chunk rows in x.partial.d"
