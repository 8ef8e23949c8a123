"""A real `mlrt serve` under concurrent load: every caller gets exactly its own rows back,
SIGTERM loses no accepted request, and a small queue bound sheds load with 503s.

Clients are threads with their own httpx.Client (keep-alive connections), sending V2
JSON and V2 binary requests. Input rows carry (client, sequence) markers, so a response
holding another caller's rows cannot pass. Nothing here asserts on timing.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench import models as bench_models
from tests.integration.serving import Server, start_server, stop_server, terminate
from tests.integration.slowmodels import COMPUTED_LOG_ENV, read_computed, reference

pytestmark = pytest.mark.integration

SLOWMODELS = "tests.integration.slowmodels"
GUARD_S = 60.0  # only so that a broken server fails the test instead of hanging it
GRACEFUL_S = 20.0

_NUMPY = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}
_V2 = {v: k for k, v in _NUMPY.items()}


# -- a minimal V2 client ------------------------------------------------------------------------


def encode(inputs: dict[str, np.ndarray], binary: bool) -> tuple[bytes, dict[str, str]]:
    """A V2 infer body: JSON data, or binary tensors with binary outputs requested."""
    specs = [{"name": n, "shape": list(a.shape), "datatype": _V2[a.dtype]} for n, a in inputs.items()]
    if not binary:
        for spec, a in zip(specs, inputs.values(), strict=True):
            spec["data"] = a.ravel().tolist()
        return json.dumps({"inputs": specs}).encode(), {"Content-Type": "application/json"}
    for spec, a in zip(specs, inputs.values(), strict=True):
        spec["parameters"] = {"binary_data_size": a.nbytes}
    header = json.dumps({"inputs": specs, "parameters": {"binary_data_output": True}}).encode()
    raw = b"".join(np.ascontiguousarray(a).tobytes() for a in inputs.values())
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def decode(resp: httpx.Response) -> tuple[dict[str, np.ndarray], bool]:
    """(outputs, whether any came back binary); the body must be consumed exactly."""
    body = resp.content
    given = resp.headers.get("inference-header-content-length")
    header_len = len(body) if given is None else int(given)
    doc = json.loads(body[:header_len])
    out, offset, binary = {}, header_len, False
    for o in doc["outputs"]:
        dtype = _NUMPY[o["datatype"]]
        size = o.get("parameters", {}).get("binary_data_size")
        if size is None:
            arr = np.array(o["data"], dtype)
        else:
            binary = True
            arr = np.frombuffer(body[offset : offset + size], dtype)
            offset += size
        out[o["name"]] = arr.reshape(o["shape"])
    assert offset == len(body), f"{len(body) - offset} unexplained bytes after the outputs"
    return out, binary


def post(http: httpx.Client, model: str, inputs: dict[str, np.ndarray], binary: bool) -> httpx.Response:
    body, headers = encode(inputs, binary)
    return http.post(f"/v2/models/{model}/infer", content=body, headers=headers)


def double_inputs(client: int, seq: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rows for slowmodels: [client, seq, row, noise]."""
    x = np.empty((n, 4), np.float32)
    x[:, 0], x[:, 1], x[:, 2] = client, seq, np.arange(n)
    x[:, 3] = rng.integers(-1000, 1000, n)
    return {"x": x}


def check_response(
    resp: httpx.Response, inputs: dict[str, np.ndarray], binary: bool, want: dict[str, np.ndarray]
) -> str | None:
    """None if `resp` is a 200 holding exactly `want`; else what is wrong."""
    if resp.status_code != 200:
        return f"status {resp.status_code}: {resp.text[:200]}"
    try:
        got, got_binary = decode(resp)
    except Exception as exc:  # a malformed or truncated body
        return f"undecodable response ({exc!r})"
    if got_binary != binary:
        return f"asked for binary={binary}, got binary={got_binary}"
    if set(got) != set(want):
        return f"outputs {sorted(got)}, expected {sorted(want)}"
    for name, arr in want.items():
        if got[name].dtype != arr.dtype or not np.array_equal(got[name], arr):
            return f"output {name!r} is not this caller's: got {got[name].tolist()[:4]}..."
    return None


def stop(server: Server) -> None:
    """Cleanup after a failed test: SIGTERM, then kill."""
    if server.process.poll() is None:
        try:
            terminate(server)
        except BaseException:
            server.process.kill()
            server.process.wait()


