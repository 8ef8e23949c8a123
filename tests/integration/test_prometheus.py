"""mlrt and a real Prometheus: promtool on /metrics and on the shipped rules, and a Prometheus
server that scrapes mlrt and computes the fleet's PSI from the bin counters.

Needs the Debian package `prometheus` (binaries `prometheus` and `promtool`); CI installs it in
.ci/run. Without it these tests fail (they do not skip) and say how to install it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest

from tests.integration.serving import REPO_ROOT, Server, free_port, start_server, stop_server

pytestmark = pytest.mark.integration

DEPLOY = REPO_ROOT / "deploy" / "prometheus"
RULES = DEPLOY / "rules.yml"
DEMO = REPO_ROOT / "runtime" / "demo"
FEATURE = "mean radius"
INSTALL = (
    "these tests need Prometheus's `prometheus` and `promtool` on PATH: install the Debian package with "
    "`apt-get update && apt-get install -y --no-install-recommends prometheus` (.ci/run does this)"
)
READY_TIMEOUT_S = 30.0
SCRAPE_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0

T = TypeVar("T")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        # CI installs Prometheus (.ci/run) and must run these; a developer's machine may not have it.
        if os.environ.get("CI"):
            pytest.fail(f"`{name}` not found; {INSTALL}", pytrace=False)
        pytest.skip(f"`{name}` not found; {INSTALL}")
    return path


def promtool(*args: str, stdin: str | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60
    )


def _report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Server]:
    """A fresh mlrt serving the bundled demo model with its reference profile."""
    srv = start_server([f"demo={DEMO / 'model.onnx'}"], tmp_path, ["--profile", str(DEMO / "profile.json")])
    yield srv
    stop_server(srv)


def drifted_rows() -> np.ndarray:
    """Real rows of one class only (label 0, the malignant cases): far from the reference mix."""
    with np.load(DEMO / "data.npz", allow_pickle=False) as data:
        features, labels = data["features"], data["labels"]
    return np.ascontiguousarray(features[labels == 0], dtype=np.float32)


def send(client: httpx.Client, rows: np.ndarray, batch: int = 32) -> int:
    """POST the rows to the demo model in V2 JSON requests of `batch` rows; the number sent."""
    for start in range(0, len(rows), batch):
        x = rows[start : start + batch]
        tensor = {"name": "features", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        resp = client.post("/v2/models/demo/infer", json={"inputs": [tensor]})
        assert resp.status_code == 200, resp.text
    return len(rows)


# -- promtool ----------------------------------------------------------------------------------


def test_promtool_accepts_mlrt_metrics(demo: Server) -> None:
    with httpx.Client(base_url=demo.url, timeout=30.0) as client:
        before = client.get("/metrics")
        send(client, drifted_rows()[:100])
        assert client.post("/v2/models/demo/infer", content=b"{nope").status_code == 400
        after = client.get("/metrics")
    for when, resp in (("before traffic", before), ("after traffic", after)):
        assert resp.status_code == 200
        proc = promtool("check", "metrics", stdin=resp.text)
        assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
            f"promtool check metrics on mlrt's /metrics {when}: {_report(proc)}\n/metrics:\n{resp.text}"
        )
    for name in ("mlrt_feature_psi", "mlrt_feature_bin_total", "mlrt_feature_reference_share"):
        assert f"\n{name}{{" in after.text, f"no {name} samples in /metrics:\n{after.text}"


def test_promtool_checks_shipped_rules_and_config() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, _report(proc)
    assert "SUCCESS" in proc.stdout, _report(proc)
    proc = promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    assert proc.returncode == 0, _report(proc)


def test_promtool_unit_tests_of_rules() -> None:
    """Two replicas' counters summed: fleet PSI, shares, row counts and the drift alerts
    (rules_test.yml); latency quantiles, error and shed ratios and the serving alerts, each
    firing and not (rules_serving_test.yml); the traffic alerts (rules_traffic_test.yml)."""
    for tests in ("rules_test.yml", "rules_serving_test.yml", "rules_traffic_test.yml"):
        proc = promtool("test", "rules", tests, cwd=DEPLOY)
        assert proc.returncode == 0 and "SUCCESS" in proc.stdout, _report(proc)


# -- a real Prometheus server ---------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query, now or at time `at`; the result (empty when nothing matches)."""
        params: dict[str, str] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            resp = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10.0)
        except httpx.TransportError as exc:
            pytest.fail(f"Prometheus did not answer the query {expr!r}: {exc}\nPrometheus log:\n{self.log()}")
        body = resp.json()
        assert resp.status_code == 200 and body.get("status") == "success", (
            f"query {expr!r}: HTTP {resp.status_code} {body}\nPrometheus log:\n{self.log()}"
        )
        assert body["data"]["resultType"] in ("vector", "matrix"), body
        return list(body["data"]["result"])

    def values(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        """An instant vector query's result as {value of `label`: sample value}."""
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr, at)}


