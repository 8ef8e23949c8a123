"""Drift monitoring in a real `mlrt serve` on 127.0.0.1: the counts the server keeps
equal the numpy oracle's counts of the rows sent over HTTP, statuses and the
small-window guard, NaNs and unseen categories, state across a restart, and the
errors for a missing or mismatched profile."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench import models as bench_models
from runtime.monitor import _reference as ref
from runtime.monitor.profile import Profile
from tests.integration.drift_client import (
    bin_totals,
    columns_of,
    gauge,
    infer,
    oracle_counts,
)
from tests.integration.serving import REPO_ROOT, Server, free_port, start_server, stop_server, terminate

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "runtime" / "demo"
EPS = 1e-4
CLIENT_TIMEOUT_S = 30.0


def _mlp_profile(path: Path, model: Path, seed: int) -> Profile:
    """A reference of 4000 standard normal rows for bench.models.mlp, with its outputs."""
    import onnxruntime as ort

    X = np.random.default_rng(seed).normal(size=(4000, 20)).astype(np.float32)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (Y,) = session.run(None, {"input": X})
    profile = Profile.fit(X, bins=10, outputs=Y, output_names=["p0", "p1"])
    profile.save(path)
    return profile


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("drift")
    bench_models.mlp(d / "mlp.onnx")
    bench_models.strings(d / "strings.onnx")
    _mlp_profile(d / "mlp.json", d / "mlp.onnx", seed=0)
    _mlp_profile(d / "mlp_other.json", d / "mlp.onnx", seed=1)
    words = np.random.default_rng(2).choice(np.array(["cat", "dog", "eel"], dtype=object), size=600)
    Profile.fit({"text": words}, outputs={"echo": words}).save(d / "strings.json")
    Profile.fit(np.zeros((10, 5), np.float32)).save(d / "five.json")
    return {
        "dir": d,
        "mlp": d / "mlp.onnx",
        "mlp_profile": d / "mlp.json",
        "mlp_other_profile": d / "mlp_other.json",
        "strings": d / "strings.onnx",
        "strings_profile": d / "strings.json",
        "five_profile": d / "five.json",
    }


@pytest.fixture(scope="module")
def counting(files: dict[str, Path]) -> Iterator[Server]:
    """One server, one model per test below, so every test owns its model's counts."""
    srv = start_server(
        [
            f"mlp={files['mlp']}",
            f"nan={files['mlp']}",
            f"demo={DEMO / 'model.onnx'}",
            f"strings={files['strings']}",
            f"plain={files['mlp']}",  # no profile
        ],
        files["dir"],
        [
            "--profile", f"mlp={files['mlp_profile']}",
            "--profile", f"nan={files['mlp_profile']}",
            "--profile", f"demo={DEMO / 'profile.json'}",
            "--profile", f"strings={files['strings_profile']}",
        ],
    )  # fmt: skip
    yield srv
    stop_server(srv)


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_S)


def _drift(client: httpx.Client, model: str) -> dict:
    resp = client.get(f"/v2/models/{model}/drift")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _send_mixed(client: httpx.Client, model: str, name: str, X: np.ndarray, seed: int) -> list[dict]:
    """Send X's rows in batches of various sizes, JSON and binary, 8 at a time;
    the responses in the order of X's rows."""
    rng = np.random.default_rng(seed)
    cuts, pos = [], 0
    for size in [1, 2, 3, 64, 128, *rng.integers(1, 50, size=200).tolist()]:
        if pos >= len(X):
            break
        cuts.append((pos, min(pos + size, len(X))))
        pos += size
    if pos < len(X):
        cuts.append((pos, len(X)))
    modes = [(i % 2 == 1, i % 3 == 2) for i in range(len(cuts))]

    def one(k: int) -> dict:
        a, b = cuts[k]
        binary, binary_out = modes[k]
        return infer(client, model, {name: X[a:b]}, binary=binary, binary_out=binary_out)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(len(cuts))))


