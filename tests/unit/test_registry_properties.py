"""The filesystem registry under concurrent writers: what its module docstring promises, checked after
hypothesis-chosen mixes of registrations, promotions and rollbacks run at once by several OS processes
(subprocesses, each with one to three threads) and by threads of the test process, on one registry folder.

Proven, for every mix (runtime/registry/filesystem.py: "concurrent writers ... get distinct versions and
never lose an alias change"; "readers never see half a version"; "a writer that dies mid-copy leaves only
a .tmp-* directory, which every listing ignores"):

- versions of each model are 1..N with no gaps, and are exactly the versions the writers were told they got;
- every version is complete and is its writer's: card.json names it, and its artifact (a file or a
  directory) holds the bytes that writer copied in; card.md is the card rendered with the aliases of now
  (where a move's writer was killed before re-rendering it, the version is named in .cards-pending, and
  the next write of the model renders it);
- the audit log is the list of successful operations: one event per registration, rollback and promotion
  that moved an alias, each attributed (actor) to the operation that made it, none for failed ones;
  registrations are numbered in log order; replaying an alias's promotions and rollbacks gives the chain
  of "from"/"to" and ends at the target aliases.json holds;
- every alias points at an existing version that a writer set (promoted or rolled back to);
- failures are the registry's documented errors with the model named (promoting before any version
  exists, rolling back an alias with nowhere to go), never anything else;
- a reader running all along never sees a version it cannot resolve, an incomplete card or artifact, or an
  alias pointing nowhere;
- a writer process killed at a random moment (SIGKILL) leaves no visible partial version: the versions
  stay gapless and complete, the killed writer's unreported work is at most its one operation in flight,
  and the registry keeps working.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from runtime.registry import (
    FilesystemRegistry,
    NothingToRollBack,
    RegistryError,
    UnknownAlias,
    UnknownModel,
)
from runtime.registry.filesystem import PENDING_FILE, TMP_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = ("fraud", "churn")
ALIASES = ("production", "staging", "canary")
# Every example starts processes: a few examples, and no shrinking (minutes per failure); a failure prints
# the whole scenario, and the writers' logs name the operations involved.
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# One operation: ["register", model, size, as_dir, pause_ms] | ["promote", model, alias, pick, pause_ms]
# | ["rollback", model, alias, 0, pause_ms]. Plans travel to the writer processes as JSON.
Op = list[Any]


# -- what a writer does (run by the writer processes and by threads of the test process) ---------------


def artifact(writer: str, seq: int, size: int) -> bytes:
    """The bytes writer `writer` registers in its operation `seq`: named, then pseudo-random."""
    return f"{writer}/{seq}\n".encode() + random.Random(f"{writer}/{seq}").randbytes(size)


def _make_source(scratch: Path, writer: str, seq: int, size: int, as_dir: bool) -> Path:
    where = scratch / writer / str(seq)
    where.mkdir(parents=True)
    data = artifact(writer, seq, size)
    if not as_dir:
        (where / "model.onnx").write_bytes(data)
        return where / "model.onnx"
    src = where / "export"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(data)
    (src / "sub" / "writer.txt").write_text(f"{writer}/{seq}")
    return src


def run_writer(root: str, scratch: str, writer: str, ops: list[Op], log: str, go: str) -> None:
    """Wait for `go`, then run `ops` against the registry, one JSON line per finished op in `log`.

    A line is written after its operation returned or raised: a writer killed in between has done one
    operation more than its log says. A failure that is not one of the registry's errors propagates.
    """
    reg = FilesystemRegistry(root)
    while not os.path.exists(go):
        time.sleep(0.001)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for seq, (kind, model, arg, flag, pause_ms) in enumerate(ops):
            time.sleep(pause_ms / 1000)
            actor = f"{writer}.{seq}"
            entry: dict[str, Any] = {"writer": writer, "seq": seq, "op": kind, "model": model}
            try:
                if kind == "register":
                    src = _make_source(Path(scratch), writer, seq, arg, flag)
                    params = {"writer": writer, "seq": seq, "size": arg, "dir": flag}
                    entry["version"] = reg.register(src, model, params=params, actor=actor)
                elif kind == "promote":
                    try:
                        versions = [v.version for v in reg.list_versions(model)]
                    except UnknownModel:
                        versions = ["1"]  # nothing yet: set_alias says so (or version 1 has just come)
                    entry["alias"], entry["version"] = arg, versions[flag % len(versions)]
                    reg.set_alias(model, arg, entry["version"], actor=actor, reason=actor)
                else:
                    entry["alias"] = arg
                    entry["version"] = reg.rollback(model, arg, actor=actor, reason=actor)
                entry["ok"] = True
            except RegistryError as exc:
                entry.update(ok=False, error=type(exc).__name__, message=str(exc))
            os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def _process_main(plan_path: str) -> None:
    """A writer process: its threads each run one writer; exit 1 if any raised something unexpected."""
    plan = json.loads(Path(plan_path).read_text())
    failed: list[str] = []

    def thread(writer: str, ops: list[Op]) -> None:
        try:
            run_writer(plan["root"], plan["scratch"], writer, ops, plan["logs"][writer], plan["go"])
        except BaseException:
            failed.append(traceback.format_exc())

    threads = [threading.Thread(target=thread, args=(w, ops)) for w, ops in plan["writers"].items()]
    for t in threads:
        t.start()
    Path(plan["ready"]).touch()
    for t in threads:
        t.join()
    if failed:
        sys.stderr.write("\n".join(failed))
        sys.exit(1)


_CHILD = (
    "import sys; from tests.unit.test_registry_properties import _process_main; _process_main(sys.argv[1])"
)


# -- what the test checks ------------------------------------------------------------------------------


@dataclass
class Scenario:
    processes: list[list[list[Op]]]  # per process, per thread: its operations
    local: list[list[Op]]  # threads of the test process
    kill_after_s: float | None  # SIGKILL process 0 this long after the start, if still running

    def writers(self) -> dict[str, list[Op]]:
        out = {f"p{p}t{t}": ops for p, threads in enumerate(self.processes) for t, ops in enumerate(threads)}
        out.update({f"local{t}": ops for t, ops in enumerate(self.local)})
        return out


def _op() -> st.SearchStrategy[Op]:
    model, alias, pause = st.sampled_from(MODELS), st.sampled_from(ALIASES), st.integers(0, 3)
    size = st.one_of(st.integers(0, 64), st.integers(60_000, 300_000))
    register = st.tuples(st.just("register"), model, size, st.booleans(), pause)
    promote = st.tuples(st.just("promote"), model, alias, st.integers(0, 20), pause)
    rollback = st.tuples(st.just("rollback"), model, alias, st.just(0), pause)
    return st.one_of(register, register, promote, promote, rollback).map(list)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    ops = st.lists(_op(), min_size=1, max_size=6)
    processes = draw(st.lists(st.lists(ops, min_size=1, max_size=3), min_size=1, max_size=3))
    local = draw(st.lists(ops, max_size=2))
    kill = draw(st.one_of(st.none(), st.floats(0.0, 0.4)))
    return Scenario(processes, local, kill)


def _read_logs(logs: Iterable[Path], killed: Iterable[Path] = ()) -> list[dict[str, Any]]:
    """The writers' logs; only a writer killed mid-write may have left a torn last line."""
    entries = []
    for path in logs:
        if path.exists():
            lines = path.read_text().split("\n")
            assert lines[-1] == "" or path in killed, f"{path}: a torn log line"
            entries += [json.loads(line) for line in lines[:-1]]
    return entries


