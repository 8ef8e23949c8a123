"""Endpoints routed to weighted variants (runtime/traffic), against a real server: the
weights hold, sticky keys keep their variant across calls and a restart, the response
names the variant, weights change at run time, and the counts reach /metrics."""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from tests.integration.serving import Server, start_server, stop_server

pytestmark = pytest.mark.integration

BODY = json.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.1] * 20}]}
).encode()


def config(tmp: Path, model: Path, weights: tuple[int, int], sticky: bool) -> Path:
    path = tmp / f"traffic-{weights[0]}-{weights[1]}-{sticky}.toml"
    lines = [
        "[server]",
        'admin_token = "s3cret"',
        "[[models]]",
        'name = "churn-v1"',
        f'source = "{model}"',
        "[[models]]",
        'name = "churn-v2"',
        f'source = "{model}"',
        "[[endpoints]]",
        'name = "churn"',
        "variants = ["
        f'{{ model = "churn-v1", weight = {weights[0]} }}, {{ model = "churn-v2", weight = {weights[1]} }}]',
    ]
    if sticky:
        lines.append('sticky = "header:x-user-id"')
        # The same variants again, keyed by a V2 request parameter instead of a header.
        lines += ["[[endpoints]]", 'name = "churn-p"', lines[-2], 'sticky = "parameter:user_id"']
    path.write_text("\n".join(lines) + "\n")
    return path


class Caller:
    """One keep-alive HTTP/1.1 connection (fast enough for tens of thousands of calls)."""

    def __init__(self, server: Server) -> None:
        host, port = server.host_port.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def infer(self, target: str = "churn", key: str | None = None) -> tuple[int, dict, dict[str, str]]:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["x-user-id"] = key
        self.conn.request("POST", f"/v2/models/{target}/infer", BODY, headers)
        r = self.conn.getresponse()
        body = json.loads(r.read())
        return r.status, body, {k.lower(): v for k, v in r.getheaders()}

    def variant(self, key: str | None = None) -> str:
        status, body, headers = self.infer(key=key)
        assert status == 200, body
        assert headers["mlrt-variant"] == f"{body['model_name']}/{body['model_version']}"
        return str(body["model_name"])


