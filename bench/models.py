"""Small ONNX models built in code, for benchmarks and tests (needs `onnx`).

mlp(): the bench MLP, 20 FP32 features -> 64 -> 32 -> 2 class probabilities,
with fixed random weights so runs are comparable.
two_io(): two inputs of different datatypes (FP32 and INT64) and two outputs.
slow_sum: a Python model (serve it as `bench.models:slow_sum`) that takes ~1 ms.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def _save(model, path: str | Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _opset():
    from onnx import helper

    return [helper.make_opsetid("", 17)]


def mlp(path: str | Path, n_features: int = 20, hidden=(64, 32), n_classes: int = 2, seed: int = 0) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    sizes = [n_features, *hidden, n_classes]
    nodes, inits = [], []
    prev = "input"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(bias, f"B{i}")]
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [out]))
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [out], [out + "r"]))
            out += "r"
        prev = out
    nodes.append(helper.make_node("Softmax", [prev], ["output"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_classes])],
        inits,
    )
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


def two_io(path: str | Path) -> Path:
    """sum = rowsum(x) + n (FP32 [-1,1]); twice = 2 * n (INT64 [-1,1])."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["xs"], keepdims=1),
        helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["xs", "nf"], ["sum"]),
        helper.make_node("Mul", ["n", "two"], ["twice"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(2, np.int64), "two"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_io",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("twice", TensorProto.INT64, ["batch", 1]),
        ],
        inits,
    )
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


def strings(path: str | Path) -> Path:
    """BYTES in, BYTES out: identity over a string tensor."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", 1])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch", 1])],
    )
    return _save(helper.make_model(graph, opset_imports=_opset()), path)


def slow_sum(x: np.ndarray) -> np.ndarray:
    time.sleep(0.001)  # slower than the client's polling budget, as a larger model would be
    return x.sum(axis=1, keepdims=True)


slow_sum.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 20]}]  # type: ignore[attr-defined]
slow_sum.outputs = [{"name": "total", "datatype": "FP32", "shape": [-1, 1]}]  # type: ignore[attr-defined]


def sleepy_shadow(input: np.ndarray) -> np.ndarray:
    """A shadow that hangs: one second per call on real rows (bench/shadow.py). The server
    calibrates on zero rows, answered at once so that start-up takes no minute; serve it
    with `inline_max_us = 0` so the batcher never trusts that calibration."""
    if np.any(input):
        time.sleep(1.0)
    return np.full((input.shape[0], 2), 0.5, dtype=np.float32)


sleepy_shadow.inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, 20]}]  # type: ignore[attr-defined]
sleepy_shadow.outputs = [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]


def trees(path: str | Path, n_features: int = 20, n_trees: int = 100, depth: int = 6, seed: int = 0) -> Path:
    """A gradient-boosted-trees regressor as onnxruntime runs one (ai.onnx.ml
    TreeEnsembleRegressor): n_trees complete trees of `depth` splits on random features
    and thresholds, 20 FP32 features -> one FP32 score [batch, 1]."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    attrs: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
        "nodes_truenodeids", "nodes_falsenodeids", "target_treeids", "target_nodeids",
        "target_ids", "target_weights",
    )}  # fmt: skip
    inner = 2**depth - 1
    for t in range(n_trees):
        for node in range(2 * inner + 1):
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(node)
            if node < inner:  # a split: node's children are 2n+1 and 2n+2
                attrs["nodes_featureids"].append(int(rng.integers(n_features)))
                attrs["nodes_values"].append(float(rng.standard_normal()))
                attrs["nodes_modes"].append("BRANCH_LEQ")
                attrs["nodes_truenodeids"].append(2 * node + 1)
                attrs["nodes_falsenodeids"].append(2 * node + 2)
            else:
                attrs["nodes_featureids"].append(0)
                attrs["nodes_values"].append(0.0)
                attrs["nodes_modes"].append("LEAF")
                attrs["nodes_truenodeids"].append(0)
                attrs["nodes_falsenodeids"].append(0)
                attrs["target_treeids"].append(t)
                attrs["target_nodeids"].append(node)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(0.1 * rng.standard_normal()))
    node = helper.make_node(
        "TreeEnsembleRegressor", ["input"], ["score"], domain="ai.onnx.ml", n_targets=1,
        aggregate_function="SUM", post_transform="NONE", **attrs,
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "trees",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
    )
    opsets = [*_opset(), helper.make_opsetid("ai.onnx.ml", 3)]
    return _save(helper.make_model(graph, opset_imports=opsets), path)