def _artifact_bytes(path: Path) -> bytes:
    return (path / "weights.bin").read_bytes() if path.is_dir() else path.read_bytes()


def _check_version(reg: FilesystemRegistry, model: str, version: str) -> dict[str, Any]:
    """A version as a reader sees it: resolvable, its card about it, its artifact its writer's bytes."""
    m = reg.resolve(f"{model}/{version}")
    card = m.card
    assert (card["name"], card["version"]) == (model, version), card
    assert card["created_at"].endswith("Z")
    p = card["params"]
    assert m.model_path.name == ("export" if p["dir"] else "model.onnx")
    assert _artifact_bytes(m.model_path) == artifact(p["writer"], p["seq"], p["size"]), f"{model}/{version}"
    if p["dir"]:
        assert (m.model_path / "sub" / "writer.txt").read_text() == f"{p['writer']}/{p['seq']}"
    return card


def _reader(reg: FilesystemRegistry, stop: threading.Event, problems: list[str]) -> None:
    """Reads the whole registry over and over while the writers run; records whatever goes wrong."""
    while not stop.is_set():
        try:
            for model in reg.list_models():
                versions = {v.version for v in reg.list_versions(model)}
                for version in sorted(versions, key=int)[-3:]:
                    _check_version(reg, model, version)
                for alias, target in reg.aliases(model).items():
                    assert target in versions or reg.resolve(f"{model}/{target}"), (alias, target)
                    assert reg.resolve(f"{model}@{alias}").version.isdigit()
                reg.history(model)
        except Exception:
            problems.append(traceback.format_exc())
            return
        time.sleep(0.005)


