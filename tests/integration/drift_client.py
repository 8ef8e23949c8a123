"""Helpers for the drift tests: V2 infer over JSON or binary tensors, /metrics bin
counters as arrays, and the numpy oracle's counts of the same rows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from runtime.monitor import _reference as ref
from runtime.monitor.profile import CATEGORICAL, FeatureProfile

DATATYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "BYTES": object,
}
V2_NAME = {np.dtype(v): k for k, v in DATATYPES.items() if v is not object}


def infer(
    client: httpx.Client,
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    binary: bool = False,
    binary_out: bool = False,
) -> dict[str, np.ndarray]:
    """POST /v2/models/{model}/infer; the outputs as numpy arrays.

    binary: numeric inputs go as binary tensor data (V2 binary extension).
    binary_out: ask for the outputs as binary data.
    """
    header: dict[str, Any] = {"inputs": []}
    blobs: list[bytes] = []
    for name, arr in inputs.items():
        if arr.dtype == object:
            entry = {"name": name, "shape": list(arr.shape), "datatype": "BYTES"}
            entry["data"] = [v.decode() if isinstance(v, bytes) else v for v in arr.ravel().tolist()]
        else:
            entry = {"name": name, "shape": list(arr.shape), "datatype": V2_NAME[arr.dtype]}
            if binary:
                blob = np.ascontiguousarray(arr).tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = arr.ravel().tolist()
        header["inputs"].append(entry)
    if binary_out:
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header).encode()  # Python's json writes NaN, which the server accepts
    headers = {"Content-Type": "application/json"}
    if blobs:
        headers["Inference-Header-Content-Length"] = str(len(head))
    resp = client.post(f"/v2/models/{model}/infer", content=head + b"".join(blobs), headers=headers)
    assert resp.status_code == 200, resp.text
    return decode_response(resp)


def decode_response(resp: httpx.Response) -> dict[str, np.ndarray]:
    body = resp.content
    length = resp.headers.get("Inference-Header-Content-Length")
    head_len = int(length) if length is not None else len(body)
    doc = json.loads(body[:head_len])
    out: dict[str, np.ndarray] = {}
    pos = head_len
    for o in doc["outputs"]:
        dtype = DATATYPES[o["datatype"]]
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            assert dtype is not object
            arr = np.frombuffer(body[pos : pos + size], dtype=dtype).copy()
            pos += size
        else:
            arr = np.array(o["data"], dtype=dtype)
        out[o["name"]] = arr.reshape(o["shape"])
    return out


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def bin_totals(text: str, model: str, section: str = "features") -> dict[str, np.ndarray]:
    """`mlrt_feature_bin_total` (or `mlrt_prediction_bin_total`) of one model, per
    feature, as count arrays in slot order (bins "0", "1", ..., then "missing")."""
    if section == "features":
        metric, label = "mlrt_feature_bin_total", "feature"
    else:
        metric, label = "mlrt_prediction_bin_total", "output"
    found: dict[str, dict[str, float]] = {}
    for name, labels, value in metric_samples(text):
        if name == metric and labels.get("model") == model:
            found.setdefault(labels[label], {})[labels["bin"]] = value
    out = {}
    for feature, by_bin in found.items():
        assert "missing" in by_bin, by_bin
        n = len(by_bin) - 1
        assert sorted(k for k in by_bin if k != "missing") == sorted(str(i) for i in range(n)), by_bin
        values = [by_bin[str(i)] for i in range(n)] + [by_bin["missing"]]
        assert all(float(v).is_integer() for v in values)
        out[feature] = np.array(values, dtype=np.int64)
    return out


def gauge(text: str, metric: str, **labels: str) -> float:
    hits = [
        v
        for name, lab, v in metric_samples(text)
        if name == metric and all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(hits) == 1, (metric, labels, hits)
    return hits[0]


def oracle_counts(features: Sequence[FeatureProfile], columns: Sequence[Any]) -> dict[str, np.ndarray]:
    """Per feature, the oracle's counts of `columns[j]` (one column per feature)."""
    out = {}
    for f, col in zip(features, columns, strict=True):
        if f.kind == CATEGORICAL:
            out[f.name] = ref.count_levels(list(col), f.levels)
        else:
            out[f.name] = ref.count_numeric(np.asarray(col, dtype=np.float64), [np.asarray(f.edges)])
    return out


def columns_of(*tensors: np.ndarray) -> list[np.ndarray]:
    """The columns of tensors in signature order: [-1, k] gives k columns, [-1] one."""
    cols: list[np.ndarray] = []
    for t in tensors:
        t = t.reshape(t.shape[0], -1)
        cols.extend(t[:, k] for k in range(t.shape[1]))
    return cols
