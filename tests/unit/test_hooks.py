"""Hooks: firing rules (de-dup, cooldown), isolation from serving, and each built-in hook
against the real thing (an HTTP receiver on loopback, a real subprocess, a real module)."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import logging
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ConfigError
from runtime.hooks import (
    CommandHook,
    DriftEvent,
    HookDispatcher,
    HookError,
    HookSpec,
    RollbackEvent,
    build_hooks,
)
from runtime.hooks._webhook import WebhookHook
from tests.unit import hooks_target

FEATURES = (
    {"name": "age", "section": "features", "psi": 0.31, "js": 0.12, "status": "alert", "rows": 5000},
    {"name": "income", "section": "features", "psi": 0.02, "js": 0.01, "status": "ok", "rows": 5000},
    {"name": "score", "section": "outputs", "psi": 0.14, "js": 0.05, "status": "warn", "rows": 5000},
)


def event(status: str, *, model: str = "churn", version: str = "3", previous: str = "ok") -> DriftEvent:
    return DriftEvent(
        model=model,
        version=version,
        status=status,
        previous=previous,
        features=FEATURES,
        window_s=600.0,
        rows=5000,
        time=1_700_000_000.0,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A hook that records the events it gets; `wait(n)` blocks until it has n."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.events: list[DriftEvent] = []
        self._cond = threading.Condition()

    def __call__(self, ev: DriftEvent) -> None:
        with self._cond:
            self.events.append(ev)
            self._cond.notify_all()

    def wait(self, n: int, timeout_s: float = 5.0) -> list[DriftEvent]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.events) >= n, timeout=timeout_s), self.events
        return self.events


class Blocker:
    """A hook that blocks until released."""

    name = "blocker"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, ev: DriftEvent) -> None:
        self.started.set()
        self.release.wait(10)


class Failing:
    name = "failing"

    def __call__(self, ev: DriftEvent) -> None:
        raise RuntimeError("kaput")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _clear_target() -> Iterator[None]:
    hooks_target.RECEIVED.clear()
    yield
    hooks_target.RECEIVED.clear()


# ---------------------------------------------------------------- event


def test_event_to_json_has_every_field_and_is_strict_json() -> None:
    ev = DriftEvent(
        model="m",
        version="1",
        status="alert",
        previous="warn",
        features=(
            {
                "name": "x",
                "section": "features",
                "psi": math.inf,
                "js": math.nan,
                "status": "alert",
                "rows": 10,
            },
        ),
        window_s=600.0,
        rows=10,
        time=1.5,
    )
    data = ev.to_json()
    assert set(data) >= {"model", "version", "status", "previous", "features", "window_s", "rows", "time"}
    assert data["features"] == [
        {"name": "x", "section": "features", "psi": None, "js": None, "status": "alert", "rows": 10}
    ]
    assert json.loads(json.dumps(data, allow_nan=False)) == data


# ---------------------------------------------------------------- firing rules


def test_one_firing_per_episode_and_cooldown(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    with HookDispatcher([HookSpec(rec, on=frozenset({"alert"}), cooldown_s=100)], clock=clock) as d:
        for status in ("ok", "warn"):
            d.observe(event(status))
        assert d.fired == 0
        d.observe(event("alert"))  # warn -> alert: the episode starts
        assert d.fired == 1
        for _ in range(5):
            d.observe(event("alert"))  # still the same episode
        assert d.fired == 1

        clock.now += 10
        d.observe(event("warn"))
        with caplog.at_level(logging.INFO, logger="runtime.hooks"):
            d.observe(event("alert"))  # a new rise, but inside the cooldown
        assert d.fired == 1
        assert "suppressed" in caplog.text and "churn" in caplog.text

        clock.now += 200  # cooldown over, but the status never left alert: no new episode
        d.observe(event("alert"))
        assert d.fired == 1

        d.observe(event("ok"))
        d.observe(event("alert"))  # back below `on`, after the cooldown: fires again
        assert d.fired == 2
    assert [e.status for e in rec.events] == ["alert", "alert"]


def test_models_and_versions_are_separate_episodes(clock: FakeClock) -> None:
    rec = Recorder()
    with HookDispatcher([HookSpec(rec, cooldown_s=3600)], clock=clock) as d:
        d.observe(event("alert", model="a"))
        d.observe(event("alert", model="b"))
        d.observe(event("alert", model="a", version="4"))
        d.observe(event("alert", model="a"))
        assert d.fired == 3
    assert sorted((e.model, e.version) for e in rec.events) == [("a", "3"), ("a", "4"), ("b", "3")]


def test_cooldown_is_per_hook(clock: FakeClock) -> None:
    short, long = Recorder("short"), Recorder("long")
    specs = [HookSpec(short, cooldown_s=5), HookSpec(long, cooldown_s=3600)]
    with HookDispatcher(specs, clock=clock) as d:
        d.observe(event("alert"))
        d.observe(event("ok"))
        clock.now += 10
        d.observe(event("alert"))
        assert d.fired == 3
    assert len(short.events) == 2 and len(long.events) == 1


def test_on_warn_and_alert(clock: FakeClock) -> None:
    rec = Recorder()
    with HookDispatcher([HookSpec(rec, on=frozenset({"warn", "alert"}), cooldown_s=0)], clock=clock) as d:
        d.observe(event("ok"))
        d.observe(event("warn"))  # ok -> warn
        assert d.fired == 1
        d.observe(event("warn"))
        d.observe(event("alert"))  # warn -> alert
        assert d.fired == 2
        d.observe(event("alert"))
        d.observe(event("warn"))  # falling is not a new episode
        assert d.fired == 2
        d.observe(event("alert"))  # warn -> alert again (no cooldown)
        assert d.fired == 3
    transitions = [(e.previous, e.status) for e in rec.events]
    assert transitions == [("ok", "warn"), ("warn", "alert"), ("warn", "alert")]


def test_a_rise_to_alert_fires_within_the_cooldown_of_a_warn(clock: FakeClock) -> None:
    # With the default cooldown (an hour), ok -> warn fired and the rise to alert was
    # suppressed as "fired 0 s ago": the docs' table says it fires on warn, then alert.
    rec = Recorder()
    with HookDispatcher([HookSpec(rec, on=frozenset({"warn", "alert"}), cooldown_s=3600)], clock=clock) as d:
        d.observe(event("warn"))
        clock.now += 5
        d.observe(event("alert"))
        assert d.fired == 2
        d.observe(event("warn"))
        d.observe(event("alert"))  # alert again, inside the cooldown: no news
        d.observe(event("ok"))
        d.observe(event("warn"))  # lower than what it fired for: suppressed
        assert d.fired == 2
        clock.now += 4000  # past the cooldown: warn fires, and alert after it again
        d.observe(event("ok"))
        d.observe(event("warn"))
        d.observe(event("alert"))
        assert d.fired == 4
    assert [(e.previous, e.status) for e in rec.events] == [("ok", "warn"), ("warn", "alert")] * 2


def test_the_timeline_says_fired_before_done() -> None:
    # "done" was told after the hook had been submitted, and so often before "fired".
    told: list[tuple[str, str]] = []
    d = HookDispatcher(
        [HookSpec(Recorder(), cooldown_s=0)], on_event=lambda kind, model, text: told.append((model, text))
    )
    for i in range(50):
        d.observe(event("alert", model=f"m{i}"))
    d.close()
    for i in range(50):
        mine = [text.split(":")[0].split()[-1] for model, text in told if model == f"m{i}"]
        assert mine[:1] == ["fired"] and len(mine) == 2, mine


def test_first_observation_counts_as_from_ok_and_event_carries_the_transition(clock: FakeClock) -> None:
    warn_only, alert_only = Recorder("w"), Recorder("a")
    specs = [HookSpec(warn_only, on=frozenset({"warn"})), HookSpec(alert_only, on=frozenset({"alert"}))]
    with HookDispatcher(specs, clock=clock) as d:
        d.observe(event("alert", previous="alert"))  # first sight: from "ok"
    assert warn_only.events == []  # on=["warn"] fires on entering warn only
    assert [(e.previous, e.status) for e in alert_only.events] == [("ok", "alert")]


def test_firing_is_logged_with_drifting_features(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder("notify-team")
    with caplog.at_level(logging.INFO, logger="runtime.hooks"):
        with HookDispatcher([HookSpec(rec)]) as d:
            d.observe(event("alert"))
    fired = [r for r in caplog.records if "fired" in r.getMessage()]
    assert len(fired) == 1 and fired[0].levelno == logging.INFO
    msg = fired[0].getMessage()
    parts = ("notify-team", "churn", "version 3", "alert", "age psi=0.310 (alert)", "score psi=0.140 (warn)")
    for part in parts:
        assert part in msg
    assert "income" not in msg
    assert any("done" in r.getMessage() for r in caplog.records)


def rollback(model: str = "canary", version: str = "2") -> RollbackEvent:
    return RollbackEvent(
        endpoint="churn",
        model=model,
        version=version,
        reason="error rate 40.0% ...",
        weight_was=10.0,
        time=1_700_000_000.0,
    )


def test_a_rollback_fires_only_the_hooks_that_ask_for_it(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    drift_only, rollbacks, both = Recorder("d"), Recorder("r"), Recorder("b")
    specs = [
        HookSpec(drift_only, on=frozenset({"alert"})),
        HookSpec(rollbacks, on=frozenset({"rollback"}), cooldown_s=100),
        HookSpec(both, on=frozenset({"alert", "rollback"}), cooldown_s=100),
    ]
    with caplog.at_level(logging.INFO, logger="runtime.hooks"):
        with HookDispatcher(specs, clock=clock) as d:
            d.notify(rollback())
            d.observe(event("alert", model="canary", version="2"))  # its own cooldown, not the rollback's
            clock.now += 50
            d.notify(rollback())  # within the cooldown: suppressed
            clock.now += 60
            d.notify(rollback())
            d.notify(rollback(version="3"))  # another version, another cooldown
            rollbacks.wait(3)
            both.wait(4)
    assert [type(e).__name__ for e in drift_only.events] == ["DriftEvent"]
    assert [e.version for e in rollbacks.events] == ["2", "2", "3"]
    assert [type(e).__name__ for e in both.events] == [
        "RollbackEvent",
        "DriftEvent",
        "RollbackEvent",
        "RollbackEvent",
    ]
    fired = [r.getMessage() for r in caplog.records if "fired" in r.getMessage()]
    assert (
        "hook r fired: model canary version 2 rolled back on endpoint churn (weight 10 -> 0): error rate"
        in fired[0]
    )
    assert any("suppressed" in r.getMessage() and "rolled back" in r.getMessage() for r in caplog.records)


def test_rollback_event_json() -> None:
    data = rollback().to_json()
    assert data == {
        "schema": 1,
        "event": "rollback",
        "endpoint": "churn",
        "model": "canary",
        "version": "2",
        "reason": "error rate 40.0% ...",
        "weight_was": 10.0,
        "time": 1_700_000_000.0,
    }
    assert event("alert").to_json()["event"] == "drift"


def test_on_rollback_is_accepted_in_config() -> None:
    (spec,) = build_hooks(
        [{"type": "callable", "target": "tests.unit.hooks_target:on_drift", "on": ["rollback"]}]
    )
    assert spec.on == {"rollback"}


# ---------------------------------------------------------------- isolation from serving


def test_failing_hook_is_logged_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    with caplog.at_level(logging.INFO, logger="runtime.hooks"):
        d = HookDispatcher([HookSpec(Failing()), HookSpec(rec)])
        d.observe(event("alert"))
        rec.wait(1)
        d.close()
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 1
    assert "failing" in failures[0].getMessage() and "RuntimeError: kaput" in failures[0].getMessage()
    assert d.fired == 2


def test_slow_hook_never_blocks_observe() -> None:
    blocker = Blocker()
    d = HookDispatcher([HookSpec(blocker, cooldown_s=0)], max_workers=1)
    try:
        start = time.perf_counter()
        d.observe(event("alert"))
        assert blocker.started.wait(5)
        # The only worker is busy: further firings queue, observe still returns at once.
        for _ in range(20):
            d.observe(event("ok"))
            d.observe(event("alert"))
        elapsed = time.perf_counter() - start
        assert elapsed < 0.5, elapsed
        assert d.fired == 21
    finally:
        blocker.release.set()
        d.close()


def test_observe_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken_clock() -> float:
        raise OSError("clock gone")

    with caplog.at_level(logging.WARNING, logger="runtime.hooks"):
        with HookDispatcher([HookSpec(Recorder())], clock=broken_clock) as d:
            d.observe(event("alert"))
            d.observe(event("bogus"))
    assert "clock gone" in caplog.text
    assert "unknown status 'bogus'" in caplog.text


def test_close_waits_up_to_timeout_then_refuses_firings(caplog: pytest.LogCaptureFixture) -> None:
    blocker = Blocker()
    d = HookDispatcher([HookSpec(blocker, cooldown_s=0)])
    try:
        d.observe(event("alert"))
        assert blocker.started.wait(5)
        start = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="runtime.hooks"):
            d.close(timeout_s=0.05)
            assert time.perf_counter() - start < 1
            d.observe(event("ok", model="other"))
            d.observe(event("alert", model="other"))
        assert "still running" in caplog.text
        assert "dispatcher is closed" in caplog.text
        assert d.fired == 1
    finally:
        blocker.release.set()


def test_close_waits_for_running_hooks() -> None:
    done = threading.Event()

    class Slowish:
        name = "slowish"

        def __call__(self, ev: DriftEvent) -> None:
            time.sleep(0.1)
            done.set()

    d = HookDispatcher([HookSpec(Slowish())])
    d.observe(event("alert"))
    d.close()
    assert done.is_set()


# ---------------------------------------------------------------- webhook against a real receiver


class Receiver:
    """An HTTP server on 127.0.0.1 that answers POSTs with the next scripted status."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.delay_s = 0.0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers.items()), body))
                if receiver.delay_s:
                    receiver.release.wait(receiver.delay_s)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                payload = b'{"queued": true}' if status < 400 else b"nope"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/retrain"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_webhook_posts_event_json_through_dispatcher(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": "Bearer s3cret"}
    (spec,) = build_hooks([{"type": "webhook", "url": receiver.url, "headers": headers}])
    assert spec.hook.name == f"webhook:{receiver.url}"
    with caplog.at_level(logging.DEBUG, logger="runtime.hooks"):
        with HookDispatcher([spec]) as d:
            d.observe(event("alert"))
    ((headers, body),) = receiver.requests
    assert json.loads(body) == event("alert").to_json()
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer s3cret"
    assert "fired" in caplog.text and "s3cret" not in caplog.text