def _replay_alias(events: list[dict[str, Any]], alias: str) -> list[str]:
    """Check the alias's promotions and rollbacks chain up, as rollback() reads them; return the stack."""
    stack: list[str] = []
    for e in events:
        if e["alias"] != alias:
            continue
        assert e["from"] == (stack[-1] if stack else None), (alias, e, stack)
        if e["action"] == "promote":
            assert e["to"] != e["from"], e  # promoting to the current target records nothing
            stack.append(e["to"])
        else:
            assert e["action"] == "rollback" and len(stack) >= 2, (alias, e, stack)
            stack.pop()
            assert e["to"] == stack[-1], (alias, e, stack)
    return stack


def _check_invariants(
    reg: FilesystemRegistry, scenario: Scenario, entries: list[dict[str, Any]], killed: set[str]
) -> None:
    """The state after every writer finished. `killed`: writers whose process was killed mid-run."""
    plan = scenario.writers()
    logged = {(e["writer"], e["seq"]): e for e in entries}
    # A killed writer may have done (part of) the operation after the last one it logged.
    in_flight = {(w, sum(1 for e in entries if e["writer"] == w)) for w in killed}
    in_flight = {(w, s) for w, s in in_flight if s < len(plan[w])}

    for e in entries:  # failures: the documented errors, naming the model
        if not e["ok"]:
            allowed = {
                "promote": {"UnknownModel"},
                "rollback": {"UnknownModel", "UnknownAlias", "NothingToRollBack"},
            }
            if killed and e["op"] == "rollback":  # killed between aliases.json and its event: said so
                allowed["rollback"].add("RegistryError")
            assert e["error"] in allowed.get(e["op"], set()), e
            assert f"'{e['model']}'" in e["message"], e

    for w in plan:  # each writer's own registrations of a model come back in increasing order
        for model in MODELS:
            mine = [
                int(e["version"])
                for e in entries
                if (e["writer"], e["op"], e["model"]) == (w, "register", model)
            ]
            assert mine == sorted(set(mine)), (w, model, mine)

    # The listing: every model a writer registered, and (if killed) perhaps the one in flight.
    reported = {e["model"] for e in entries if e["op"] == "register"}
    maybe = reported | {plan[w][s][1] for w, s in in_flight if plan[w][s][0] == "register"}
    assert reported <= set(reg.list_models()) <= maybe, (reg.list_models(), reported)

    for model in MODELS:
        regs = {e["version"]: e for e in entries if e["op"] == "register" and e["model"] == model}
        if model not in reg.list_models():
            assert not regs
            continue
        infos = reg.list_versions(model)
        versions = [v.version for v in infos]
        # Gapless, and exactly the successful registrations (plus, if killed, the one in flight).
        assert versions == [str(i) for i in range(1, len(versions) + 1)], versions
        assert set(regs) <= set(versions), (sorted(regs), versions)
        aliases = reg.aliases(model)
        events = reg.history(model)
        pending_file = reg.root / model / PENDING_FILE
        pending = json.loads(pending_file.read_text()) if pending_file.exists() else []
        assert not pending or killed, pending
        raw = (reg.root / model / "events.jsonl").read_text()
        assert raw.endswith("\n") and len(raw.splitlines()) == len(events), "a torn audit log"
        for v in versions:
            card = _check_version(reg, model, v)
            who = (card["params"]["writer"], card["params"]["seq"])
            assert plan[who[0]][who[1]][:4] == [
                "register",
                model,
                card["params"]["size"],
                card["params"]["dir"],
            ]
            if v in regs:
                assert (regs[v]["writer"], regs[v]["seq"]) == who, (v, regs[v], who)
            else:
                assert who in in_flight, f"{model}/{v} by {who}, which no writer reported"
            if v not in pending:  # a move's writer killed before re-rendering: the next writer does
                assert (reg.root / model / v / "card.md").read_text() == reg.card_markdown(model, v)
            assert set(infos[int(v) - 1].aliases) == {a for a, t in aliases.items() if t == v}

        # The audit log: each event made by one operation, of its kind and with its result.
        seen: dict[tuple[str, int], int] = {}
        for e in events:
            writer, _, seq = e["actor"].rpartition(".")
            who = (writer, int(seq))
            seen[who] = seen.get(who, 0) + 1
            op = plan[who[0]][who[1]]
            assert op[:2] == [e["action"], model], (e, op)
            if who in logged:
                assert logged[who]["ok"] and logged[who]["version"] == e["to"], (e, logged[who])
                if e["action"] != "register":
                    assert (e["alias"], e["reason"]) == (logged[who]["alias"], e["actor"]), e
            else:
                assert who in in_flight, f"event {e} by an operation that never ran"
        assert all(n == 1 for n in seen.values()), seen
        for who, e in logged.items():
            if e["model"] == model and e["ok"] and e["op"] in ("register", "rollback"):
                assert seen.get(who) == 1, f"{e} has no event"
        reg_events = [e["to"] for e in events if e["action"] == "register"]
        assert [int(v) for v in reg_events] == sorted(int(v) for v in reg_events), reg_events
        if not killed:
            assert reg_events == versions, (reg_events, versions)

        # Aliases: each points at an existing version a writer set; without a kill the log replays to it.
        assert set(aliases) == {e["alias"] for e in events if e["alias"] is not None} or killed
        for alias, target in aliases.items():
            assert target in versions, (alias, target, versions)
            set_by = {
                e["version"] for e in entries if e["ok"] and e.get("alias") == alias and e["model"] == model
            }
            racing = any(plan[w][s][1:3] == [model, alias] for w, s in in_flight)
            assert target in set_by or racing, (alias, target, set_by)
            if not killed:
                assert _replay_alias(events, alias)[-1] == target, (alias, target)
                assert reg.alias_target(model, alias) == target

        # Temporary files: none left, but a .tmp-* (or .aliases.json.*.tmp) by a writer killed using it.
        leftovers = [
            p.name
            for p in (reg.root / model).iterdir()
            if p.name.startswith((TMP_PREFIX, ".aliases", f".{PENDING_FILE}"))
        ]
        assert len(leftovers) <= len(in_flight), leftovers

    # Whatever happened, the registry still works: the next version is N + 1 and can be promoted.
    src = Path(tempfile.mkdtemp(dir=reg.root.parent)) / "model.onnx"
    src.write_bytes(b"after")
    for model in MODELS:
        before = len(reg.list_versions(model)) if model in reg.list_models() else 0
        assert reg.register(src, model) == str(before + 1)
        reg.set_alias(model, "after-test", str(before + 1))
        assert reg.resolve(f"{model}@after-test").model_path.read_bytes() == b"after"
        # ...and every card shows its aliases again: the first write finished a killed move's cards.
        assert not (reg.root / model / PENDING_FILE).exists()
        for info in reg.list_versions(model):
            card_md = (reg.root / model / info.version / "card.md").read_text()
            assert card_md == reg.card_markdown(model, info.version)