@pytest.fixture
def closing() -> Iterator[ExitStack]:
    """Connections opened by a test, closed when it ends."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def served(model_dir: Path, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    cfg = config(tmp_path, model_dir / "mlp.onnx", (90, 10), sticky=True)
    srv = start_server([], tmp_path, ["--config", str(cfg)])
    yield srv, cfg
    stop_server(srv)


def test_weights_hold_within_two_points(model_dir: Path, tmp_path: Path, closing: ExitStack) -> None:
    srv = start_server(
        [], tmp_path, ["--config", str(config(tmp_path, model_dir / "mlp.onnx", (90, 10), False))]
    )
    try:
        c = closing.enter_context(Caller(srv))
        counts = Counter(c.variant() for _ in range(20_000))
        assert abs(counts["churn-v2"] / 20_000 - 0.10) < 0.02, counts
        # The answer is the variant's own: the same model, the same outputs as calling it directly.
        _, direct, headers = c.infer("churn-v1")
        assert "mlrt-variant" not in headers  # called by name, not routed
        _, routed, _ = c.infer()
        np.testing.assert_allclose(routed["outputs"][0]["data"], direct["outputs"][0]["data"])
    finally:
        stop_server(srv)


def test_sticky_keys_keep_their_variant_across_calls_and_a_restart(served, tmp_path: Path, closing) -> None:
    srv, cfg = served
    keys = [f"user-{i}" for i in range(10_000)]
    c = closing.enter_context(Caller(srv))
    first = {k: c.variant(k) for k in keys}
    for _ in range(2):
        assert {k: c.variant(k) for k in keys} == first
    share = sum(v == "churn-v2" for v in first.values()) / len(keys)
    assert abs(share - 0.10) < 0.02
    stop_server(srv)
    again = start_server([], tmp_path, ["--config", str(cfg)])
    try:
        c = closing.enter_context(Caller(again))
        assert {k: c.variant(k) for k in keys} == first
    finally:
        stop_server(again)


def test_a_parameter_key_goes_where_the_same_header_key_goes(served, closing: ExitStack) -> None:
    srv, _ = served
    c = closing.enter_context(Caller(srv))
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.1] * 20}

    def by_parameter(value: object) -> tuple[int, dict]:
        body = json.dumps({"inputs": [tensor], "parameters": {"user_id": value}})
        c.conn.request("POST", "/v2/models/churn-p/infer", body, {"content-type": "application/json"})
        r = c.conn.getresponse()
        return r.status, json.loads(r.read())

    for i in range(2_000):
        status, body = by_parameter(f"user-{i}")
        assert status == 200, body
        assert body["model_name"] == c.variant(f"user-{i}")  # the same key, the same hash
    assert by_parameter(12345)[1]["model_name"] == c.variant("12345")
    status, body = by_parameter(1.5)
    assert status == 400 and "parameter 'user_id' is this endpoint's sticky key" in body["error"]
    status, body = by_parameter(None)  # no key: drawn by weight
    assert status == 200
    assert c.variant("user-1")  # still serving


def test_weights_change_at_run_time_and_move_few_keys(served, closing: ExitStack) -> None:
    srv, _ = served
    c = closing.enter_context(Caller(srv))
    keys = [f"user-{i}" for i in range(2_000)]
    before = {k: c.variant(k) for k in keys}

    def put(body: dict, token: str | None = "s3cret") -> tuple[int, dict]:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        c.conn.request("PUT", "/v2/endpoints/churn", json.dumps(body).encode(), headers)
        r = c.conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")

    assert put({"weights": {"churn-v2": 50}}, token=None)[0] == 401
    status, doc = put({"weights": {"churn-v1": 50, "churn-v2": 50}})
    assert status == 200 and [v["weight"] for v in doc["variants"]] == [50, 50]
    after = {k: c.variant(k) for k in keys}
    moved = [k for k in keys if after[k] != before[k]]
    # Only keys that now go to the grown variant move: none leaves churn-v2.
    assert all(before[k] == "churn-v1" and after[k] == "churn-v2" for k in moved)
    assert abs(sum(v == "churn-v2" for v in after.values()) / len(keys) - 0.5) < 0.04
    # Bad changes are refused with a message and change nothing.
    status, doc = put({"weights": {"churn-v3": 1}})
    assert status == 400 and "no variant(s) ['churn-v3']" in doc["error"]
    status, doc = put({"weights": {"churn-v1": 0, "churn-v2": 0}})
    assert status == 400 and "at least one variant" in doc["error"]
    for bad in (None, "abc", "50", [1], True, -1):  # each answered 500 or taken as a number before
        status, doc = put({"weights": {"churn-v1": bad}})
        assert status == 400 and "the weight of 'churn-v1' must be a number >= 0" in doc["error"], bad
    c.conn.request("GET", "/v2/endpoints/churn")
    shown = json.loads(c.conn.getresponse().read())
    assert [(v["model"], v["weight"]) for v in shown["variants"]] == [("churn-v1", 50), ("churn-v2", 50)]
    assert sum(v["requests"] for v in shown["variants"]) == 2 * len(keys)


def test_counts_reach_metrics_and_versions_are_refused(served, closing: ExitStack) -> None:
    srv, _ = served
    c = closing.enter_context(Caller(srv))
    for i in range(200):
        c.variant(f"k{i}")
    status, doc, _ = c.infer("churn/versions/1")
    c.conn.request("GET", "/metrics")
    text = c.conn.getresponse().read().decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("mlrt_endpoint_requests_total{")]
    total = sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)
    assert total == 200 and len(lines) == 4  # churn and churn-p, two variants each
    assert status == 400 and "is an endpoint" in doc["error"]
    c.conn.request("GET", "/v2/endpoints/nope")
    r = c.conn.getresponse()
    assert r.status == 404 and "endpoints: ['churn', 'churn-p']" in json.loads(r.read())["error"]


def test_mlrt_traffic_show_and_set(served, capsys) -> None:
    from runtime.cli import main as mlrt

    srv, _ = served
    url = ["--url", srv.url]
    assert mlrt(["traffic", "show", "churn", *url]) == 0
    out = capsys.readouterr().out
    assert "churn-v1" in out and "90" in out and "sticky key: header:x-user-id" in out
    assert mlrt(["traffic", "set", "churn", "churn-v2=40", *url]) == 2
    assert "401" in capsys.readouterr().err
    assert mlrt(["traffic", "set", "churn", "churn-v2=40", *url, "--token", "s3cret"]) == 0
    assert "churn-v2                        40" in capsys.readouterr().out
    assert mlrt(["traffic", "set", "churn", "churn-v3=1", *url, "--token", "s3cret"]) == 2
    assert "no variant(s) ['churn-v3']" in capsys.readouterr().err
    assert mlrt(["traffic", "set", "churn", "churn-v2", *url, "--token", "s3cret"]) == 2
    assert "MODEL=WEIGHT" in capsys.readouterr().err
    for bad in ("nan", "inf", "-3"):  # nan and inf ended in a traceback (not JSON) before
        assert mlrt(["traffic", "set", "churn", f"churn-v2={bad}", *url, "--token", "s3cret"]) == 2
        assert "a weight must be a number >= 0" in capsys.readouterr().err


def test_an_endpoint_answers_metadata_and_readiness_like_a_model(served, closing: ExitStack) -> None:
    # V2 clients ask a model's metadata and readiness before they call it (tritonclient's
    # get_model_metadata, is_model_ready); for an endpoint both answered 404 before.
    srv, _ = served
    c = closing.enter_context(Caller(srv))

    def get(path: str) -> tuple[int, dict]:
        c.conn.request("GET", path)
        r = c.conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")

    status, doc = get("/v2/models/churn")
    _, variant = get("/v2/models/churn-v1")
    assert status == 200 and doc["name"] == "churn" and doc["versions"] == []
    assert (doc["inputs"], doc["outputs"], doc["platform"]) == (
        variant["inputs"], variant["outputs"], variant["platform"]
    )
    assert get("/v2/models/churn/ready")[0] == 200
    status, doc = get("/v2/models/churn/versions/1")
    assert status == 400 and "is an endpoint" in doc["error"]
    assert get("/v2/models/nope/ready")[0] == 404
    # Triton's configuration too (tritonclient's get_model_config): the variant's, by name.
    status, config = get("/v2/models/churn/config")
    _, variant_config = get("/v2/models/churn-v1/config")
    assert status == 200 and config["name"] == "churn"
    assert (config["input"], config["output"]) == (variant_config["input"], variant_config["output"])
    # Statistics: the variants', each under its own name (404 before).
    for _ in range(3):
        c.variant()
    status, stats = get("/v2/models/churn/stats")
    assert status == 200, stats
    assert sorted(s["name"] for s in stats["model_stats"]) == ["churn-v1", "churn-v2"]
    calls = sum(s["inference_stats"]["success"]["count"] for s in stats["model_stats"])
    assert calls >= 3
    assert get("/v2/models/churn/versions/1/stats")[0] == 400
    # Drift is each variant's own: the 404 says where (the variants here have no profile).
    status, doc = get("/v2/models/churn/drift")
    assert status == 404 and "/v2/models/churn-v1/drift, /v2/models/churn-v2/drift" in doc["error"]
    # An unknown name's 404 lists the endpoints beside the models.
    status, doc = get("/v2/models/nope")
    assert status == 404 and "endpoints: 'churn', 'churn-p'" in doc["error"], doc

    from runtime.client import Client

    with Client(srv.url) as client:
        assert client.is_model_ready("churn")


def test_the_python_client_sends_a_sticky_key_as_a_header_or_a_parameter(served, closing: ExitStack) -> None:
    # runtime.client could send neither, so an A/B test could not keep its users on one variant.
    from runtime.client import Client

    srv, _ = served
    c = closing.enter_context(Caller(srv))

    def counts(endpoint: str) -> list[int]:
        c.conn.request("GET", f"/v2/endpoints/{endpoint}")
        return [v["requests"] for v in json.loads(c.conn.getresponse().read())["variants"]]

    x = np.full((1, 20), 0.1, np.float32)
    for fmt in ("binary", "json", "msgpack", "arrow"):
        with Client(srv.url, format=fmt) as client:
            for endpoint, how in (("churn", "headers"), ("churn-p", "parameters")):
                for key in ("user-7", "user-8"):
                    before = counts(endpoint)
                    sticky = {"x-user-id": key} if how == "headers" else {"user_id": key}
                    for _ in range(20):
                        client.infer(endpoint, {"input": x}, **{how: sticky})
                    moved = [b - a for a, b in zip(before, counts(endpoint), strict=True)]
                    assert sorted(moved) == [0, 20], (fmt, endpoint, key, moved)  # all on one variant


def test_a_parameter_key_s_variant_gets_the_request_as_sent(tmp_path: Path, closing: ExitStack) -> None:
    # The request was checked and converted against the first variant before the parameter
    # chose one: FP64 sent to the FP64 variant arrived rounded to FP32, and its refusals
    # were counted under the first variant.
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[[models]]\nname = "e32"\nsource = "tests.integration.pymodels:echo32"\n'
        '[[models]]\nname = "e64"\nsource = "tests.integration.pymodels:echo64"\n'
        '[[endpoints]]\nname = "p"\nsticky = "parameter:user"\n'
        'variants = [{ model = "e32", weight = 50 }, { model = "e64", weight = 50 }]\n'
    )
    srv = start_server([], tmp_path, ["--config", str(cfg)])
    closing.callback(stop_server, srv)
    host, port = srv.host_port.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    closing.callback(conn.close)
    seen: dict[str, float] = {}
    for user in range(40):
        body = {"parameters": {"user": f"u{user}"},
                "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [0.1]}]}  # fmt: skip
        conn.request("POST", "/v2/models/p/infer", json.dumps(body), {"content-type": "application/json"})
        r = conn.getresponse()
        answer = json.loads(r.read())
        assert r.status == 200, answer
        seen[answer["model_name"]] = answer["outputs"][0]["data"][0]
    assert set(seen) == {"e32", "e64"}
    assert seen["e64"] == 0.1  # not 0.10000000149011612: float32's 0.1, widened


def test_an_unloaded_variant_s_share_goes_to_the_others(served, closing: ExitStack) -> None:
    # Half the calls to an endpoint answered 404 "unknown model 'churn-v2'" once that
    # variant was unloaded, while the endpoint's /ready said 200.
    srv, _ = served
    c = closing.enter_context(Caller(srv))
    keys = [f"user-{i}" for i in range(200)]
    assert {c.variant(k) for k in keys} == {"churn-v1", "churn-v2"}
    auth = {"authorization": "Bearer s3cret"}
    c.conn.request("POST", "/v2/repository/models/churn-v2/unload", b"", auth)
    assert c.conn.getresponse().read() is not None
    assert {c.variant(k) for k in keys} == {"churn-v1"}
    assert {c.variant() for _ in range(50)} == {"churn-v1"}
    c.conn.request("POST", "/v2/repository/models/churn-v1/unload", b"", auth)
    c.conn.getresponse().read()
    status, body, _ = c.infer(key="user-1")
    assert status == 503 and "no variant with a weight is ready" in body["error"], body