def test_webhook_retries_5xx_and_429_with_backoff_then_succeeds(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500, 429, 503]
    delays: list[float] = []
    headers = {"X-Token": "s3cret"}
    hook = WebhookHook(receiver.url, retries=3, backoff_s=0.5, headers=headers, sleep=delays.append)
    with caplog.at_level(logging.WARNING, logger="runtime.hooks"):
        hook(event("alert"))
    assert len(receiver.requests) == 4
    assert delays == [0.5, 1.0, 2.0]
    assert "HTTP 500" in caplog.text and "HTTP 429" in caplog.text
    assert "s3cret" not in caplog.text


def test_webhook_gives_up_after_retries(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.statuses = [500, 500, 500, 500]
    (spec,) = build_hooks(
        [
            {
                "type": "webhook",
                "url": receiver.url,
                "retries": 2,
                "backoff_s": 0.01,
                "headers": {"Authorization": "Bearer s3cret"},
            }
        ]
    )
    with pytest.raises(HookError, match=r"gave up after 3 attempt\(s\): HTTP 500"):
        spec.hook(event("alert"))
    assert len(receiver.requests) == 3
    # Through the dispatcher the failure is logged, not raised.
    receiver.statuses = [500, 500, 500]
    with caplog.at_level(logging.INFO, logger="runtime.hooks"):
        with HookDispatcher([spec]) as d:
            d.observe(event("alert"))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "gave up after 3" in errors[0].getMessage()
    assert "s3cret" not in caplog.text


def test_webhook_does_not_retry_4xx(receiver: Receiver) -> None:
    receiver.statuses = [400]
    delays: list[float] = []
    hook = WebhookHook(receiver.url, retries=3, sleep=delays.append)
    with pytest.raises(HookError, match="HTTP 400: nope .not retried"):
        hook(event("alert"))
    assert len(receiver.requests) == 1 and delays == []


def test_webhook_timeout_is_honoured(receiver: Receiver) -> None:
    receiver.delay_s = 5.0
    hook = WebhookHook(receiver.url, timeout_s=0.2, retries=1, backoff_s=0.0)
    start = time.perf_counter()
    with pytest.raises(HookError, match="gave up after 2 attempt.*ReadTimeout"):
        hook(event("alert"))
    assert time.perf_counter() - start < 2.0
    assert len(receiver.requests) == 2


def test_webhook_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []
    hook = WebhookHook(f"http://127.0.0.1:{port}/x", retries=2, backoff_s=0.1, sleep=delays.append)
    with pytest.raises(HookError, match="gave up after 3 attempt.*ConnectError"):
        hook(event("alert"))
    assert delays == [0.1, 0.2]


def test_webhook_name_hides_credentials() -> None:
    hook = WebhookHook("https://user:pw@hooks.example.com/retrain?token=abc")
    assert hook.name == "webhook:https://hooks.example.com/retrain"


def test_webhook_credentials_go_as_basic_auth_and_never_into_a_request_log(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # httpx logs each request's URL at INFO: with the credentials in it, the server's log
    # held "http://svc:hunter2@...". They now travel as Basic auth beside a URL without them.
    url = receiver.url.replace("http://", "http://svc:hunter2@")
    with caplog.at_level(logging.DEBUG):
        WebhookHook(url)(event("alert"))
    ((headers, _),) = receiver.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"svc:hunter2").decode()
    assert "hunter2" not in caplog.text
    # Given twice (the URL's would silently replace the header): refused.
    with pytest.raises(ConfigError, match="credentials once"):
        WebhookHook(url, headers={"Authorization": "Bearer t0ken"})


def test_the_server_keeps_httpx_request_lines_out_of_its_log() -> None:
    # In a process of its own: setup_logging replaces the root logger's handlers.
    code = (
        "import logging; from runtime.server.run import setup_logging; setup_logging('info'); "
        "print(logging.getLogger('httpx').getEffectiveLevel())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout) >= logging.WARNING


# ---------------------------------------------------------------- command


def test_command_hook_gets_event_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "event.json"
    script = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())"
    (spec,) = build_hooks(
        [
            {
                "type": "command",
                "command": [sys.executable, "-c", script, str(out)],
                "timeout_s": 30,
                "on": ["warn", "alert"],
            }
        ]
    )
    with HookDispatcher([spec]) as d:
        d.observe(event("warn"))
    assert json.loads(out.read_text()) == event("warn").to_json()


def test_command_nonzero_exit_is_logged_as_failure(caplog: pytest.LogCaptureFixture) -> None:
    script = "import sys; sys.stdin.read(); sys.stderr.write('model store unreachable'); sys.exit(3)"
    (spec,) = build_hooks([{"type": "command", "command": [sys.executable, "-c", script]}])
    with caplog.at_level(logging.INFO, logger="runtime.hooks"):
        with HookDispatcher([spec]) as d:
            d.observe(event("alert"))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "exited with status 3: model store unreachable" in errors[0].getMessage()


def test_command_timeout() -> None:
    hook = CommandHook([sys.executable, "-c", "import time; time.sleep(10)"], timeout_s=0.3)
    start = time.perf_counter()
    with pytest.raises(HookError, match="timed out after 0.3 s"):
        hook(event("alert"))
    assert time.perf_counter() - start < 5


def test_command_timeout_ends_the_programs_it_started(tmp_path: Path) -> None:
    # Only the script was killed: a `python train.py` it started ran on past the timeout.
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "retrain.sh"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    script.chmod(0o755)
    with pytest.raises(HookError, match="timed out"):
        CommandHook([str(script)], timeout_s=0.5)(event("alert"))
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, "the script's child outlived the timeout"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie waits for its (gone) parent's reaper: it runs no more


# ---------------------------------------------------------------- callable and entry points


def test_callable_hook_calls_the_target() -> None:
    specs = build_hooks(
        [
            {"type": "callable", "target": "tests.unit.hooks_target:on_drift"},
            {"type": "callable", "target": "tests.unit.hooks_target:trainer.submit", "cooldown_s": 0},
        ]
    )
    assert specs[0].hook.name == "callable:tests.unit.hooks_target:on_drift"
    with HookDispatcher(specs) as d:
        d.observe(event("alert"))
    received = hooks_target.RECEIVED
    assert event("alert") in received and ("trainer", event("alert")) in received


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, **names: str) -> None:
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group="mlrt.hooks") for n, v in names.items()]

    def entry_points(**params: Any) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == params.get("group")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_point_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, slack="tests.unit.hooks_target:factory")
    (spec,) = build_hooks([{"type": "slack", "channel": "#ml", "on": ["warn", "alert"], "cooldown_s": 60}])
    assert spec.on == {"warn", "alert"} and spec.cooldown_s == 60
    assert spec.hook.name == "plugin:#ml"
    assert spec.hook.options == {"channel": "#ml"}  # type: ignore[attr-defined]
    with HookDispatcher([spec]) as d:
        d.observe(event("warn"))
    assert hooks_target.RECEIVED == [("plugin:#ml", event("warn"))]


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"type": "slack"}, r"#1 \(type 'slack'\): factory 'tests.unit.hooks_target:factory' failed.*chan"),
        ({"type": "weird"}, r"#1 \(type 'weird'\): cannot load entry point.*ModuleNotFoundError"),
        ({"type": "odd"}, r"#1 \(type 'odd'\): factory .* must return a Hook"),
        ({"type": "pager"}, r"#1 \(type 'pager'\): unknown hook type; known types: callable, command, odd,"),
    ],
)
def test_entry_point_errors(monkeypatch: pytest.MonkeyPatch, table: dict[str, Any], match: str) -> None:
    _fake_entry_points(
        monkeypatch,
        slack="tests.unit.hooks_target:factory",
        weird="tests.unit.no_such_module:factory",
        odd="tests.unit.hooks_target:bad_factory",
    )
    with pytest.raises(ConfigError, match=match):
        build_hooks([table])


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"type": "nope"}, r"#2 \(type 'nope'\): unknown hook type"),
        ({"url": "http://x"}, r"#2 \(type None\): missing required option 'type'"),
        ({"type": "webhook"}, r"#2 \(type 'webhook'\): missing required option 'url'"),
        ({"type": "webhook", "url": "ftp://x/y"}, r"'url' must be an http"),
        ({"type": "webhook", "url": "http://x", "timeout_s": 0}, r"'timeout_s' must be > 0, got 0"),
        ({"type": "webhook", "url": "http://x", "timeout_s": "5"}, r"'timeout_s' must be a number, got '5'"),
        ({"type": "webhook", "url": "http://x", "retries": -1}, r"'retries' must be an integer >= 0, got -1"),
        ({"type": "webhook", "url": "http://x", "retries": True}, r"'retries' must be an integer"),
        ({"type": "webhook", "url": "http://x", "timeout": 5}, r"unknown option\(s\) 'timeout'"),
        ({"type": "webhook", "url": "http://x", "on": "alert"}, r"'on' must be a non-empty list"),
        ({"type": "webhook", "url": "http://x", "on": ["ok"]}, r"'on' may hold only"),
        ({"type": "webhook", "url": "http://x", "on": []}, r"'on' must be a non-empty list"),
        ({"type": "webhook", "url": "http://x", "cooldown_s": -1}, r"'cooldown_s' must be >= 0, got -1"),
        ({"type": "callable", "target": "tests.unit.no_such_module:f"}, r"cannot import module"),
        ({"type": "callable", "target": "tests.unit.hooks_target"}, r"target must look like"),
        ({"type": "callable", "target": "tests.unit.hooks_target:missing"}, r"'missing' not found"),
        ({"type": "callable", "target": "tests.unit.hooks_target:not_callable"}, r"is not callable"),
        ({"type": "callable", "target": "tests.unit.hooks_target:async_hook"}, r"async functions"),
        ({"type": "command"}, r"missing required option 'command'"),
        ({"type": "command", "command": "retrain.sh --fast"}, r"'command' must be a non-empty list"),
        ({"type": "command", "command": ["no-such-program-mlrt"]}, r"'no-such-program-mlrt' not found"),
    ],
)
def test_config_errors_name_the_hook(table: dict[str, Any], match: str) -> None:
    ok = {"type": "callable", "target": "tests.unit.hooks_target:on_drift"}
    with pytest.raises(ConfigError, match=match):
        build_hooks([ok, table])


def test_header_values_stay_out_of_errors() -> None:
    with pytest.raises(ConfigError, match="'Authorization' must be a string") as info:
        build_hooks([{"type": "webhook", "url": "http://x", "headers": {"Authorization": 12345678}}])
    assert "12345678" not in str(info.value)


def test_defaults() -> None:
    (spec,) = build_hooks([{"type": "webhook", "url": "http://127.0.0.1:9/x"}])
    assert spec.on == {"alert"} and spec.cooldown_s == 3600
    hook = spec.hook
    assert isinstance(hook, WebhookHook)
    assert (hook.timeout_s, hook.retries, hook.backoff_s) == (5.0, 3, 0.5)