def start_prometheus(workdir: Path, target: str | list[str], rules: Path) -> Prometheus:
    """Prometheus on 127.0.0.1 scraping `target` (or each of several) every second and
    evaluating `rules` every second."""
    targets = [target] if isinstance(target, str) else list(target)
    exe = binary("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "mlrt", "static_configs": [{"targets": targets}]}],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                exe,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode} at start; log:\n{prom.log()}")
            try:
                if httpx.get(f"{prom.url}/-/ready", timeout=1.0).status_code == 200:
                    return prom
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"prometheus not ready on {prom.url} within {READY_TIMEOUT_S:.0f} s; log:\n{prom.log()}"
                )
            time.sleep(0.1)
    except BaseException:
        stop_prometheus(prom)
        raise


def stop_prometheus(prom: Prometheus) -> None:
    if prom.process.poll() is None:
        prom.process.send_signal(signal.SIGTERM)
        try:
            prom.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            prom.process.kill()
            prom.process.wait()


@pytest.fixture
def prometheus(demo: Server, tmp_path: Path) -> Iterator[Prometheus]:
    prom = start_prometheus(tmp_path, demo.host_port, RULES)
    yield prom
    stop_prometheus(prom)


def wait_for(
    prom: Prometheus, what: str, probe: Callable[[], T | None], timeout: float = SCRAPE_TIMEOUT_S
) -> T:
    """Poll `probe` until it returns something other than None; fail with Prometheus's log on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; Prometheus log:\n{prom.log()}")
        time.sleep(0.2)


def test_prometheus_scrapes_mlrt_and_computes_fleet_psi(demo: Server, prometheus: Prometheus) -> None:
    prom = prometheus
    mv = 'model="demo",version="1"'
    bins = f'mlrt_feature_bin_total{{{mv},feature="{FEATURE}"}}'

    # 1. A scrape before any traffic: every counter's first sample in the rules' window is 0.
    wait_for(prom, "a first scrape of mlrt's bin counters", lambda: prom.query(bins) or None)
    up = prom.values('up{job="mlrt"}', "instance")
    assert up == {demo.host_port: 1.0}, f"{up}\nPrometheus log:\n{prom.log()}"

    # 2. Drifted traffic (only one class), then nothing: the figures below stay still.
    rows = drifted_rows()
    with httpx.Client(base_url=demo.url, timeout=30.0) as client:
        sent = sum(send(client, rows) for _ in range(3))

        def drift_settled() -> dict[str, Any] | None:
            report = client.get("/v2/models/demo/drift").json()
            return report if report["window"]["rows"] == sent else None

        report = wait_for(prom, f"the drift window of mlrt to hold the {sent} rows sent", drift_settled)
    server_psi = {f["name"]: f["psi"] for f in report["features"]}
    server_out_psi = {f["name"]: f["psi"] for f in report["outputs"]}
    assert server_psi[FEATURE] is not None and server_psi[FEATURE] > 0.2, report

    # 3. Wait for a scrape that saw every row; from then on the latest samples are final.
    def scraped_all() -> bool | None:
        total = sum(float(s["value"][1]) for s in prom.query(bins))
        return True if total == sent else None

    wait_for(prom, f"a scrape with all {sent} rows in {bins}", scraped_all)
    scraped_at = time.time()

    # 4. The PSI gauge as Prometheus stored it is the drift endpoint's PSI (same window, same rows).
    gauge = prom.values(f'mlrt_feature_psi{{{mv},feature="{FEATURE}"}}', "feature")
    assert gauge.keys() == {FEATURE}, gauge
    assert gauge[FEATURE] == pytest.approx(server_psi[FEATURE], rel=1e-9, abs=1e-12), (
        f"mlrt_feature_psi in Prometheus {gauge[FEATURE]} != drift endpoint {server_psi[FEATURE]}"
    )
    all_gauges = prom.values(f"mlrt_feature_psi{{{mv}}}", "feature")
    assert all_gauges == pytest.approx(server_psi, rel=1e-9, abs=1e-12)
    assert prom.values(f"mlrt_prediction_psi{{{mv}}}", "output") == pytest.approx(
        server_out_psi, rel=1e-9, abs=1e-12
    )

    # 5. The recording rules, once evaluated after that scrape.
    fleet = f'model_version_feature:mlrt_feature_psi:fleet10m{{{mv},feature="{FEATURE}"}}'

    def evaluated_after_scrape() -> bool | None:
        stamp = prom.values(f"timestamp({fleet})", "feature")
        return True if stamp and stamp[FEATURE] > scraped_at + 0.5 else None

    wait_for(prom, f"an evaluation of {fleet} after the last scrape", evaluated_after_scrape)
    # Fleet PSI from the counters equals the server's own PSI of the same rows. increase()
    # extrapolates each counter's growth towards the ends of the window, but here by the same factor
    # for every bin: all counters of one replica share their scrape times, and each one's first
    # sample in the window is 0 (scraped before any traffic), which stops extrapolation towards the
    # window's start. So the shares - ratios of increases - are exact and only float rounding
    # remains; rows, not ratios, do carry the extrapolation (below).
    fleet_psi = prom.values(f"model_version_feature:mlrt_feature_psi:fleet10m{{{mv}}}", "feature")
    assert fleet_psi[FEATURE] == pytest.approx(server_psi[FEATURE], rel=1e-6), (
        f"fleet PSI {fleet_psi[FEATURE]} from the counters != server PSI {server_psi[FEATURE]}\n"
        f"Prometheus log:\n{prom.log()}"
    )
    assert fleet_psi == pytest.approx(server_psi, rel=1e-6, abs=1e-9)
    fleet_out = prom.values(f"model_version_output:mlrt_prediction_psi:fleet10m{{{mv}}}", "output")
    assert fleet_out == pytest.approx(server_out_psi, rel=1e-6, abs=1e-9)

    # Rows do carry the extrapolation: increase() scales the growth seen between the first and last
    # samples in the window (`sampled` seconds apart) up to the window's end, by at most 1.1 average
    # scrape intervals past the last sample; never down (no counter reset, no extrapolation towards
    # the start). With a test this short that can nearly double the count, so bound it exactly.
    rows_record = f"model_version:mlrt_window_rows:fleet10m{{{mv}}}"
    evaluated = prom.values(f"timestamp({rows_record})", "model")["demo"]
    fleet_rows = prom.values(rows_record, "model", at=evaluated)["demo"]
    bin0 = f'mlrt_feature_bin_total{{{mv},feature="{FEATURE}",bin="0"}}'
    (raw,) = prom.query(f"{bin0}[10m]", at=evaluated)
    stamps = [float(t) for t, _ in raw["values"]]
    sampled = stamps[-1] - stamps[0]
    assert len(stamps) >= 2 and sampled > 0, raw
    # A scrape is stamped when it starts and stored when it ends: under load, the rule may
    # have run before the last scrape stamped within an interval of it was stored, and then
    # saw one sample fewer (CI saw 3 samples here and a rule value from 2). Either is bounded.
    seen = [stamps]
    if len(stamps) > 2 and stamps[-1] > evaluated - 1.0:
        seen.append(stamps[:-1])
    most = max(sent * (1 + 1.1 / (len(s) - 1)) for s in seen)
    assert sent <= fleet_rows <= most * (1 + 1e-9), (
        f"fleet rows {fleet_rows}, sent {sent}, at most {most} after extrapolation; "
        f"{len(stamps)} scrapes over {sampled:.3f} s"
    )
    assert all(math.isfinite(v) for v in fleet_psi.values())

    # 6. The alert: PSI over 0.2 with over 500 rows; pending, since `for: 10m` has not passed.
    alerts = prom.query(f'ALERTS{{alertname="MlrtFeatureDrift",{mv},feature="{FEATURE}"}}')
    assert [a["metric"]["alertstate"] for a in alerts] == ["pending"], (
        f"{alerts}\nPrometheus log:\n{prom.log()}"
    )


def test_fleet_drift_from_prometheus_equals_the_drift_of_all_the_traffic(tmp_path: Path) -> None:
    """Two replicas get different traffic (one class each); Prometheus scrapes both;
    `mlrt drift REF --prometheus` sums their counters and gives the report one process
    would give of the union of the traffic, to 1e-9."""
    import sys

    from runtime.monitor.profile import Profile

    profile_path = DEMO / "profile.json"
    args = ["--profile", str(profile_path)]
    replicas = []
    for i in (0, 1):
        (tmp_path / f"r{i}").mkdir()
        replicas.append(start_server([f"demo={DEMO / 'model.onnx'}"], tmp_path / f"r{i}", args))
    prom = None
    try:
        prom = start_prometheus(tmp_path, [r.host_port for r in replicas], RULES)
        with np.load(DEMO / "data.npz", allow_pickle=False) as data:
            features, labels = data["features"].astype(np.float32), data["labels"]
        parts = [features[labels == 0], features[labels == 1][:150]]  # different traffic each
        for replica, rows in zip(replicas, parts, strict=True):
            with httpx.Client(base_url=replica.url, timeout=30.0) as client:
                send(client, rows)
        sent = sum(len(p) for p in parts)
        bins = 'mlrt_feature_bin_total{model="demo",version="1",feature="mean radius"}'

        def scraped_all() -> bool | None:
            return True if sum(float(s["value"][1]) for s in prom.query(bins)) == sent else None

        wait_for(prom, f"a scrape of both replicas with all {sent} rows", scraped_all)
        cmd = [sys.executable, "-m", "runtime", "drift", str(profile_path), "--prometheus", prom.url,
               "--model", "demo", "--format", "json"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        fleet = json.loads(out.stdout)
    finally:
        if prom is not None:
            stop_prometheus(prom)
        for r in replicas:
            stop_server(r)
    # The union, judged by one process: `mlrt drift REF DATA --model` on all the rows (the
    # model's outputs too, so the two reports test the same family of features and outputs).
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f.name for f in Profile.load(profile_path).features]
    rows = np.concatenate(parts)
    pq.write_table(pa.table({n: rows[:, j] for j, n in enumerate(names)}), tmp_path / "union.parquet")
    cmd = [sys.executable, "-m", "runtime", "drift", str(profile_path), str(tmp_path / "union.parquet"),
           "--model", str(DEMO / "model.onnx"), "--format", "json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    union = json.loads(out.stdout)
    assert fleet["window"]["rows"] == sent == union["window"]["rows"]
    assert fleet["status"] == union["status"]
    for section in ("features", "outputs"):
        want = {f["name"]: (f["psi"], f["status"], f["current_share"]) for f in union[section]}
        got = {f["name"]: (f["psi"], f["status"], f["current_share"]) for f in fleet[section]}
        assert got.keys() == want.keys() and want, section
        for name, (psi, status, shares) in want.items():
            assert got[name][0] == pytest.approx(psi, rel=1e-9, abs=1e-12), name
            assert got[name][1] == status and got[name][2] == shares, name
    # Each replica alone drifts differently from the fleet: the merge is not an average.
    assert fleet["status"] in ("warn", "alert")


def _rated(samples: list[dict[str, Any]]) -> list[float] | None:
    """The samples' values once every one is a number (None while any is NaN or none exist)."""
    values = [float(x["value"][1]) for x in samples]
    return values if values and not any(math.isnan(v) for v in values) else None