def _run_scenario(scenario: Scenario) -> set[str]:
    """Run the writers at once, check the registry after; return the writers that were killed."""
    with tempfile.TemporaryDirectory(prefix="mlrt-reg-props-") as tmp:
        base = Path(tmp)
        root, scratch, go = base / "registry", base / "scratch", base / "go"  # root made by the writers
        writers = scenario.writers()
        logs = {w: str(base / f"log-{w}.jsonl") for w in writers}
        procs: list[subprocess.Popen[bytes]] = []
        ready: list[Path] = []
        for p, threads in enumerate(scenario.processes):
            names = [f"p{p}t{t}" for t in range(len(threads))]
            plan = {
                "root": str(root),
                "scratch": str(scratch),
                "go": str(go),
                "ready": str(base / f"ready-{p}"),
                "logs": logs,
                "writers": {w: writers[w] for w in names},
            }
            plan_path = base / f"plan-{p}.json"
            plan_path.write_text(json.dumps(plan))
            ready.append(Path(plan["ready"]))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(plan_path)],
                    cwd=REPO_ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        reg = FilesystemRegistry(root)
        problems: list[str] = []
        stop = threading.Event()
        reader = threading.Thread(target=_reader, args=(reg, stop, problems))
        local_failed: list[str] = []

        def local(writer: str) -> None:
            try:
                run_writer(str(root), str(scratch), writer, writers[writer], logs[writer], str(go))
            except BaseException:
                local_failed.append(traceback.format_exc())

        locals_ = [threading.Thread(target=local, args=(f"local{t}",)) for t in range(len(scenario.local))]
        try:
            deadline = time.monotonic() + 60
            while not all(r.exists() for r in ready):  # every writer process imported and waiting
                assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
                assert time.monotonic() < deadline, "writer processes did not start"
                time.sleep(0.005)
            for t in locals_:
                t.start()
            reader.start()
            go.touch()
            killed: set[str] = set()
            if scenario.kill_after_s is not None:
                time.sleep(scenario.kill_after_s)
                procs[0].send_signal(signal.SIGKILL)
            outputs = [p.communicate(timeout=120) for p in procs]
            for t in locals_:
                t.join(120)
        finally:
            stop.set()
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
            if reader.ident is not None:
                reader.join(30)
        for p, (_, err) in zip(procs, outputs, strict=True):
            if p is procs[0] and p.returncode == -signal.SIGKILL:
                killed = {f"p0t{t}" for t in range(len(scenario.processes[0]))}
            else:
                assert p.returncode == 0, err.decode()
        assert not local_failed, local_failed[0]
        assert not problems, problems[0]
        entries = _read_logs([Path(log) for log in logs.values()], [Path(logs[w]) for w in killed])
        _check_invariants(reg, scenario, entries, killed)
        return killed


