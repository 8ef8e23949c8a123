"""runtime.cli.main: how a command line is read, before any command runs."""

from __future__ import annotations

import argparse

import pytest

from runtime import cli
from runtime.commands import serve


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    calls: list[argparse.Namespace] = []

    def run(args: argparse.Namespace) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(serve, "run", run)
    return calls


def test_models_may_come_anywhere_among_the_options(seen: list[argparse.Namespace]) -> None:
    argv = ["serve", "a=a.onnx", "--port", "9001", "b=pkg.mod:obj", "--log-level", "debug", "c.onnx"]
    assert cli.main(argv) == 0
    (args,) = seen
    assert args.models == ["a=a.onnx", "b=pkg.mod:obj", "c.onnx"]
    assert args.port == 9001 and args.log_level == "debug"


def test_unknown_options_are_still_errors(
    seen: list[argparse.Namespace], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "a.onnx", "--prot", "9001", "b.onnx"])
    assert info.value.code == 2
    assert "unrecognized arguments: --prot" in capsys.readouterr().err
    assert seen == []


def test_commands_without_models_take_no_extra_positionals(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["demo", "--duration", "1", "stray"])
    assert "unrecognized arguments: stray" in capsys.readouterr().err
