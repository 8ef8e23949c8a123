"""`mlrt serve --workers 2`, a real supervisor and two real workers on 127.0.0.1.

Connections are spread over both workers by the kernel; every figure the server reports
must still be the whole server's: request counts equal to what was sent, drift equal to
one process's drift of all the rows, a hook that fires once, a change made through one
worker made on both. A killed worker is replaced without the other losing anything, and
SIGTERM drains both.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.monitor.drift import offline_report
from runtime.monitor.profile import Profile
from tests.integration.serving import PYMODELS, REPO_ROOT, start_server, stop_server, terminate, wait_for
from tests.integration.slowmodels import COMPUTED_LOG_ENV, read_computed, reference

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "runtime" / "demo"
SLOW = "tests.integration.slowmodels"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # A fresh connection each time: any worker may answer, and each must answer for both.
    r = httpx.get(f"{url}/metrics", headers={"connection": "close"}, timeout=10)
    assert r.status_code == 200
    return _samples(r.text)


def _per_worker(samples: dict, name: str) -> dict[str, float]:
    return {dict(k[1])["worker"]: v for k, v in samples.items() if k[0] == name}


def _infer_body(x: np.ndarray, name: str) -> dict:
    return {
        "inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }


def _spread(url: str, model: str, batches: list[np.ndarray], name: str, threads: int = 4) -> list[int]:
    """Each batch on a connection of its own, several at once: both workers get some."""

    def one(x: np.ndarray) -> int:
        r = httpx.post(
            f"{url}/v2/models/{model}/infer",
            json=_infer_body(x, name),
            headers={"connection": "close"},
            timeout=30,
        )
        return r.status_code

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, batches))


def test_two_workers_count_every_request_and_judge_drift_on_all_of_them(tmp_path: Path) -> None:
    model, profile_path = DEMO / "model.onnx", DEMO / "profile.json"
    srv = start_server([f"demo={model}"], tmp_path, ["--workers", "2", "--profile", f"demo={profile_path}"])
    try:
        with np.load(DEMO / "data.npz") as d:
            X = d["features"].astype(np.float32)
        rng = np.random.default_rng(7)
        rows = X[rng.integers(0, len(X), 600)]
        rows[:, 0] *= 1.3  # one feature shifted, so the report has something to say
        batches = [rows[i : i + 3] for i in range(0, len(rows), 3)]
        codes = _spread(srv.url, "demo", batches, "features")
        assert codes == [200] * len(batches)

        for _ in range(6):  # whichever worker answers, the totals are the server's
            m = _metrics(srv.url)
            assert m[("mlrt_requests_total", (("code", "200"), ("model", "demo"), ("version", "1")))] == len(
                batches
            )
            per_worker = _per_worker(m, "mlrt_worker_requests_total")
            assert set(per_worker) == {"0", "1"} and sum(per_worker.values()) == len(batches)
            assert m[("mlrt_workers_answering", ())] == 2
        assert min(per_worker.values()) > 0, f"one worker got no connection: {per_worker}"

        # The drift report of any worker is one process's report of all 600 rows.
        profile = Profile.load(profile_path)
        want = offline_report(profile, {f.name: rows[:, j] for j, f in enumerate(profile.features)})
        for _ in range(4):
            got = httpx.get(f"{srv.url}/v2/models/demo/drift", headers={"connection": "close"}).json()
            assert got["window"]["rows"] == 600
            assert got["status"] == want["status"]
            for g, w in zip(got["features"], want["features"], strict=True):
                assert g["name"] == w["name"] and g["status"] == w["status"]
                assert g["psi"] == pytest.approx(w["psi"], abs=1e-9)
        # The dashboard too, whichever worker answers its poll.
        for _ in range(4):
            doc = httpx.get(f"{srv.url}/dashboard.json", headers={"connection": "close"}).json()
            (model,) = doc["models"]
            assert model["requests"] == {"200": len(batches)}
            assert sum(model["latency"]["counts"]) == len(batches)
            (drift,) = doc["drift"]
            assert drift["window"]["rows"] == 600 and drift["status"] == want["status"]
        # ... and the bin counters of /metrics are the counts of all of them.
        m = _metrics(srv.url)
        first = profile.features[0].name
        bins = sum(
            v for k, v in m.items() if k[0] == "mlrt_feature_bin_total" and dict(k[1])["feature"] == first
        )
        assert bins == 600
    finally:
        stop_server(srv)


def test_a_killed_worker_is_replaced_and_the_other_loses_nothing(tmp_path: Path, model_dir: Path) -> None:
    srv = start_server([f"mlp={model_dir / 'mlp.onnx'}"], tmp_path, ["--workers", "2"])
    try:
        wait_for(lambda: len(_children(srv.process.pid)) == 2, 30, "two workers")
        workers = _children(srv.process.pid)
        x = np.ones((1, 20), np.float32)
        stop = threading.Event()
        answers: list[list[int | str]] = [[] for _ in range(6)]

        def client(k: int) -> None:
            # One keep-alive connection per client, reopened if its worker dies.
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                while not stop.is_set():
                    try:
                        answers[k].append(
                            c.post("/v2/models/mlp/infer", json=_infer_body(x, "input")).status_code
                        )
                    except httpx.TransportError as exc:
                        answers[k].append(type(exc).__name__)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        wait_for(lambda: all(len(a) >= 20 for a in answers), 30, "traffic on every connection")
        before = _per_worker(_metrics(srv.url), "mlrt_worker_requests_total")
        os.kill(workers[1], signal.SIGKILL)

        def replaced() -> bool:
            now = _children(srv.process.pid)  # read once: the dead one may be reaped meanwhile
            return len(now) == 2 and workers[1] not in now

        wait_for(replaced, 30, "a new worker in the dead one's place")
        marks = [len(a) for a in answers]
        wait_for(
            lambda: all(len(a) >= m + 20 for a, m in zip(answers, marks, strict=True)), 30, "more traffic"
        )
        stop.set()
        for t in threads:
            t.join(30)

        # No request was refused or failed by the server; a connection to the killed worker
        # saw at most the one request in flight on it fail, then reconnected.
        for a in answers:
            assert all(code == 200 or isinstance(code, str) for code in a), a
            assert sum(isinstance(code, str) for code in a) <= 1, a
        answering = ("mlrt_workers_answering", ())
        wait_for(lambda: _metrics(srv.url)[answering] == 2, 30, "the new worker serving")
        m = _metrics(srv.url)
        restarts = _per_worker(m, "mlrt_worker_restarts_total")
        assert sorted(restarts.values()) == [0, 1], (restarts, srv.stderr())  # the killed slot, once
        after = _per_worker(m, "mlrt_worker_requests_total")
        # The survivor's count only grew: nothing it had answered was lost.
        survivor = next(w for w, n in restarts.items() if n == 0)
        assert after[survivor] > before[survivor]
        ok = sum(code == 200 for a in answers for code in a)
        assert after["0"] + after["1"] <= ok
        assert "died (signal 9)" in srv.stderr()
    finally:
        stop_server(srv)


def test_sigterm_drains_both_workers(tmp_path: Path) -> None:
    uds = tmp_path / "mlrt.sock"
    computed = tmp_path / "computed.log"
    srv = start_server(
        [f"slow={SLOW}:SlowDouble"], tmp_path, ["--workers", "2", "--uds", str(uds), "--max-batch-size", "1"],
        env={COMPUTED_LOG_ENV: str(computed)},
    )  # fmt: skip
    pids = _children(srv.process.pid)
    assert len(pids) == 2 and uds.exists()

    def one(seq: int) -> int:
        x = np.array([[1, seq, 0, 0]], np.float32)  # the model logs (client 1, seq) when it runs it
        r = httpx.post(
            f"{srv.url}/v2/models/slow/infer",
            json=_infer_body(x, "x"),
            headers={"connection": "close"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == reference(x).ravel().tolist()
        return seq

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one, seq) for seq in range(1, 65)]
        # SIGTERM with requests under way on both workers, more queued and connecting.
        wait_for(lambda: sum(f.done() for f in futures) >= 4, 30, "requests under way")
        code = terminate(srv)
        answered = {f.result() for f in futures if not f.exception()}
        failed = [f.exception() for f in futures if f.exception()]
    assert code == 0, srv.stderr()
    # Every request the model ran got its answer; the others were refused or closed before
    # the server read them (a connection made as the listeners closed), never half-answered.
    lost = {seq for _, seq in read_computed(computed)} - answered
    assert not lost, f"requests run but never answered: {sorted(lost)}"
    assert all(isinstance(e, httpx.TransportError) for e in failed), failed
    assert len(answered) >= 4
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not uds.exists()  # the supervisor's socket file goes with it
    assert "Traceback" not in srv.stderr()


def test_after_sigterm_new_connections_are_refused_not_taken_and_reset(tmp_path: Path) -> None:
    # Each worker inherited the other's listening socket at the fork and held it: after
    # SIGTERM the kernel still took connections for a worker that had closed its own, and
    # reset them when the last worker exited. One server refuses them at once.
    import time

    srv = start_server([f"slow={PYMODELS}:sleepy"], tmp_path, ["--workers", "2"])
    host, port = srv.host_port.split(":")
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
    ).encode()
    busy = socket.create_connection((host, int(port)))  # a second's call keeps one worker draining
    head = b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    busy.sendall(head + body)
    time.sleep(0.3)
    srv.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    taken = []
    for _ in range(8):  # SO_REUSEPORT hashes each new connection to one of the two sockets
        try:
            with socket.create_connection((host, int(port)), timeout=2) as c:
                taken.append(c.getsockname())
        except ConnectionRefusedError:
            pass
    assert not taken, f"{len(taken)} connections taken after SIGTERM, to be reset at exit"
    busy.settimeout(10)
    assert busy.recv(64).startswith(b"HTTP/1.1 200"), "the call under way is answered"
    busy.close()
    assert srv.process.wait(timeout=30) == 0, srv.stderr()


def test_a_change_through_one_worker_is_made_on_both(tmp_path: Path, model_dir: Path) -> None:
    srv = start_server(
        [f"mlp={model_dir / 'mlp.onnx'}", f"iris={PYMODELS}:iris"], tmp_path, ["--workers", "2"]
    )

    def ready_everywhere(model: str) -> set[int]:
        # Twelve fresh connections: both workers answer some of them.
        return {
            httpx.get(f"{srv.url}/v2/models/{model}/ready", headers={"connection": "close"}).status_code
            for _ in range(12)
        }

    try:
        assert ready_everywhere("mlp") == {200}
        assert httpx.post(f"{srv.url}/v2/repository/models/mlp/unload").status_code == 200
        assert ready_everywhere("mlp") == {404}
        assert ready_everywhere("iris") == {200}
        r = httpx.post(f"{srv.url}/v2/repository/models/mlp/load")
        assert r.status_code == 200, r.text
        assert ready_everywhere("mlp") == {200}
        m = _metrics(srv.url)
        assert m[("mlrt_model_reloads_total", (("model", "mlp"), ("result", "swapped")))] == 2
    finally:
        stop_server(srv)


RECORDER = "import sys, pathlib; p = pathlib.Path(sys.argv[1]); p.open('a').write(sys.stdin.read() + '\\n')"


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def test_a_drift_hook_fires_once_for_the_server_not_once_per_worker(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    cfg = tmp_path / "mlrt.toml"
    hook = json.dumps([sys.executable, "-c", RECORDER, str(events)])
    cfg.write_text(
        "[monitor]\nwindow_s = 60\nslices = 6\ntick_s = 0.2\nmin_rows = 50\n\n"
        f'[[hooks]]\ntype = "command"\ncommand = {hook}\non = ["alert"]\ncooldown_s = 0\n'
    )
    model, profile = DEMO / "model.onnx", DEMO / "profile.json"
    # "probe" proves the leader judged "demo" again after its second drifting batch (see
    # test_hooks_server.py): hooks of one tick are submitted in the order of its models.
    srv = start_server(
        [f"demo={model}", f"probe={model}"], tmp_path,
        ["--workers", "2", "--profile", f"demo={profile}", "--profile", f"probe={profile}",
         "--config", str(cfg)],
    )  # fmt: skip
    try:
        with np.load(DEMO / "data.npz") as d:
            X, y = d["features"].astype(np.float32), d["labels"]
        malignant = X[np.resize(np.flatnonzero(y == 0), 400)]
        batches = [malignant[i : i + 8] for i in range(0, 400, 8)]
        assert set(_spread(srv.url, "demo", batches, "features")) == {200}
        wait_for(lambda: len(_events(events)) >= 1, 30, "the hook's first event")
        assert set(_spread(srv.url, "demo", batches, "features")) == {200}  # the same episode
        assert set(_spread(srv.url, "probe", batches, "features")) == {200}
        wait_for(lambda: any(e["model"] == "probe" for e in _events(events)), 30, "probe's event")
        m = _metrics(srv.url)
        assert min(_per_worker(m, "mlrt_worker_requests_total").values()) > 0
    finally:
        stop_server(srv)  # the leader's dispatcher waits for every firing submitted
    lines = _events(events)
    assert sorted(e["model"] for e in lines) == ["demo", "probe"], lines
    first = next(e for e in lines if e["model"] == "demo")
    assert first["status"] == "alert" and first["rows"] >= 50


def test_workers_refuse_what_needs_one_process(tmp_path: Path, model_dir: Path) -> None:
    from runtime.config import build_server_config
    from runtime.errors import ConfigError

    cfg = tmp_path / "mlrt.toml"
    cfg.write_text(
        f'[[models]]\nname = "mlp"\nsource = "{model_dir / "mlp.onnx"}"\nfeedback = {{ window = 100 }}\n'
    )
    with pytest.raises(ConfigError, match="feedback needs one worker per server"):
        build_server_config(config_file=str(cfg), overrides={"workers": "2"}, environ={})
    assert build_server_config(config_file=str(cfg), overrides={"workers": "1"}, environ={}).workers == 1
    with pytest.raises(ConfigError, match="workers must be a number or 'auto'"):
        build_server_config(models=["x.onnx"], overrides={"workers": "many"}, environ={})
    auto = build_server_config(models=["x.onnx"], environ={"MLRT_WORKERS": "auto"})
    assert auto.workers == len(os.sched_getaffinity(0))


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    import subprocess

    from tests.integration.serving import free_port

    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "serve", f"bad={PYMODELS}:no_such_model", "--workers", "2",
         "--port", str(port)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "failed to start" in proc.stderr and "no_such_model" in proc.stderr
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))


def test_sigterm_before_every_worker_serves_still_stops_the_server(tmp_path: Path) -> None:
    """A worker that is up answers requests while another still loads, so a client can be
    done and stop the server before the supervisor has seen every worker serving."""
    import subprocess
    import time

    from tests.integration.serving import free_port

    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", f"slow={PYMODELS}:slow_to_load", "--workers", "2",
         "--port", str(free_port())],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    try:
        wait_for(lambda: len(_children(proc.pid)) == 2, 30, "two workers forked")
        proc.send_signal(signal.SIGTERM)  # both are in their three seconds of loading
        began = time.monotonic()
        proc.wait(timeout=20)
        assert time.monotonic() - began < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail(f"the supervisor ignored SIGTERM while its workers started: {proc.stderr.read()}")
        proc.stderr.close()


def test_grpc_port_is_shared_by_the_workers(tmp_path: Path) -> None:
    tg = pytest.importorskip("tritonclient.grpc")
    from tests.integration.serving import free_port

    grpc_port = free_port()
    srv = start_server(
        [f"demo={DEMO / 'model.onnx'}"], tmp_path, ["--workers", "2", "--grpc-port", str(grpc_port)]
    )
    try:
        with np.load(DEMO / "data.npz") as d:
            x = d["features"][:3].astype(np.float32)
        # A connection each, which the kernel spreads over both workers. Channels share
        # connections through gRPC's global subchannel pool unless told not to.
        for _ in range(30):
            client = tg.InferenceServerClient(
                f"127.0.0.1:{grpc_port}", channel_args=[("grpc.use_local_subchannel_pool", 1)]
            )
            inp = tg.InferInput("features", x.shape, "FP32")
            inp.set_data_from_numpy(x)
            assert client.infer("demo", [inp]).as_numpy("label").shape == (3,)
            client.close()
        m = _metrics(srv.url)
        assert m[("mlrt_requests_total", (("code", "200"), ("model", "demo"), ("version", "1")))] == 30
        assert min(_per_worker(m, "mlrt_worker_requests_total").values()) > 0
    finally:
        stop_server(srv)


def test_the_leader_follows_the_alias_and_every_worker_swaps(tmp_path: Path, model_dir: Path) -> None:
    from runtime.registry import FilesystemRegistry

    reg = FilesystemRegistry(tmp_path / "registry")
    v1 = reg.register(model_dir / "mlp.onnx", "fraud")
    v2 = reg.register(model_dir / "mlp.onnx", "fraud")
    reg.set_alias("fraud", "production", v1)
    srv = start_server(
        ["fraud@production"],
        tmp_path,
        ["--workers", "2", "--registry", str(reg.root), "--registry-poll", "0.1", "--log-level", "info"],
    )

    def versions() -> set[str]:
        # Fresh connections: both workers answer some of them.
        return {
            httpx.get(f"{srv.url}/v2/models/fraud", headers={"connection": "close"}).json()["versions"][0]
            for _ in range(12)
        }

    try:
        assert versions() == {v1}
        reg.set_alias("fraud", "production", v2)
        wait_for(lambda: versions() == {v2}, 30, "both workers on the new version")
        m = _metrics(srv.url)
        # One swap per worker, decided once: only the leader polls the registry.
        assert m[("mlrt_model_reloads_total", (("model", "fraud"), ("result", "swapped")))] == 2
        log = srv.stderr()
        assert log.count("alias moved to version") == 1 and "[w0]: model 'fraud': alias moved" in log, log
    finally:
        stop_server(srv)


def test_a_restarted_worker_serves_what_the_others_serve_not_the_alias_s_bad_version(
    tmp_path: Path, model_dir: Path
) -> None:
    # The alias moved to a version that does not load: the workers refused it and kept v1. A
    # worker restarted after a crash loaded the alias' version, failed, and was restarted
    # again and again while the kernel queued its share of new connections for no one.
    from runtime.registry import FilesystemRegistry

    reg = FilesystemRegistry(tmp_path / "registry")
    v1 = reg.register(model_dir / "mlp.onnx", "fraud")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes((model_dir / "mlp.onnx").read_bytes()[:200])
    v2 = reg.register(broken, "fraud")
    reg.set_alias("fraud", "production", v1)
    srv = start_server(
        ["fraud@production"],
        tmp_path,
        ["--workers", "2", "--registry", str(reg.root), "--registry-poll", "0.1", "--log-level", "info"],
    )
    try:
        # Killed before the supervisor saw both serving, a worker "failed to start".
        wait_for(lambda: "2 workers serving" in srv.stderr(), 30, "both workers serving")
        reg.set_alias("fraud", "production", v2)
        wait_for(lambda: "is not tried again until the alias moves" in srv.stderr(), 30, "v2 refused")
        os.kill(_children(srv.process.pid)[1], signal.SIGKILL)
        wait_for(lambda: "worker 1: caught up" in srv.stderr(), 30, "the restarted worker serving")
        for _ in range(12):  # fresh connections reach both workers
            r = httpx.get(f"{srv.url}/v2/models/fraud", headers={"connection": "close"}, timeout=10)
            assert r.status_code == 200 and r.json()["versions"] == [v1]
        restarts = _per_worker(_metrics(srv.url), "mlrt_worker_restarts_total")
        assert restarts == {"0": 0, "1": 1}, restarts
    finally:
        stop_server(srv)


def test_a_worker_that_cannot_start_again_leaves_its_connections_to_the_others(
    tmp_path: Path, model_dir: Path
) -> None:
    # The model file went away after the start: worker 1, killed, failed to load at every
    # restart, and SO_REUSEPORT kept queueing its share of new connections for it (they hung
    # while /ready, answered by worker 0, said 200). Its socket now closes until it serves.
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(model_dir / "mlp.onnx", model)
    srv = start_server([f"mlp={model}"], tmp_path, ["--workers", "2", "--log-level", "info"])
    try:
        answering = ("mlrt_workers_answering", ())
        wait_for(lambda: "2 workers serving" in srv.stderr(), 30, "both workers serving")
        model.rename(tmp_path / "away.onnx")
        os.kill(_children(srv.process.pid)[1], signal.SIGKILL)
        wait_for(lambda: "worker 1 failed before it served" in srv.stderr(), 30, "a failed restart")
        for _ in range(16):  # fresh connections: before, about half waited for worker 1
            r = httpx.get(f"{srv.url}/v2/health/ready", headers={"connection": "close"}, timeout=5)
            assert r.status_code == 200
        (tmp_path / "away.onnx").rename(model)
        wait_for(lambda: "worker 1: caught up" in srv.stderr(), 60, "worker 1 serving again")
        wait_for(lambda: _metrics(srv.url).get(answering) == 2, 30, "both workers answering")
    finally:
        stop_server(srv)


def test_drift_counts_survive_a_restart_worker_by_worker(tmp_path: Path) -> None:
    state = tmp_path / "state"
    args = ["--workers", "2", "--profile", f"demo={DEMO / 'profile.json'}", "--state-dir", str(state)]
    srv = start_server([f"demo={DEMO / 'model.onnx'}"], tmp_path, args)
    with np.load(DEMO / "data.npz") as d:
        X = d["features"].astype(np.float32)
    batches = [X[i : i + 4] for i in range(0, 400, 4)]
    try:
        assert set(_spread(srv.url, "demo", batches, "features")) == {200}
    finally:
        stop_server(srv)
    # Each worker saved its own counts; the server's are their sum.
    assert sorted(p.name for p in state.glob("*.npz")) == ["demo@1.npz", "demo@1.w1.npz"]
    srv = start_server([f"demo={DEMO / 'model.onnx'}"], tmp_path, args)
    try:
        got = httpx.get(f"{srv.url}/v2/models/demo/drift").json()
        assert got["window"]["rows"] == 400
        m = _metrics(srv.url)
        assert m[("mlrt_window_rows", (("model", "demo"), ("version", "1")))] == 400
    finally:
        stop_server(srv)


def test_endpoint_weights_set_through_one_worker_hold_on_both(tmp_path: Path, model_dir: Path) -> None:
    cfg = tmp_path / "mlrt.toml"
    mlp = model_dir / "mlp.onnx"
    cfg.write_text(
        f'[[models]]\nname = "a"\nsource = "{mlp}"\n\n[[models]]\nname = "b"\nsource = "{mlp}"\n\n'
        '[[endpoints]]\nname = "ab"\n'
        'variants = [{ model = "a", weight = 90 }, { model = "b", weight = 10 }]\n'
    )
    srv = start_server([], tmp_path, ["--workers", "2", "--config", str(cfg), "--admin-token", "s3cret"])

    def weights() -> set[tuple[int, ...]]:
        docs = [
            httpx.get(f"{srv.url}/v2/endpoints/ab", headers={"connection": "close"}).json() for _ in range(12)
        ]
        return {tuple(v["weight"] for v in d["variants"]) for d in docs}

    try:
        assert weights() == {(90, 10)}
        r = httpx.put(
            f"{srv.url}/v2/endpoints/ab", json={"weights": {"a": 20, "b": 80}},
            headers={"authorization": "Bearer s3cret"},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert weights() == {(20, 80)}
        # A worker that crashes comes back with the weights the server has now, not the
        # configuration's: it catches up from the other worker before it serves.
        before = _children(srv.process.pid)
        os.kill(before[0], signal.SIGKILL)
        wait_for(lambda: before[0] not in _children(srv.process.pid), 30, "the dead worker reaped")
        answering = ("mlrt_workers_answering", ())
        wait_for(lambda: len(_children(srv.process.pid)) == 2 and _metrics(srv.url)[answering] == 2, 30,
                  "the new worker serving")  # fmt: skip
        assert weights() == {(20, 80)}
        # A peer's token is not an admin token: the private route answers no one else.
        assert httpx.get(f"{srv.url}/v2/_peer/snapshot", headers={"x-mlrt-peer": "guess"}).status_code == 404
        assert httpx.put(f"{srv.url}/v2/endpoints/ab", json={"weights": {"a": 1}}).status_code == 401
    finally:
        stop_server(srv)
