"""`mlrt registry ...` through runtime.cli.main, on a real registry directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime.cli import main
from runtime.commands.registry import ENV_VAR, parse_value
from runtime.monitor.profile import Profile
from runtime.registry import FilesystemRegistry


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model bytes")
    profile = tmp_path / "ref.json"
    Profile.fit(np.random.default_rng(1).normal(size=(200, 2))).save(profile)
    return {"root": tmp_path / "registry", "model": model, "profile": profile}


def _cli(env: dict[str, Path], *argv: str) -> int:
    return main(["registry", "--registry", str(env["root"]), *argv])


def test_register_list_promote_rollback(env, capsys):
    argv = ["register", str(env["model"]), "--name", "fraud", "--profile", str(env["profile"]),
            "--params", "depth=6", "lr=0.05", "loss=log", "--metrics", "auc=0.91", "--metrics", "n=1e3",
            "--data", "s3://bucket/train.parquet", "--git-commit", "abc123", "--pipeline", "make train"]
    assert _cli(env, *argv) == 0
    assert "registered fraud version 1" in capsys.readouterr().out
    assert _cli(env, "register", str(env["model"]), "--name", "fraud", "--parent", "1") == 0
    capsys.readouterr()

    card = FilesystemRegistry(env["root"]).card("fraud", "1")
    assert card["params"] == {"depth": 6, "lr": 0.05, "loss": "log"}
    assert card["metrics"] == {"auc": 0.91, "n": 1000.0}
    assert card["lineage"] == {"git_commit": "abc123", "pipeline": "make train", "parent": None}
    assert card["profile"]["features"] == 2 and card["profile"]["row_count"] == 200

    assert _cli(env, "promote", "fraud", "1", "--alias", "production") == 0
    assert _cli(env, "promote", "fraud", "2", "--alias", "production", "--reason", "better") == 0
    assert "fraud@production: 1 -> 2" in capsys.readouterr().out

    assert _cli(env, "list", "fraud", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["aliases"]) for r in rows] == [("1", []), ("2", ["production"])]
    assert all(r["created_at"].endswith("Z") for r in rows)

    assert _cli(env, "list", "fraud") == 0
    table = capsys.readouterr().out
    assert "production" in table and "created_at" in table

    assert _cli(env, "list") == 0
    assert "fraud" in capsys.readouterr().out
    assert _cli(env, "list", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "fraud", "versions": 2, "latest": "2", "aliases": {"production": "2"}}
    ]

    assert _cli(env, "rollback", "fraud", "--alias", "production") == 0
    assert "2 -> 1" in capsys.readouterr().out
    assert _cli(env, "aliases", "fraud", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == {"production": "1"}

    assert _cli(env, "history", "fraud", "--format", "json") == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in events] == ["register", "register", "promote", "promote", "rollback"]
    assert events[3]["reason"] == "better"
    assert _cli(env, "history", "fraud") == 0
    assert "rollback" in capsys.readouterr().out


def test_card_formats(env, capsys):
    _cli(env, "register", str(env["model"]), "--name", "m", "--metrics", "auc=0.8")
    _cli(env, "promote", "m", "1", "--alias", "staging")
    capsys.readouterr()
    assert _cli(env, "card", "m", "1") == 0
    md = capsys.readouterr().out
    assert md.startswith("# m version 1") and "| auc | 0.8 |" in md and "`staging`" in md
    assert _cli(env, "card", "m", "1", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == {"auc": 0.8}


def test_registry_from_environment_and_after_the_action(env, capsys, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(env["root"]))
    assert main(["registry", "register", str(env["model"]), "--name", "m"]) == 0
    assert (env["root"] / "m" / "1" / "model.onnx").is_file()
    other = env["root"].parent / "other"
    assert main(["registry", "register", str(env["model"]), "--name", "m", "--registry", str(other)]) == 0
    assert (other / "m" / "1" / "model.onnx").is_file()


def test_missing_registry_is_a_clear_error(capsys):
    assert main(["registry", "list"]) == 2
    assert "pass --registry DIR or set MLRT_REGISTRY" in capsys.readouterr().err
    # A path that is not there: it listed an empty table (exit 0), and promote said "unknown
    # model (no models yet)", hiding the typo.
    assert main(["registry", "--registry", "/nonexistent/regsitry", "list"]) == 2
    assert "no registry at '/nonexistent/regsitry': the directory does not exist" in capsys.readouterr().err


def test_errors_are_one_line_messages(env, capsys):
    _cli(env, "register", str(env["model"]), "--name", "m")
    capsys.readouterr()
    assert _cli(env, "promote", "m", "9") == 1
    assert "no version '9'" in capsys.readouterr().err
    assert _cli(env, "rollback", "m") == 1
    assert "no alias 'production'" in capsys.readouterr().err
    assert _cli(env, "card", "nope", "1") == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert _cli(env, "register", str(env["model"]), "--name", "m", "--params", "oops") == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    for bad in ("nan", "inf", "-Infinity"):  # stored as the text "nan" before
        assert _cli(env, "register", str(env["model"]), "--name", "m", "--metrics", f"auc={bad}") == 2
        assert "'auc' must be a finite number" in capsys.readouterr().err


def test_git_commit_auto(env, capsys, monkeypatch):
    import runtime.commands.registry as cmd

    monkeypatch.setattr(cmd, "git_head", lambda: "f" * 40)
    assert _cli(env, "register", str(env["model"]), "--name", "m", "--git-commit", "auto") == 0
    assert FilesystemRegistry(env["root"]).card("m", "1")["lineage"]["git_commit"] == "f" * 40

    monkeypatch.setattr(cmd, "git_head", lambda: None)
    assert _cli(env, "register", str(env["model"]), "--name", "m", "--git-commit", "auto") == 0
    assert "not in a git repository" in capsys.readouterr().err
    assert FilesystemRegistry(env["root"]).card("m", "2")["lineage"]["git_commit"] is None


def test_git_head_outside_a_repository(tmp_path, monkeypatch):
    from runtime.commands.registry import git_head

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_head() is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 0.001), (".5", 0.5), ("abc", "abc"), ("1_000", "1_000"),
     ("nan", "nan"), ("", ""), ("0x10", "0x10")],
)
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_help_lists_actions(capsys):
    with pytest.raises(SystemExit) as info:
        main(["registry", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for action in ("register", "list", "promote", "rollback", "card", "aliases", "history"):
        assert action in out


def test_a_profile_that_does_not_fit_the_model_is_refused_at_registration(env, capsys):
    # It was stored, and the version failed only when promoted and served.
    from bench import models as bench_models

    model = env["root"].parent / "mlp.onnx"
    bench_models.mlp(model)  # 20 features; the env's profile has 2
    assert _cli(env, "register", str(model), "--name", "mlp", "--profile", str(env["profile"])) == 2
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "2 features" in err
    assert not env["root"].exists()  # refused before anything was written
    fitting = env["root"].parent / "fits.json"
    Profile.fit(np.random.default_rng(2).normal(size=(200, 20)).astype(np.float32)).save(fitting)
    assert _cli(env, "register", str(model), "--name", "mlp", "--profile", str(fitting)) == 0
    assert "registered mlp version 1" in capsys.readouterr().out
    # A model that does not load here is registered, and the user is told it was not checked.
    assert _cli(env, "register", str(env["model"]), "--name", "raw", "--profile", str(env["profile"])) == 0
    assert "stored without checking" in capsys.readouterr().err


def test_a_bare_name_serves_its_production_version(env, capsys):
    import runtime
    from bench import models as bench_models

    model = env["root"].parent / "mlp.onnx"
    bench_models.mlp(model)
    assert _cli(env, "register", str(model), "--name", "scorer") == 0
    assert _cli(env, "register", str(model), "--name", "scorer") == 0
    assert _cli(env, "promote", "scorer", "2", "--alias", "production") == 0
    with runtime.load("scorer", registry=str(env["root"])) as m:
        assert m.model.version == "2"
        assert m.predict({"input": np.zeros((1, 20), np.float32)})
