"""Each command run in-process, as a user would."""

import pytest

from skysense.cli import main


def test_models_lists_presets_with_counts(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for preset in ("tiny", "small", "base", "paper"):
        assert preset in out
    assert "655.1 M" in out and "2,062.7 M" in out


def test_demo_runs_on_the_shipped_sample(capsys) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "concat[F, F_geo] (1, 128, 64, 64)" in out
    assert "stride 32: (10, 256, 2, 2)" in out


def test_version(capsys) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip()


def test_unknown_command_exits() -> None:
    with pytest.raises(SystemExit):
        main(["nonsense"])