def run_clients(n: int, client: Callable[[int], Any]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(client, cid) for cid in range(1, n + 1)]
        return [f.result(timeout=GUARD_S) for f in futures]


# -- every caller gets its own rows -------------------------------------------------------------


def test_concurrent_callers_each_get_exactly_their_own_rows(tmp_path: Path) -> None:
    import onnxruntime as ort

    two_io_path = bench_models.two_io(tmp_path / "two_io.onnx")
    # max-batch-size 16 with requests of up to 40 rows: big requests are split as well.
    server = start_server(
        [f"two_io={two_io_path}", f"brief={SLOWMODELS}:BriefDouble"], tmp_path, ["--max-batch-size", "16"]
    )
    session = ort.InferenceSession(str(two_io_path), providers=["CPUExecutionProvider"])
    lock = threading.Lock()

    def expected(model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model run alone on exactly this caller's rows."""
        if model == "brief":
            return {"y": reference(inputs["x"])}
        with lock:
            total, twice = session.run(["sum", "twice"], inputs)
        return {"sum": total, "twice": twice}

    def client(cid: int) -> list[str]:
        rng = np.random.default_rng(cid)
        problems = []
        with httpx.Client(base_url=server.url, timeout=GUARD_S) as http:
            for seq in range(1, 31):
                n, binary = int(rng.integers(1, 41)), bool(rng.integers(2))
                if rng.integers(2):
                    model, inputs = "brief", double_inputs(cid, seq, n, rng)
                else:
                    x = np.ascontiguousarray(double_inputs(cid, seq, n, rng)["x"][:, :3])
                    model = "two_io"
                    inputs = {"x": x, "n": rng.integers(0, 1000, (n, 1), dtype=np.int64)}
                resp = post(http, model, inputs, binary)
                problem = check_response(resp, inputs, binary, expected(model, inputs))
                if problem:
                    problems.append(f"client {cid} request {seq} ({model}, {n} rows): {problem}")
        return problems

    try:
        problems = [p for ps in run_clients(32, client) for p in ps]
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    except BaseException:
        stop(server)
        raise
    stop_server(server)
    assert not problems, f"{len(problems)} of 960 responses were wrong, e.g.:\n" + "\n".join(problems[:10])


# -- SIGTERM under load -------------------------------------------------------------------------


@dataclass
class Outcome:
    client: int
    seq: int
    sent: float
    answered: float
    status: int | None = None
    problem: str | None = None  # for a 200: what was wrong with it
    retry_after: str | None = None
    error: Exception | None = None


def _never_answered(exc: Exception) -> bool:
    """The connection failed before any byte of a response: the request was not accepted.

    (A response cut short would be "peer closed connection without sending complete
    message body" and does not count.)
    """
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError):
        return True
    return isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)