# -- (a) counts and PSI equal the oracle's ----------------------------------------------
def test_counts_and_psi_equal_the_oracle_for_rows_sent_over_http(counting: Server, files) -> None:
    profile = Profile.load(files["mlp_profile"])
    rng = np.random.default_rng(10)
    X = rng.normal(size=(1500, 20)).astype(np.float32)
    X[:, 4] = X[:, 4] * 2 + 0.5  # some drift, so PSI is not ~0
    X[::97, 7] = np.inf  # the top bin
    with _client(counting) as client:
        outs = _send_mixed(client, "mlp", "input", X, seed=11)
        Y = np.concatenate([o["output"] for o in outs])
        metrics = client.get("/metrics").text
        doc = _drift(client, "mlp")
    assert Y.shape == (1500, 2)
    want_in = oracle_counts(profile.features, columns_of(X))
    want_out = oracle_counts(profile.outputs, columns_of(Y))

    # Prometheus counters since load: exactly the oracle's counts.
    got_in = bin_totals(metrics, "mlp", "features")
    got_out = bin_totals(metrics, "mlp", "outputs")
    assert set(got_in) == set(want_in) and set(got_out) == set(want_out) == {"p0", "p1"}
    for name in want_in:
        np.testing.assert_array_equal(got_in[name], want_in[name], err_msg=name)
    for name in want_out:
        np.testing.assert_array_equal(got_out[name], want_out[name], err_msg=name)
    assert gauge(metrics, "mlrt_window_rows", model="mlp") == 1500

    # The drift endpoint: window counts, shares, PSI and JS from the same counts.
    assert doc["window"]["rows"] == 1500
    assert doc["reference"] == {"rows": 4000, "fingerprint": profile.fingerprint}
    for f in [*doc["features"], *doc["outputs"]]:
        prof = profile.feature(f["name"])
        e = np.array(prof.counts)
        np.testing.assert_allclose(f["reference_share"], e / e.sum(), atol=1e-6)
        want = (want_in | want_out)[f["name"]]
        np.testing.assert_array_equal(np.rint(np.array(f["current_share"]) * 1500).astype(np.int64), want)
        assert f["psi"] == pytest.approx(ref.psi(e, want, EPS), rel=1e-9, abs=1e-12), f["name"]
        assert f["js"] == pytest.approx(ref.js(e, want), rel=1e-9, abs=1e-12), f["name"]
        assert f["rows"] == 1500
        section = "feature" if f in doc["features"] else "output"
        metric = "mlrt_feature_psi" if section == "feature" else "mlrt_prediction_psi"
        exported = gauge(metrics, metric, model="mlp", **{section: f["name"]})
        assert exported == pytest.approx(f["psi"], rel=1e-12)
    psi = {f["name"]: f["psi"] for f in doc["features"]}
    assert psi["f4"] > 0.2 and doc["status"] == "alert"


def test_demo_counts_with_categorical_output_equal_the_oracle(counting: Server) -> None:
    profile = Profile.load(DEMO / "profile.json")
    with np.load(DEMO / "data.npz") as d:
        X = d["features"]
    with _client(counting) as client:
        outs = _send_mixed(client, "demo", "features", X, seed=12)
        metrics = client.get("/metrics").text
        doc = _drift(client, "demo")
    probs = np.concatenate([o["probabilities"] for o in outs])
    label = np.concatenate([o["label"] for o in outs])
    want_in = oracle_counts(profile.features, columns_of(X))
    want_out = oracle_counts(profile.outputs, columns_of(probs, label))
    got_in, got_out = bin_totals(metrics, "demo", "features"), bin_totals(metrics, "demo", "outputs")
    assert list(want_out) == ["probabilities[0]", "probabilities[1]", "label"]
    for name in want_in:
        np.testing.assert_array_equal(got_in[name], want_in[name], err_msg=name)
    for name in want_out:
        np.testing.assert_array_equal(got_out[name], want_out[name], err_msg=name)
    assert doc["window"]["rows"] == len(X)
    by_name = {f["name"]: f for f in doc["outputs"]}
    assert by_name["label"]["bins"] == ["0", "1", "other", "missing"]
    e = np.array(profile.feature("label").counts)
    assert by_name["label"]["psi"] == pytest.approx(ref.psi(e, want_out["label"], EPS), rel=1e-9)


