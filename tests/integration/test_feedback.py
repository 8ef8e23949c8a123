"""The prediction log and ground-truth feedback (runtime/traffic/predlog.py, feedback.py)
against a real server, on real data sets: the log holds exactly what was answered (ids,
variants, inputs, outputs), the shadow's agreement and abs-diff histogram recomputed from
the log equal the server's, the quality per variant equals scikit-learn's metrics on the
same ids, bad feedback is refused item by item, and a killed server's open log file is
recovered at the next start."""

from __future__ import annotations

import http.client
import json
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.tree import DecisionTreeClassifier

from runtime.traffic import read_log
from runtime.traffic.compare import ABS_DIFF_BUCKETS
from tests.integration import pymodels
from tests.integration.serving import PYMODELS, Server, check_metrics, start_server, stop_server

pytestmark = pytest.mark.integration

WINDOW = 110  # far fewer rows than the 30% variant gets (171 +- 11 of 569): the window is full and slides


def serve(
    tmp: Path, *, data: str = "cancer", log: str = "", feedback: str = "", shadow: bool = True
) -> Server:
    cfg = tmp / "endpoint.toml"
    lines = [
        f'[[models]]\nname = "{data}-a"\nsource = "{PYMODELS}:{data}_a"\n',
        f'[[models]]\nname = "{data}-b"\nsource = "{PYMODELS}:{data}_b"\n',
        "[[endpoints]]",
        f'name = "{data}"',
        f'variants = [{{ model = "{data}-a", weight = 70 }}, {{ model = "{data}-b", weight = 30 }}]',
    ]
    if shadow:
        lines.insert(2, f'[[models]]\nname = "{data}-c"\nsource = "{PYMODELS}:{data}_b"\n')
        lines.append(f'shadow = [{{ model = "{data}-c", sample = 1.0 }}]')
    if log:
        lines.append(f"log = {{ {log} }}")
    if feedback:
        lines.append(f"feedback = {{ {feedback} }}")
    cfg.write_text("\n".join(lines) + "\n")
    return start_server([], tmp, ["--config", str(cfg)])