def test_sigterm_under_load_loses_no_accepted_request(tmp_path: Path) -> None:
    computed_log = tmp_path / "computed.txt"
    server = start_server(
        [f"slow={SLOWMODELS}:SlowDouble"],
        tmp_path,
        ["--graceful-timeout", str(GRACEFUL_S)],
        env={COMPUTED_LOG_ENV: str(computed_log)},
    )
    outcomes: list[Outcome] = []
    signalled = threading.Event()
    signal_at: list[float] = []

    def client(cid: int) -> None:
        rng = np.random.default_rng(cid)
        with httpx.Client(base_url=server.url, timeout=GUARD_S) as http:
            for seq in range(1, 100_000):
                inputs = double_inputs(cid, seq, int(rng.integers(1, 9)), rng)
                sent = time.monotonic()
                try:
                    resp = post(http, "slow", inputs, binary=bool(seq % 2))
                except httpx.TransportError as exc:
                    outcomes.append(Outcome(cid, seq, sent, time.monotonic(), error=exc))
                    return  # the server is gone (or the test will fail on this)
                outcome = Outcome(cid, seq, sent, time.monotonic(), status=resp.status_code)
                if resp.status_code == 200:
                    want = {"y": reference(inputs["x"])}
                    outcome.problem = check_response(resp, inputs, bool(seq % 2), want)
                else:
                    outcome.retry_after = resp.headers.get("retry-after")
                    outcome.problem = resp.text[:200]
                outcomes.append(outcome)
                if signalled.is_set() and resp.status_code != 200:
                    return

    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(client, cid) for cid in range(1, 17)]
            deadline = time.monotonic() + GUARD_S
            while sum(o.status == 200 for o in outcomes) < 200:
                assert time.monotonic() < deadline, "the server never got going"
                assert not any(f.done() for f in futures), [f.result() for f in futures if f.done()]
                time.sleep(0.01)
            signal_at.append(time.monotonic())
            signalled.set()
            server.process.send_signal(signal.SIGTERM)
            try:
                code = server.process.wait(timeout=GRACEFUL_S + 15)
            except subprocess.TimeoutExpired:
                pytest.fail(f"mlrt serve did not exit within the graceful timeout:\n{server.stderr()}")
            for f in futures:
                f.result(timeout=GUARD_S)
    except BaseException:
        stop(server)
        raise
    t_signal = signal_at[0]
    stderr = server.stderr()
    assert code == 0, f"exit status {code} after SIGTERM under load; stderr:\n{stderr}"

    bad = []
    for o in outcomes:
        where = f"client {o.client} request {o.seq} (sent {o.sent - t_signal:+.3f} s from SIGTERM)"
        if o.error is not None:
            if not _never_answered(o.error):
                bad.append(f"{where}: {o.error!r}")
            elif isinstance(o.error, httpx.ConnectError) and o.sent < t_signal:
                bad.append(f"{where}: refused before SIGTERM: {o.error!r}")
        elif o.status == 200:
            if o.problem:
                bad.append(f"{where}: wrong 200: {o.problem}")
        elif o.status == 503 and o.sent >= t_signal:
            if not (o.retry_after and '"error"' in (o.problem or "")):
                bad.append(f"{where}: unclean 503 (Retry-After {o.retry_after!r}): {o.problem}")
        else:
            bad.append(f"{where}: status {o.status}: {o.problem}")
    assert not bad, f"{len(bad)} bad outcomes of {len(outcomes)}:\n" + "\n".join(bad[:10])

    # Every request the model computed was accepted, so its caller must have got its 200.
    answered = {(o.client, o.seq) for o in outcomes if o.status == 200}
    lost = read_computed(computed_log) - answered
    assert not lost, f"{len(lost)} computed requests never reached their caller, e.g. {sorted(lost)[:5]}"
    # Work in flight at SIGTERM was finished, not dropped.
    finished_after = [o for o in outcomes if o.status == 200 and o.sent < t_signal < o.answered]
    assert finished_after, "no request in flight at SIGTERM got its response"
    assert "Traceback" not in stderr, stderr


# -- overload -----------------------------------------------------------------------------------


def test_small_queue_under_high_concurrency_answers_200_or_503(tmp_path: Path) -> None:
    server = start_server([f"slow={SLOWMODELS}:SlowDouble"], tmp_path, ["--max-queue-rows", "4"])

    def client(cid: int) -> list[tuple[int, str | None, str | None]]:
        rng = np.random.default_rng(cid)
        seen = []
        with httpx.Client(base_url=server.url, timeout=GUARD_S) as http:
            for seq in range(1, 11):
                # 3 rows each: two queued requests already pass the bound of 4 rows.
                inputs = double_inputs(cid, seq, 3, rng)
                binary = bool(rng.integers(2))
                resp = post(http, "slow", inputs, binary)
                if resp.status_code == 200:
                    problem = check_response(resp, inputs, binary, {"y": reference(inputs["x"])})
                    seen.append((200, problem, None))
                else:
                    body = resp.text
                    problem = None if '"error"' in body else f"no error in body {body[:200]!r}"
                    seen.append((resp.status_code, problem, resp.headers.get("retry-after")))
        return seen

    try:
        seen = [s for per_client in run_clients(48, client) for s in per_client]
        ready = httpx.get(f"{server.url}/v2/health/ready").status_code
        x = double_inputs(999, 1, 2, np.random.default_rng(0))
        with httpx.Client(base_url=server.url, timeout=GUARD_S) as http:
            after = check_response(post(http, "slow", x, True), x, True, {"y": reference(x["x"])})
    except BaseException:
        stop(server)
        raise
    stop_server(server)
    statuses = {status for status, _, _ in seen}
    assert statuses <= {200, 503}, f"statuses {sorted(statuses)}"
    assert {200, 503} <= statuses, f"statuses {sorted(statuses)}: the queue bound was never reached"
    wrong = [problem for _, problem, _ in seen if problem]
    assert not wrong, wrong[:5]
    retry_after = [r for status, _, r in seen if status == 503]
    assert all(r is not None and r.isdigit() and int(r) >= 1 for r in retry_after), set(retry_after)
    assert ready == 200
    assert after is None, after