def test_unseen_categories_over_http_count_as_other_and_drift(counting: Server, files) -> None:
    profile = Profile.load(files["strings_profile"])
    assert profile.features[0].levels == ["cat", "dog", "eel"]
    rng = np.random.default_rng(13)
    words = rng.choice(np.array(["cat", "dog", "eel", "fox", "gnu"], dtype=object), size=400)
    with _client(counting) as client:
        for a in range(0, 400, 40):
            out = infer(client, "strings", {"text": words[a : a + 40].reshape(-1, 1)})
            assert out["echo"].ravel().tolist() == words[a : a + 40].tolist()
        metrics = client.get("/metrics").text
        doc = _drift(client, "strings")
    want = ref.count_levels(words.tolist(), ["cat", "dog", "eel"])
    assert want[3] == int(np.isin(words, ["fox", "gnu"]).sum()) > 100
    np.testing.assert_array_equal(bin_totals(metrics, "strings", "features")["text"], want)
    np.testing.assert_array_equal(bin_totals(metrics, "strings", "outputs")["echo"], want)
    text = doc["features"][0]
    assert text["bins"] == ["cat", "dog", "eel", "other", "missing"]
    assert text["current_share"][3] == pytest.approx(want[3] / 400, abs=1e-6)
    assert text["psi"] == pytest.approx(ref.psi(np.array(profile.features[0].counts), want, EPS), rel=1e-9)
    assert text["status"] == "alert" and doc["outputs"][0]["status"] == "alert"
    assert doc["status"] == "alert"