class Caller:
    def __init__(self, server: Server, endpoint: str) -> None:
        host, port = server.host_port.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.endpoint = endpoint

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, data, {"content-type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        is_json = r.getheader("content-type", "").startswith("application/json")
        return r.status, (json.loads(raw) if raw and is_json else {"text": raw.decode()})

    def infer(self, rows: np.ndarray, rid: str | None = None) -> dict:
        tensor = {
            "name": "input",
            "datatype": "FP64",
            "shape": list(rows.shape),
            "data": rows.ravel().tolist(),
        }
        doc: dict = {"inputs": [tensor]}
        if rid is not None:
            doc["id"] = rid
        status, body = self.request("POST", f"/v2/models/{self.endpoint}/infer", doc)
        assert status == 200, body
        return body

    def feedback(self, items: list) -> tuple[int, dict]:
        return self.request("POST", f"/v2/endpoints/{self.endpoint}/feedback", items)

    def show(self) -> dict:
        return self.request("GET", f"/v2/endpoints/{self.endpoint}")[1]

    def metrics(self) -> str:
        self.conn.request("GET", "/metrics")
        return self.conn.getresponse().read().decode()


def _output(body: dict, name: str) -> np.ndarray:
    out = next(o for o in body["outputs"] if o["name"] == name)
    return np.asarray(out["data"]).reshape(out["shape"])


def _send_all(
    c: Caller, X: np.ndarray, seed: int, prefix: str = "client"
) -> list[tuple[str, str, np.ndarray, dict]]:
    """Every row once, in requests of 1 to 3 rows; half the requests carry the client's
    own id, the rest get the server's. Returns (id, variant, row indices, body)."""
    order = np.random.default_rng(seed).permutation(len(X))
    sent, start, k = [], 0, 0
    while start < len(order):
        idx = order[start : start + 1 + k % 3]
        mine = f"{prefix}-{k}" if k % 2 else None
        body = c.infer(X[idx], mine)
        assert body["id"] == mine if mine else body["id"], body  # the server assigns and returns one
        sent.append((body["id"], body["model_name"], idx, body))
        start += len(idx)
        k += 1
    return sent


def _settled(c: Caller, rows: int) -> None:
    """Wait until the shadow has answered and compared every row."""
    deadline = time.monotonic() + 20
    while c.show()["shadows"][0]["compared"] < rows:
        assert time.monotonic() < deadline, c.show()
        time.sleep(0.05)


def _sample(metrics: str, name: str, labels: str) -> float:
    prefix = f"{name}{{{labels}"
    values = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, (name, labels)
    return values[0]


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    # scikit-learn 1.9 renamed y_pred to y_proba and warns about the old name.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return float(log_loss(y, proba, labels=[0, 1]))


def test_classifier_log_shadow_and_quality_equal_offline_computations(tmp_path: Path) -> None:
    data = load_breast_cancer()
    X, y = data.data, data.target
    logdir = tmp_path / "predictions"
    srv = serve(tmp_path, log=f'dir = "{logdir}", flush_s = 0.2', feedback=f"window = {WINDOW}")
    try:
        with Caller(srv, "cancer") as c:
            sent = _send_all(c, X, seed=3)
            _settled(c, len(X))
            # Labels arrive later and in another order; one unknown id, one repeated, one
            # wrong, one malformed.
            shuffled = [sent[i] for i in np.random.default_rng(4).permutation(len(sent))]
            # shuffled[1] gets only a wrong number of labels.
            items = [
                {"id": rid, "label": y[idx].tolist()} for rid, _, idx, _ in shuffled if rid != shuffled[1][0]
            ]
            items.insert(5, {"id": "never-seen", "label": 1})
            items.append({"id": shuffled[0][0], "label": y[shuffled[0][2]].tolist()})
            items.append({"id": shuffled[1][0], "label": [0] * (len(shuffled[1][2]) + 1)})
            items.append({"label": 1})
            status, result = c.feedback(items[:300])
            assert status == 200, result
            status, rest = c.feedback(items[300:])
            assert status == 200, rest
            shown = c.show()
            metrics = c.metrics()
    finally:
        stop_server(srv)

    # Every refused item is named, with why; everything else counted.
    errors = result["errors"] + rest["errors"]
    assert result["accepted"] + rest["accepted"] == len(sent) - 1  # shuffled[1] got a bad label
    assert len(errors) == 4
    assert errors[0]["index"] == 5 and "unknown id 'never-seen'" in errors[0]["error"]
    by_id = {e["id"]: e["error"] for e in errors}
    assert "already labelled" in by_id[shuffled[0][0]]
    assert "one label per row" in by_id[shuffled[1][0]]
    assert shown["feedback"]["refused"] == 4

    # The quality per variant equals scikit-learn's over that variant's last WINDOW rows,
    # in the order the labels came.
    labelled = [s for s in shuffled if s is not shuffled[1]]
    quality = shown["feedback"]["quality"]
    assert set(quality) == {"cancer-a", "cancer-b"}
    for variant, model in (("cancer-a", pymodels.cancer_a), ("cancer-b", pymodels.cancer_b)):
        idx = np.concatenate([i for _, v, i, _ in labelled if v == variant])[-WINDOW:]
        q = quality[variant]
        assert q["window"] == WINDOW and q["kind"] == "classifier"
        proba = model.predict_proba(X[idx])
        expect = {
            "accuracy": accuracy_score(y[idx], model.predict(X[idx])),
            "log_loss": _log_loss(y[idx], proba),
            "auc": roc_auc_score(y[idx], proba[:, 1]),
        }
        for metric, value in expect.items():
            assert q[metric] == pytest.approx(value, rel=1e-9), (variant, metric)
            labels = f'endpoint="cancer",metric="{metric}",variant="{variant}"'
            assert _sample(metrics, "mlrt_quality", labels) == pytest.approx(value, rel=1e-9)
    check_metrics(metrics)

    # The log: one row per answered row, under the id the client saw, with what it was told.
    table = read_log(logdir)
    primary = table.filter(pc.equal(table["role"], "primary"))
    assert primary.num_rows == len(X) and table.num_rows == 2 * len(X)
    assert shown["log"]["dropped"] == 0 and shown["log"]["lost"] == 0
    logged = {(r["id"], r["row"]): r for r in primary.to_pylist()}
    for rid, variant, idx, body in sent:
        labels_out = _output(body, "predict").ravel()
        for j in range(len(idx)):
            r = logged[(rid, j)]
            assert r["model"] == variant and r["endpoint"] == "cancer"
            assert r["input.input"] == X[idx[j]].tolist()
            assert r["output.predict"] == labels_out[j]
            assert r["output.predict_proba"] == pytest.approx(_output(body, "predict_proba")[j].tolist())

    # The shadow's agreement and abs-diff histogram, recomputed from the log alone.
    shadow_rows = {
        (r["id"], r["row"]): r for r in table.filter(pc.equal(table["role"], "shadow")).to_pylist()
    }
    assert set(shadow_rows) == set(logged)
    keys = sorted(logged)
    agreed = sum(logged[k]["output.predict"] == shadow_rows[k]["output.predict"] for k in keys)
    sh = shown["shadows"][0]
    assert sh["compared"] == len(keys) and sh["agreed"] == agreed
    diffs = np.abs(
        np.array([shadow_rows[k]["output.predict_proba"] for k in keys])
        - np.array([logged[k]["output.predict_proba"] for k in keys])
    ).ravel()
    for bound in ABS_DIFF_BUCKETS:
        labels = f'endpoint="cancer",le="{float(bound)!r}",shadow="cancer-c"'
        assert _sample(metrics, "mlrt_shadow_abs_diff_bucket", labels) == int((diffs <= bound).sum())


def test_regressor_quality_equals_scikit_learn(tmp_path: Path) -> None:
    data = load_diabetes()
    X, y = data.data, data.target
    srv = serve(tmp_path, data="diabetes", feedback="window = 100", shadow=False)
    try:
        with Caller(srv, "diabetes") as c:
            sent = _send_all(c, X, seed=5)
            status, result = c.feedback([{"id": rid, "label": y[idx].tolist()} for rid, _, idx, _ in sent])
            assert status == 200 and result["refused"] == 0, result
            quality = c.show()["feedback"]["quality"]
    finally:
        stop_server(srv)
    for variant, model in (("diabetes-a", pymodels.diabetes_a), ("diabetes-b", pymodels.diabetes_b)):
        idx = np.concatenate([i for _, v, i, _ in sent if v == variant])[-100:]
        q = quality[variant]
        assert q["kind"] == "regressor" and q["labelled"] == sum(
            len(i) for _, v, i, _ in sent if v == variant
        )
        assert q["mae"] == pytest.approx(mean_absolute_error(y[idx], model.predict(X[idx])), rel=1e-9)
        assert q["rmse"] == pytest.approx(root_mean_squared_error(y[idx], model.predict(X[idx])), rel=1e-9)


def test_text_labels_are_judged_by_each_models_own_classes(tmp_path: Path) -> None:
    # A classifier fitted on names answers them as BYTES, and its scores' columns follow its
    # classes (scikit-learn's classes_, the class labels skl2onnx writes into the ONNX graph):
    # labels sent as the same names are judged without listing the classes anywhere.
    from skl2onnx import to_onnx

    iris = load_iris()
    X, names = iris.data, iris.target_names[iris.target]
    exported = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X.astype(np.float32), names)
    onx = to_onnx(exported, X[:1].astype(np.float32), options={"zipmap": False})
    (tmp_path / "species.onnx").write_bytes(onx.SerializeToString())
    cfg = tmp_path / "species.toml"
    cfg.write_text(
        f'[[models]]\nname = "species-a"\nsource = "{PYMODELS}:species_a"\nfeedback = {{ window = 1000 }}\n'
        f'[[models]]\nname = "species-onnx"\nsource = "{tmp_path / "species.onnx"}"\n'
        "feedback = { window = 1000 }\n"
    )
    served = {  # model: (input, datatype, label output, scores output, classes)
        "species-a": ("input", "FP64", "predict", "predict_proba", list(pymodels.species_a.classes_)),
        "species-onnx": ("X", "FP32", "label", "probabilities", list(exported.classes_)),
    }
    srv = start_server([], tmp_path, ["--config", str(cfg)])
    try:
        with Caller(srv, "species") as c:
            got = {}
            for model, (name, datatype, *_) in served.items():
                sent = []
                for idx in np.array_split(np.random.default_rng(3).permutation(len(X)), 50):
                    tensor = {"name": name, "datatype": datatype, "shape": [len(idx), 4],
                              "data": X[idx].ravel().tolist()}  # fmt: skip
                    status, body = c.request("POST", f"/v2/models/{model}/infer", {"inputs": [tensor]})
                    assert status == 200, body
                    sent.append((idx, body))
                items = [{"id": body["id"], "label": names[idx].tolist()} for idx, body in sent]
                status, result = c.request("POST", f"/v2/models/{model}/feedback", items)
                assert status == 200 and result == {"accepted": 50, "refused": 0, "errors": []}, result
                # A label the model has no class for: named with the model's classes, and no
                # advice to list them in the settings (the model says them).
                tensor = {"name": name, "datatype": datatype, "shape": [1, 4], "data": X[0].tolist()}
                rid = c.request("POST", f"/v2/models/{model}/infer", {"inputs": [tensor]})[1]["id"]
                status, result = c.request("POST", f"/v2/models/{model}/feedback", [{"id": rid, "label": 1}])
                error = result["errors"][0]["error"]
                assert "not among the model's classes" in error and "classes = [...]" not in error, error
                status, body = c.request("GET", f"/v2/models/{model}/feedback")
                got[model] = (sent, body["feedback"]["quality"][model])
    finally:
        stop_server(srv)
    for model, (_, _, label, scores, classes) in served.items():
        sent, q = got[model]
        y = np.concatenate([names[idx] for idx, _ in sent])
        predicted = np.concatenate([_output(body, label) for _, body in sent])
        proba = np.concatenate([_output(body, scores) for _, body in sent])
        if served[model][1] == "FP32":  # the float32 scores the server held, as float64
            proba = proba.astype(np.float32).astype(np.float64)
        assert q["labelled"] == len(X) and set(predicted) <= set(classes)
        assert q["accuracy"] == pytest.approx(accuracy_score(y, predicted), rel=1e-12)
        with warnings.catch_warnings():  # float32 rows sum to 1 only within float32's precision
            warnings.filterwarnings("ignore", "The y_prob values do not sum to one", UserWarning)
            expected = log_loss(y, proba, labels=classes)
        assert q["log_loss"] == pytest.approx(expected, rel=1e-9)
        assert q["auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", labels=classes), rel=1e-9)