def test_the_grafana_dashboard_is_valid_and_its_queries_run(demo: Server, prometheus: Prometheus) -> None:
    """deploy/grafana/mlrt.json: a dashboard model Grafana imports (unique panel ids, every
    panel on the datasource variable, every target with a query), and every query parses and
    runs in a real Prometheus that scrapes mlrt with the shipped rules."""
    doc = json.loads((REPO_ROOT / "deploy" / "grafana" / "mlrt.json").read_text())
    assert doc["uid"] and doc["schemaVersion"] >= 30 and doc["title"]
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "model"}
    panels = doc["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    with httpx.Client(base_url=demo.url, timeout=30.0) as client:
        send(client, drifted_rows()[:64])
    wait_for(prometheus, "a scrape with requests", lambda: prometheus.query("mlrt_requests_total") or None)
    answered = {}
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        for target in panel["targets"]:
            expr = target["expr"].replace("$model", ".*").replace("$__rate_interval", "1m")
            answered[expr] = prometheus.query(expr)  # fails the test on a query Prometheus refuses
    requests = next(e for e in answered if e.startswith("sum by (model, version) (rate(mlrt_requests_total"))
    wait_for(prometheus, "a request rate", lambda: prometheus.query(requests.replace("1m", "30s")) or None)
    assert "mlrt_drift_status" in json.dumps(panels) and "fleet10m" in json.dumps(panels)
    # A model that has only answered has error and shed ratios of 0, not "No data": the
    # panels read recording rules whose numerator has no series before the first failure.
    for ratio in ("mlrt_requests_errors", "mlrt_rejected"):
        ratio = f"model_version:{ratio}:ratio_rate5m"
        # (NaN while the request rate itself is 0: 0 / 0; requests after a scrape move it.)
        with httpx.Client(base_url=demo.url, timeout=30.0) as client:
            send(client, drifted_rows()[:64])
        got = wait_for(prometheus, ratio, lambda r=ratio: _rated(prometheus.query(r)))
        assert got == [0.0] * len(got), (ratio, got)