# -- (c) NaN inputs -----------------------------------------------------------------------
def test_nan_inputs_are_counted_missing_and_drift(counting: Server, files) -> None:
    profile = Profile.load(files["mlp_profile"])
    rng = np.random.default_rng(14)
    X = rng.normal(size=(600, 20)).astype(np.float32)
    X[rng.random(600) < 0.4, 3] = np.nan
    X[5, 11] = np.nan
    n_nan = int(np.isnan(X[:, 3]).sum())
    with _client(counting) as client:
        for a in range(0, 600, 50):  # JSON (NaN tokens) and binary in turn
            infer(client, "nan", {"input": X[a : a + 50]}, binary=(a // 50) % 2 == 1)
        metrics = client.get("/metrics").text
        doc = _drift(client, "nan")
    got = bin_totals(metrics, "nan", "features")
    assert got["f3"][-1] == n_nan and got["f11"][-1] == 1 and got["f0"][-1] == 0
    want = oracle_counts(profile.features, columns_of(X))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    f = {d["name"]: d for d in doc["features"]}
    assert f["f3"]["current_share"][-1] == pytest.approx(n_nan / 600, abs=1e-6)
    assert f["f3"]["reference_share"][-1] == 0.0
    assert f["f3"]["psi"] == pytest.approx(ref.psi(np.array(profile.features[3].counts), want["f3"], EPS))
    assert f["f3"]["psi"] > 1.0 and f["f3"]["status"] == "alert"
    assert f["f0"]["status"] == "ok"
    assert doc["status"] == "alert"
    assert gauge(metrics, "mlrt_drift_status", model="nan") == 2


# -- (b) statuses -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def statuses(files: dict[str, Path]) -> Iterator[Server]:
    """The demo model four times, configured by TOML with thresholds of its own."""
    d = files["dir"]
    model, prof = DEMO / "model.onnx", DEMO / "profile.json"
    toml = [
        "[monitor]",
        "warn_psi = 0.12",
        "alert_psi = 0.25",
        "min_rows = 150",
        "alpha = 0.01",
        "window_s = 3600",
    ]
    for name in ("shifted", "reference", "heldout", "small"):
        toml += ["[[models]]", f"name = {json.dumps(name)}", f"source = {json.dumps(str(model))}"]
        toml += [f"profile = {json.dumps(str(prof))}"]
    (d / "statuses.toml").write_text("\n".join(toml) + "\n")
    srv = start_server([], d, ["--config", str(d / "statuses.toml")])
    yield srv
    stop_server(srv)


def test_statuses_shifted_reference_and_small_windows(statuses: Server) -> None:
    with np.load(DEMO / "data.npz") as d:
        X, y, train = d["features"], d["labels"], d["train_rows"]
    heldout = np.setdiff1d(np.arange(len(X)), train)
    malignant = X[y == 0]  # 212 rows of one class: a shifted population
    with _client(statuses) as client:
        _send_mixed(client, "shifted", "features", malignant, seed=20)
        _send_mixed(client, "reference", "features", X[train], seed=21)
        _send_mixed(client, "heldout", "features", X[heldout], seed=22)
        _send_mixed(client, "small", "features", malignant[:120], seed=23)
        docs = {m: _drift(client, m) for m in ("shifted", "reference", "heldout", "small")}
        metrics = client.get("/metrics").text
    for doc in docs.values():
        assert doc["thresholds"] == {
            "warn_psi": 0.12, "alert_psi": 0.25, "alpha": 0.01, "min_rows": 150, "eps": 1e-4,
        }  # fmt: skip
        assert doc["window"]["seconds"] == 3600

    shifted = docs["shifted"]
    assert shifted["status"] == "alert" and shifted["window"]["rows"] == 212
    alerting = [f["name"] for f in shifted["features"] if f["status"] == "alert"]
    assert len(alerting) >= 10, alerting
    assert {o["name"]: o["status"] for o in shifted["outputs"]}["label"] == "alert"  # prediction drift
    assert gauge(metrics, "mlrt_drift_status", model="shifted") == 2

    # The training rows themselves: every share equals the reference, PSI 0.
    reference = docs["reference"]
    assert reference["status"] == "ok" and reference["window"]["rows"] == len(train)
    for f in reference["features"]:
        assert f["psi"] == pytest.approx(0.0, abs=1e-9) and f["status"] == "ok"
    assert gauge(metrics, "mlrt_drift_status", model="reference") == 0

    # Held-out rows of the same population: some PSIs pass warn_psi by sampling noise
    # alone (171 rows against 398), and the significance test keeps them ok.
    held = docs["heldout"]
    assert held["window"]["rows"] == len(heldout) >= 150
    assert held["status"] == "ok"
    noisy = [f for f in held["features"] if f["psi"] > 0.12]
    assert noisy and all(not f["significant"] and f["status"] == "ok" for f in noisy)

    # Fewer rows than min_rows: far from the reference, yet ok.
    small = docs["small"]
    assert small["window"]["rows"] == 120
    assert max(f["psi"] for f in small["features"]) > 1.0
    assert small["status"] == "ok"
    assert all(f["status"] == "ok" for f in [*small["features"], *small["outputs"]])


# -- (d) state across a restart -----------------------------------------------------------
def _snapshot(server: Server, model: str = "mlp") -> tuple[dict, dict, dict, float]:
    with _client(server) as client:
        metrics = client.get("/metrics").text
        doc = _drift(client, model)
    return (
        bin_totals(metrics, model, "features"),
        bin_totals(metrics, model, "outputs"),
        doc,
        gauge(metrics, "mlrt_window_rows", model=model),
    )


def test_state_is_restored_after_restart(files, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    args = ["--profile", str(files["mlp_profile"]), "--state-dir", str(state_dir)]
    models = [f"mlp={files['mlp']}"]
    X = np.random.default_rng(30).normal(size=(700, 20)).astype(np.float32) + 0.3
    X[::10, 0] = np.nan

    first = start_server(models, tmp_path, args)
    try:
        with _client(first) as client:
            _send_mixed(client, "mlp", "input", X, seed=31)
        before = _snapshot(first)
    finally:
        code = terminate(first)
    assert code == 0, first.stderr()
    assert (state_dir / "mlp@1.npz").is_file()
    profile = Profile.load(files["mlp_profile"])
    want = oracle_counts(profile.features, columns_of(X))
    for name in want:
        np.testing.assert_array_equal(before[0][name], want[name])
    assert before[3] == 700

    second = start_server(models, tmp_path, args)
    try:
        after = _snapshot(second)
        for name in want:
            np.testing.assert_array_equal(after[0][name], want[name], err_msg=name)
        for name in before[1]:
            np.testing.assert_array_equal(after[1][name], before[1][name], err_msg=name)
        assert after[3] == 700
        doc_before, doc_after = before[2], after[2]
        assert doc_after["window"]["rows"] == 700
        assert doc_after["status"] == doc_before["status"]
        old_all = doc_before["features"] + doc_before["outputs"]
        for a, b in zip(old_all, doc_after["features"] + doc_after["outputs"], strict=True):
            assert a["name"] == b["name"]
            assert a["current_share"] == b["current_share"]
            assert b["psi"] == pytest.approx(a["psi"], rel=1e-12)
        # Counting goes on from the restored counts.
        with _client(second) as client:
            infer(client, "mlp", {"input": X[:50]}, binary=True)
        more = _snapshot(second)
        want_more = oracle_counts(profile.features, columns_of(np.concatenate([X, X[:50]])))
        for name in want_more:
            np.testing.assert_array_equal(more[0][name], want_more[name], err_msg=name)
        assert more[3] == 750
    finally:
        stop_server(second)

    # Another profile for the same model: the saved counts are not its own.
    other_args = ["--profile", str(files["mlp_other_profile"]), "--state-dir", str(state_dir)]
    third = start_server(models, tmp_path, other_args)
    try:
        totals, out_totals, doc, rows = _snapshot(third)
        assert rows == 0 and doc["window"]["rows"] == 0
        assert all(not c.any() for c in [*totals.values(), *out_totals.values()])
        assert doc["reference"]["fingerprint"] == Profile.load(files["mlp_other_profile"]).fingerprint
        assert doc["status"] == "ok"
    finally:
        stop_server(third)


# -- (e) no profile, and a profile that does not fit ---------------------------------------
def test_model_without_profile_has_no_drift_report(counting: Server) -> None:
    with _client(counting) as client:
        for path in ("/v2/models/plain/drift", "/v2/models/plain/versions/1/drift"):
            resp = client.get(path)
            assert resp.status_code == 404, resp.text
            error = resp.json()["error"]
            assert "plain" in error and "--profile" in error
        metrics = client.get("/metrics").text
        infer(client, "plain", {"input": np.zeros((2, 20), np.float32)})
        assert client.get("/v2/models/nosuch/drift").status_code == 404
        assert client.get("/v2/models/mlp/versions/1/drift").status_code == 200
    assert 'model="plain"' not in "".join(
        line for line in metrics.splitlines() if line.startswith("mlrt_feature_")
    )


def _serve_and_fail(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", "serve", "--host", "127.0.0.1", "--port", str(free_port()), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("five_features", r"model 'mlp'.*5 features.*20 columns"),
        ("missing_file", r"model 'mlp'.*not found"),
        ("unknown_model", r"no model named 'other'"),
        ("not_a_profile", r"model 'mlp'.*invalid profile"),
    ],
)
def test_profile_that_does_not_fit_stops_startup(files, tmp_path: Path, case: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    profile = {
        "five_features": f"mlp={files['five_profile']}",
        "missing_file": f"mlp={tmp_path / 'absent.json'}",
        "unknown_model": f"other={files['mlp_profile']}",
        "not_a_profile": f"mlp={bad}",
    }[case]
    proc = _serve_and_fail([f"mlp={files['mlp']}", "--profile", profile])
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr


def test_unusable_state_dir_stops_startup(files, tmp_path: Path) -> None:
    """A --state-dir that cannot be written is said at start (exit 1, no traceback), not
    found out at exit with the counts lost."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = _serve_and_fail(
        [f"mlp={files['mlp']}", "--profile", f"mlp={files['mlp_profile']}", "--state-dir", str(blocker / "s")]
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"--state-dir .*a-file/s: drift counts could not be saved", proc.stderr), proc.stderr


def test_counts_not_saved_at_exit_give_a_failing_exit_status(files, tmp_path: Path) -> None:
    """When the state directory goes away while serving, the counts cannot be saved at
    exit: said in one line, and the exit status is 1, not 0."""
    import shutil

    state_dir = tmp_path / "state"
    args = ["--profile", str(files["mlp_profile"]), "--state-dir", str(state_dir)]
    srv = start_server([f"mlp={files['mlp']}"], tmp_path, args)
    shutil.rmtree(state_dir)
    state_dir.write_text("a file where the directory was")
    code = terminate(srv)
    log = srv.stderr()
    assert code == 1, log
    assert f"drift counts NOT saved to {state_dir}" in log and "Traceback" not in log, log