def test_feedback_is_refused_clearly_and_the_server_stays_up(tmp_path: Path) -> None:
    srv = serve(tmp_path, shadow=False)  # no feedback settings
    try:
        with Caller(srv, "cancer") as c:
            status, body = c.feedback([{"id": "x", "label": 1}])
            assert status == 400 and "takes no feedback" in body["error"] and "feedback = {" in body["error"]
            status, body = c.request("POST", "/v2/endpoints/nope/feedback", [])
            assert status == 404 and "no endpoint 'nope'" in body["error"]
            c.infer(load_breast_cancer().data[:1])
    finally:
        stop_server(srv)
    srv = serve(tmp_path, shadow=False, feedback="window = 10")
    try:
        with Caller(srv, "cancer") as c:
            status, body = c.request("POST", "/v2/endpoints/cancer/feedback", {"id": "x", "label": 1})
            assert status == 400 and "must be a list" in body["error"]
            status, body = c.feedback([{"id": "x"}, "nonsense", {"id": 3, "label": 1}])
            assert status == 200 and body["accepted"] == 0 and body["refused"] == 3
            assert all('"id": "<request id>"' in e["error"] for e in body["errors"])
            rid = c.infer(load_breast_cancer().data[:1])["id"]
            status, body = c.feedback([{"id": rid, "label": "malignant"}])
            error = body["errors"][0]["error"]
            assert body["refused"] == 1 and "not among the model's classes [0, 1]" in error
            status, body = c.feedback([{"id": rid, "label": 1}])  # the refused label did not use the id up
            assert body["accepted"] == 1, body
            # A client's id sent twice: neither answer is joined, and the reuse is counted.
            rows = load_breast_cancer().data
            c.infer(rows[:1], rid="order-77")
            c.infer(rows[1:2], rid="order-77")
            status, body = c.feedback([{"id": "order-77", "label": 0}])
            assert body["refused"] == 1 and "answered more than once" in body["errors"][0]["error"]
            assert c.show()["feedback"]["reused_ids"] == 1
            assert "mlrt_feedback_reused_ids_total{endpoint=\"cancer\"} 1.0" in c.metrics()
    finally:
        stop_server(srv)