@SETTINGS
@given(scenarios())
def test_concurrent_writers_keep_the_registry_consistent(scenario: Scenario) -> None:
    note(repr(scenario))  # (this hypothesis prints the arguments of a failing example blank)
    _run_scenario(scenario)


def test_many_writers_on_one_model_at_once() -> None:
    """The heaviest mix hypothesis might not draw: three processes of three threads and two local
    threads, all registering and promoting one model, with large artifacts."""
    ops: list[Op] = [["register", "fraud", 150_000, i % 2 == 1, 0] for i in range(3)]
    ops += [["promote", "fraud", "production", 7, 0], ["register", "fraud", 10, False, 0],
            ["promote", "fraud", "production", 3, 1], ["rollback", "fraud", "production", 0, 0]]  # fmt: skip
    _run_scenario(Scenario(processes=[[ops] * 3] * 3, local=[ops] * 2, kill_after_s=None))


def test_a_writer_killed_mid_registration_leaves_no_partial_version() -> None:
    """Large artifacts keep each registration copying for a while; the kill lands in one of them."""
    ops: list[Op] = [["register", "fraud", 300_000, i % 2 == 0, 0] for i in range(12)]
    killed = _run_scenario(Scenario(processes=[[ops, ops], [ops[:4]]], local=[ops[:3]], kill_after_s=0.05))
    assert killed == {"p0t0", "p0t1"}  # it really was killed before it finished


def test_writer_errors_are_the_registry_errors() -> None:
    """The failures the concurrent mixes allow, one by one: each is the registry's error, naming the model."""
    ops: list[Op] = [
        ["promote", "churn", "staging", 0, 0],  # no version yet
        ["rollback", "churn", "staging", 0, 0],  # no model yet
        ["register", "churn", 3, False, 0],
        ["rollback", "churn", "staging", 0, 0],  # an alias never set
        ["promote", "churn", "staging", 0, 0],
        ["rollback", "churn", "staging", 0, 0],  # set once: nowhere to go back to
    ]
    with tempfile.TemporaryDirectory() as tmp:
        log, go = Path(tmp) / "log", Path(tmp) / "go"
        go.touch()
        run_writer(str(Path(tmp) / "registry"), tmp, "w", ops, str(log), str(go))
        entries = _read_logs([log])
    assert [e.get("error") for e in entries] == [
        UnknownModel.__name__, UnknownModel.__name__, None, UnknownAlias.__name__, None,
        NothingToRollBack.__name__,
    ]  # fmt: skip
    assert all("'churn'" in e["message"] for e in entries if not e["ok"])
