"""The filesystem registry: round trips, versions, aliases and their audit log, atomicity, cards, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import MlrtError
from runtime.monitor.profile import Profile
from runtime.registry import (
    FilesystemRegistry,
    InvalidReference,
    NothingToRollBack,
    RegistryError,
    ResolvedModel,
    UnknownAlias,
    UnknownModel,
    UnknownRegistryScheme,
    UnknownVersion,
    get_registry,
    locate,
    parse_ref,
)
from runtime.registry import filesystem as fs_module
from runtime.registry.base import Ref

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(b"not really onnx, but bytes to copy")
    return path


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    profile = Profile.fit(rng.normal(size=(500, 3)), outputs=rng.normal(size=(500, 1)))
    path = tmp_path / "ref.json"
    profile.save(path)
    return path


@pytest.fixture
def reg(tmp_path: Path) -> FilesystemRegistry:
    return FilesystemRegistry(tmp_path / "registry")


def _versions(reg: FilesystemRegistry, name: str) -> list[str]:
    return [v.version for v in reg.list_versions(name)]


# -- references ------------------------------------------------------------------------------------


def test_parse_ref_forms():
    assert parse_ref("fraud@staging") == Ref("fraud", alias="staging")
    assert parse_ref("fraud/12") == Ref("fraud", version="12")
    assert parse_ref("fraud") == Ref("fraud", alias="production")
    assert str(parse_ref("fraud/3")) == "fraud/3" and str(parse_ref("fraud")) == "fraud@production"


@pytest.mark.parametrize("bad", ["", "@prod", "fraud@", "fraud/", "fraud/01", "fraud/0", "fraud/x",
                                 "fraud@3", "a@b/1", "../etc", ".hidden", "fra ud"])
def test_parse_ref_rejects(bad):
    with pytest.raises(InvalidReference) as info:
        parse_ref(bad)
    assert isinstance(info.value, MlrtError)


# -- round trips -----------------------------------------------------------------------------------


def test_register_and_resolve_round_trip(reg, model_file, profile_file):
    v = reg.register(model_file, "fraud", profile=profile_file, params={"depth": 6}, metrics={"auc": 0.91},
                     data="s3://bucket/train.parquet", git_commit="abc123", pipeline="make train")
    assert v == "1"
    reg.set_alias("fraud", "production", v)
    for ref in ("fraud@production", "fraud/1", "fraud"):
        m = reg.resolve(ref)
        assert isinstance(m, ResolvedModel)
        assert (m.name, m.version) == ("fraud", "1")
        assert m.model_path == reg.root / "fraud" / "1" / "model.onnx"
        assert m.model_path.read_bytes() == model_file.read_bytes()
        assert m.profile_path is not None
        assert Profile.load(m.profile_path).to_json() == Profile.load(profile_file).to_json()
        assert m.card["metrics"] == {"auc": 0.91}
    assert reg.resolve("fraud@production").alias == "production"
    assert reg.list_models() == ["fraud"]


def test_versions_count_up_per_model(reg, model_file):
    assert [reg.register(model_file, "a") for _ in range(3)] == ["1", "2", "3"]
    assert reg.register(model_file, "b") == "1"
    assert _versions(reg, "a") == ["1", "2", "3"]
    assert reg.list_models() == ["a", "b"]


def test_versions_sort_numerically(reg, model_file):
    for _ in range(11):
        reg.register(model_file, "m")
    assert _versions(reg, "m")[-3:] == ["9", "10", "11"]
    assert reg.register(model_file, "m") == "12"


def test_register_a_directory(reg, tmp_path):
    src = tmp_path / "export"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(b"w")
    (src / "sub" / "meta.txt").write_text("m")
    v = reg.register(src, "dirmodel")
    m = reg.resolve(f"dirmodel/{v}")
    assert m.model_path.is_dir() and m.model_path.name == "export"
    assert (m.model_path / "sub" / "meta.txt").read_text() == "m"
    assert m.profile_path is None and m.card["profile"] is None


def test_without_profile_card_says_so(reg, model_file):
    v = reg.register(model_file, "m")
    assert reg.resolve(f"m/{v}").profile_path is None
    assert "No reference profile" in reg.card_markdown("m", v)


# -- aliases, audit log, rollback ------------------------------------------------------------------


def test_promote_and_rollback_with_audit_log(reg, model_file):
    for _ in range(3):
        reg.register(model_file, "m")
    reg.set_alias("m", "production", "1", actor="alice", reason="first")
    reg.set_alias("m", "production", "2", actor="bob", reason="better auc")
    reg.set_alias("m", "staging", "3")
    reg.set_alias("m", "production", "3", actor="carol")
    assert reg.aliases("m") == {"production": "3", "staging": "3"}
    assert reg.alias_target("m", "production") == "3"

    assert reg.rollback("m", "production", actor="dave", reason="latency") == "2"
    assert reg.alias_target("m", "production") == "2"
    assert reg.rollback("m", "production") == "1"
    with pytest.raises(NothingToRollBack, match="no earlier target"):
        reg.rollback("m", "production")
    assert reg.aliases("m") == {"production": "1", "staging": "3"}

    events = reg.history("m", "production")
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("promote", None, "1"), ("promote", "1", "2"), ("promote", "2", "3"),
        ("rollback", "3", "2"), ("rollback", "2", "1"),
    ]
    assert events[1]["actor"] == "bob" and events[1]["reason"] == "better auc"
    assert events[3]["actor"] == "dave" and events[3]["reason"] == "latency"
    assert all(e["time"].endswith("Z") for e in events)
    everything = reg.history("m")
    assert [e["action"] for e in everything[:3]] == ["register"] * 3
    assert [e["to"] for e in everything[:3]] == ["1", "2", "3"]
    # The file itself: one JSON object per line, the same events.
    lines = (reg.root / "m" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == everything
    assert set(json.loads(lines[-1])) == {"time", "action", "alias", "from", "to", "actor", "reason"}


def test_rollback_after_repromoting_the_same_version(reg, model_file):
    for _ in range(2):
        reg.register(model_file, "m")
    reg.set_alias("m", "production", "1")
    reg.set_alias("m", "production", "2")
    reg.set_alias("m", "production", "1")
    assert reg.rollback("m", "production") == "2"
    assert reg.rollback("m", "production") == "1"


def test_setting_an_alias_to_its_target_records_nothing(reg, model_file):
    reg.register(model_file, "m")
    reg.set_alias("m", "staging", "1")
    reg.set_alias("m", "staging", "1")
    assert len(reg.history("m", "staging")) == 1


def test_rollback_refuses_when_aliases_file_disagrees_with_log(reg, model_file):
    for _ in range(2):
        reg.register(model_file, "m")
    reg.set_alias("m", "production", "1")
    reg.set_alias("m", "production", "2")
    (reg.root / "m" / "aliases.json").write_text('{"production": "1"}')  # edited by hand
    with pytest.raises(RegistryError, match="audit log says 2"):
        reg.rollback("m", "production")


def test_alias_errors(reg, model_file):
    reg.register(model_file, "m")
    with pytest.raises(UnknownVersion, match="no version '7'.*known versions: 1"):
        reg.set_alias("m", "production", "7")
    with pytest.raises(UnknownAlias, match="no alias 'production'"):
        reg.resolve("m@production")
    with pytest.raises(UnknownAlias):
        reg.rollback("m", "staging")
    with pytest.raises(InvalidReference, match="all digits"):
        reg.set_alias("m", "42", "1")
    assert reg.alias_target("m", "production") is None
    assert reg.alias_target("never-registered", "production") is None


def test_torn_last_event_line_is_ignored(reg, model_file):
    reg.register(model_file, "m")
    with open(reg.root / "m" / "events.jsonl", "a") as fh:
        fh.write('{"time": "2024-01-01T00:00:00Z", "act')  # a writer died mid-line
    assert [e["action"] for e in reg.history("m")] == ["register"]


# -- cards -----------------------------------------------------------------------------------------


def test_card_json_and_markdown(reg, model_file, profile_file):
    reg.register(model_file, "fraud")
    v = reg.register(model_file, "fraud", profile=profile_file, params={"max_depth": 6, "loss": "log"},
                     metrics={"auc": 0.9134, "f1": 0.5}, data="s3://bucket/train.parquet",
                     git_commit="4f2c9e1", pipeline="python train.py --seed 1", parent="1",
                     description="Gradient-boosted fraud model.")
    card = json.loads((reg.root / "fraud" / v / "card.json").read_text())
    assert card["schema"] == "mlrt.card" and card["schema_version"] == 1
    assert (card["name"], card["version"], card["model"]) == ("fraud", "2", "model.onnx")
    assert card["created_at"].endswith("Z") and card["created_at"][:4].isdigit()
    assert card["params"] == {"max_depth": 6, "loss": "log"}
    assert card["metrics"] == {"auc": 0.9134, "f1": 0.5}
    assert card["data"] == "s3://bucket/train.parquet"
    assert card["lineage"] == {"git_commit": "4f2c9e1", "pipeline": "python train.py --seed 1", "parent": "1"}
    profile = Profile.load(profile_file)
    assert card["profile"] == {"features": 3, "outputs": 1, "row_count": 500,
                               "fingerprint": profile.fingerprint}
    assert card == reg.card("fraud", v)

    md = (reg.root / "fraud" / v / "card.md").read_text()
    assert md.startswith("# fraud version 2\n")
    assert "Gradient-boosted fraud model." in md
    assert "| max_depth | 6 |" in md and "| auc | 0.9134 |" in md
    assert "`4f2c9e1`" in md and "`python train.py --seed 1`" in md and "**Parent version**: 1" in md
    assert "**Rows**: 500" in md and profile.fingerprint in md
    assert "**Aliases**: none" in md

    # card.md is re-rendered when an alias moves onto or off the version.
    reg.set_alias("fraud", "production", v)
    reg.set_alias("fraud", "staging", v)
    md = (reg.root / "fraud" / v / "card.md").read_text()
    assert "**Aliases**: `production`, `staging`" in md
    reg.set_alias("fraud", "production", "1")
    assert "**Aliases**: `staging`" in (reg.root / "fraud" / v / "card.md").read_text()
    assert "**Aliases**: `production`" in (reg.root / "fraud" / "1" / "card.md").read_text()
    assert "**Aliases**: `staging`" in reg.card_markdown("fraud", v)


def test_a_move_whose_writer_died_before_its_cards_is_finished_next(reg, model_file, monkeypatch):
    v1, v2 = reg.register(model_file, "fraud"), reg.register(model_file, "fraud")
    reg.set_alias("fraud", "production", v1)

    def dies(*args, **kwargs):
        raise SystemExit("killed")  # the process dies between aliases.json and the cards

    with monkeypatch.context() as m:
        m.setattr(type(reg), "_render_cards", dies)
        with pytest.raises(SystemExit):
            reg.set_alias("fraud", "production", v2)
    assert reg.alias_target("fraud", "production") == v2  # the move itself happened
    stale = (reg.root / "fraud" / v1 / "card.md").read_text()
    assert "**Aliases**: `production`" in stale  # what the dead writer left
    assert json.loads((reg.root / "fraud" / ".cards-pending").read_text()) == [v1, v2]
    assert "**Aliases**: none" in reg.card_markdown("fraud", v1)  # readers render the truth anyway

    reg.register(model_file, "fraud")  # any next write of the model finishes the move first
    assert not (reg.root / "fraud" / ".cards-pending").exists()
    assert "**Aliases**: none" in (reg.root / "fraud" / v1 / "card.md").read_text()
    assert "**Aliases**: `production`" in (reg.root / "fraud" / v2 / "card.md").read_text()


def test_card_rejects_non_json_values(reg, model_file):
    with pytest.raises(RegistryError, match="metric 'auc' must be a finite number"):
        reg.register(model_file, "m", metrics={"auc": float("nan")})
    assert reg.list_models() == []


def test_bad_profile_is_rejected_before_anything_is_written(reg, model_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    with pytest.raises(RegistryError, match="cannot read the profile"):
        reg.register(model_file, "m", profile=bad)
    assert reg.list_models() == []


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_things_name_what_exists(reg, model_file):
    reg.register(model_file, "known")
    with pytest.raises(UnknownModel, match="unknown model 'other' .*known models: known"):
        reg.resolve("other@production")
    with pytest.raises(UnknownVersion, match="no version '5'"):
        reg.resolve("known/5")
    with pytest.raises(UnknownModel):
        reg.list_versions("other")
    with pytest.raises(UnknownVersion):
        reg.register(model_file, "known", parent="9")


def test_register_errors(reg, tmp_path, model_file):
    with pytest.raises(RegistryError, match="does not exist"):
        reg.register(tmp_path / "missing.onnx", "m")
    card_named = tmp_path / "card.json"
    card_named.write_text("{}")
    with pytest.raises(RegistryError, match="may not be named 'card.json'"):
        reg.register(card_named, "m")
    with pytest.raises(InvalidReference):
        reg.register(model_file, "../escape")


def test_empty_registry(reg):
    assert reg.list_models() == []
    # A root that is not there is most likely a mistyped path: said so, not "no models yet".
    with pytest.raises(UnknownModel, match="no registry at .*: the directory does not exist"):
        reg.resolve("m@production")
    reg.root.mkdir(parents=True)
    with pytest.raises(UnknownModel, match="no models yet"):
        reg.resolve("m@production")


# -- atomicity and concurrency ---------------------------------------------------------------------


def test_failure_mid_copy_leaves_no_version(reg, model_file, monkeypatch):
    reg.register(model_file, "m")

    def half_copy(src, dst):
        Path(dst).write_bytes(src.read_bytes()[:5])
        raise OSError("disk full")

    monkeypatch.setattr(fs_module, "_copy_source", half_copy)
    with pytest.raises(OSError, match="disk full"):
        reg.register(model_file, "m")
    assert _versions(reg, "m") == ["1"]
    assert [p.name for p in (reg.root / "m").iterdir() if p.name.startswith(".tmp-")] == []
    monkeypatch.undo()
    assert reg.register(model_file, "m") == "2"


def _start_python(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO_ROOT,
                          capture_output=True, timeout=120, check=False)


def test_crashed_writer_leaves_no_visible_half_version(reg, model_file):
    """A process killed in the middle of copying leaves only a .tmp-* directory, which nothing lists."""
    reg.register(model_file, "m")
    crash = """
        import os, sys
        from pathlib import Path
        from runtime.registry import FilesystemRegistry, filesystem

        def dying_copy(src, dst):
            Path(dst).write_bytes(src.read_bytes()[:5])  # half the file is on disk...
            os._exit(9)                                  # ...and the process dies: no cleanup runs

        filesystem._copy_source = dying_copy
        FilesystemRegistry(sys.argv[1]).register(sys.argv[2], "m")
    """
    proc = _run_python(crash, str(reg.root), str(model_file))
    assert proc.returncode == 9, proc.stderr.decode()
    leftovers = [p for p in (reg.root / "m").iterdir() if p.name.startswith(".tmp-")]
    # The crash really happened mid-write: half a copy sits in a temporary directory.
    assert len(leftovers) == 1 and (leftovers[0] / "model.onnx").exists()
    assert _versions(reg, "m") == ["1"]
    assert reg.list_models() == ["m"]
    with pytest.raises(UnknownVersion):
        reg.resolve("m/2")
    assert reg.register(model_file, "m") == "2"


def test_crashed_first_registration_leaves_no_model(reg, model_file):
    crash = """
        import os, sys
        from runtime.registry import FilesystemRegistry, filesystem
        filesystem._copy_source = lambda src, dst: os._exit(9)
        FilesystemRegistry(sys.argv[1]).register(sys.argv[2], "fresh")
    """
    assert _run_python(crash, str(reg.root), str(model_file)).returncode == 9
    assert reg.list_models() == []
    with pytest.raises(UnknownModel):
        reg.resolve("fresh/1")


def test_concurrent_register_from_two_processes_gives_distinct_versions(reg, model_file, tmp_path):
    go = tmp_path / "go"
    writer = """
        import sys, time
        from pathlib import Path
        from runtime.registry import FilesystemRegistry
        root, source, go, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
        reg = FilesystemRegistry(root)
        while not go.exists():  # start both writers together
            time.sleep(0.001)
        for _ in range(n):
            print(reg.register(source, "m"), flush=True)
            reg.set_alias("m", "staging", reg.list_versions("m")[-1].version)
    """
    n = 8
    procs = [_start_python(writer, str(reg.root), str(model_file), str(go), str(n)) for _ in range(2)]
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outputs.append(out.decode().split())
    got = outputs[0] + outputs[1]
    assert len(got) == 2 * n and len(set(got)) == 2 * n
    assert sorted(got, key=int) == [str(i) for i in range(1, 2 * n + 1)]
    assert _versions(reg, "m") == sorted(got, key=int)
    events = reg.history("m")
    assert sorted((e["to"] for e in events if e["action"] == "register"), key=int) == sorted(got, key=int)
    # Every alias write landed whole: the file parses, and each promotion's "from" is the previous "to".
    promotions = reg.history("m", "staging")
    assert all(b["from"] == a["to"] for a, b in zip(promotions[:-1], promotions[1:], strict=True))
    assert reg.alias_target("m", "staging") == promotions[-1]["to"]


# -- discovery -------------------------------------------------------------------------------------


def test_get_registry_paths_and_file_uris(tmp_path, model_file):
    FilesystemRegistry(tmp_path / "r").register(model_file, "m")
    for uri in (str(tmp_path / "r"), (tmp_path / "r").as_uri()):
        reg = get_registry(uri)
        assert isinstance(reg, FilesystemRegistry)
        assert reg.resolve("m/1").model_path.read_bytes() == model_file.read_bytes()


def test_get_registry_unknown_scheme_lists_known_ones():
    with pytest.raises(UnknownRegistryScheme, match="'s4:'.*known schemes: file, mlflow, models"):
        get_registry("s4://bucket/models")
    with pytest.raises(RegistryError, match="no registry given"):
        get_registry("")


def test_locate(tmp_path):
    reg, ref = locate("m@production", registry=str(tmp_path))
    assert isinstance(reg, FilesystemRegistry) and ref == "m@production"
    with pytest.raises(RegistryError, match="MLRT_REGISTRY"):
        locate("m@production")


# MLflow's sqlite store uses a SQLAlchemy loader strategy that SQLAlchemy 2.1 deprecates.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_locate_an_mlflow_reference_in_the_mlflow_registry_given(tmp_path, monkeypatch):
    # `mlrt gate --candidate models:/m/2 --registry mlflow+sqlite:///...` resolved the reference
    # against MLflow's default store (creating mlflow.db in the working directory).
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLRT_REGISTRY", raising=False)
    given = f"mlflow+sqlite:///{tmp_path / 'm.db'}"
    reg, ref = locate("models:/m/2", registry=given)
    assert ref == "models:/m/2" and reg.tracking_uri == given[len("mlflow+") :]
    monkeypatch.setenv("MLRT_REGISTRY", given)
    assert locate("models:/m/2")[0].tracking_uri == given[len("mlflow+") :]
    # A filesystem registry given does not hold MLflow's references: MLflow's own store
    # (MLFLOW_TRACKING_URI) does.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.chdir(tmp_path)
    reg, _ = locate("models:/m/2", registry=str(tmp_path))
    assert type(reg).__name__ == "MlflowRegistry" and reg.tracking_uri is None