def test_a_killed_servers_open_log_is_recovered_at_the_next_start(tmp_path: Path) -> None:
    X = load_breast_cancer().data
    logdir = tmp_path / "predictions"
    settings = f'dir = "{logdir}", flush_s = 0.1, rotate_s = 3600'
    srv = serve(tmp_path, log=settings, shadow=False)
    try:
        with Caller(srv, "cancer") as c:
            ids = [c.infer(X[i : i + 1])["id"] for i in range(100)]
            deadline = time.monotonic() + 10
            while c.show()["log"]["written"] < 100:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        srv.process.send_signal(signal.SIGKILL)
        srv.process.wait(10)
    open_files = list(logdir.rglob("*.arrows"))
    assert open_files and not list(logdir.rglob("*.parquet"))  # killed: nothing was closed
    srv = serve(tmp_path, log=settings, shadow=False)
    try:
        deadline = time.monotonic() + 10
        while list(logdir.rglob("*.arrows")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop_server(srv)
    table = read_log(logdir)
    assert sorted(table["id"].to_pylist()) == sorted(ids)


def test_a_model_called_by_its_own_name_logs_and_takes_feedback(tmp_path: Path) -> None:
    """No endpoint: a [[models]] table with log and feedback records the model's answers
    when it is called by its name, with or without a version."""
    data = load_breast_cancer()
    X, y = data.data, data.target
    logdir = tmp_path / "predictions"
    cfg = tmp_path / "model.toml"
    cfg.write_text(
        f"""
[[models]]
name = "cancer"
source = "{PYMODELS}:cancer_a"
log = {{ dir = "{logdir}", flush_s = 0.2 }}
feedback = {{ window = {WINDOW} }}

[[models]]
name = "plain"
source = "{PYMODELS}:cancer_b"
"""
    )
    srv = start_server([], tmp_path, ["--config", str(cfg)])
    try:
        with Caller(srv, "cancer") as c:
            sent = _send_all(c, X[:200], seed=6)
            c.endpoint = "cancer/versions/1"
            later = _send_all(c, X[200:], seed=7, prefix="versioned")
            sent += [(rid, variant, idx + 200, body) for rid, variant, idx, body in later]
            labels = [{"id": rid, "label": y[idx].tolist()} for rid, _, idx, _ in sent]
            status, result = c.request("POST", "/v2/models/cancer/feedback", labels)
            assert status == 200 and result["accepted"] == len(sent) and result["refused"] == 0, result
            status, shown = c.request("GET", "/v2/models/cancer/feedback")
            assert status == 200, shown
            # A model that records nothing says what to add; an unknown one is not found.
            status, body = c.request("POST", "/v2/models/plain/feedback", [{"id": "x", "label": 1}])
            assert status == 400 and "[[models]] table" in body["error"], body
            status, body = c.request("POST", "/v2/models/nope/feedback", [])
            assert status == 404 and "no model 'nope'" in body["error"], body
            # Called by its own name, it is no variant of anything: no mlrt-variant header.
            tensor = {"name": "input", "datatype": "FP64", "shape": [1, 30], "data": X[0].tolist()}
            c.conn.request("POST", "/v2/models/cancer/infer", json.dumps({"inputs": [tensor], "id": "probe"}))
            r = c.conn.getresponse()
            r.read()
            assert r.status == 200 and r.getheader("mlrt-variant") is None
            metrics = c.metrics()
            deadline = time.monotonic() + 10
            while c.request("GET", "/v2/models/cancer/feedback")[1]["log"]["written"] < len(X) + 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        stop_server(srv)
    assert shown["model"] == "cancer"
    q = shown["feedback"]["quality"]["cancer"]
    idx = np.concatenate([i for _, _, i, _ in sent])[-WINDOW:]
    model = pymodels.cancer_a
    assert q["accuracy"] == pytest.approx(accuracy_score(y[idx], model.predict(X[idx])), rel=1e-9)
    assert q["auc"] == pytest.approx(roc_auc_score(y[idx], model.predict_proba(X[idx])[:, 1]), rel=1e-9)
    labels = 'endpoint="cancer",metric="accuracy",variant="cancer"'
    assert _sample(metrics, "mlrt_quality", labels) == pytest.approx(q["accuracy"], rel=1e-9)
    assert "mlrt_endpoint_requests_total{" not in metrics  # it routes nothing
    check_metrics(metrics)
    table = read_log(logdir)
    assert sorted(set(table["id"].to_pylist())) == sorted([*(rid for rid, _, _, _ in sent), "probe"])
    assert set(table["endpoint"].to_pylist()) == {"cancer"} and set(table["model"].to_pylist()) == {"cancer"}
    assert table.num_rows == len(X) + 1
