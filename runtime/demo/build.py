"""Rebuild the demo model and data from scikit-learn's bundled breast cancer data set
(Wisconsin Diagnostic Breast Cancer, 569 rows x 30 features; UCI ML repository).

    python -m runtime.demo.build [DIR]    # needs the `test` extra (scikit-learn, onnx)

Writes model.onnx (a 30-16-2 MLP, input standardization folded into the first layer),
data.npz (features, labels, feature names, and the row split used for training) and
profile.json (the reference profile: the training rows and the model's outputs on them)
into DIR, by default the package's own folder (runtime/demo/). Deterministic: the same
inputs give the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def main(out: Path = HERE) -> float:
    """Build the three files into `out`; returns the model's held-out accuracy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier

    data = load_breast_cancer()
    X = data.data.astype(np.float64)
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(7)
    order = rng.permutation(len(X))
    train = np.sort(order[: int(0.7 * len(X))])
    mu, sd = X[train].mean(axis=0), X[train].std(axis=0)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0)
    clf.fit((X[train] - mu) / sd, y[train])

    # Fold (x - mu) / sd into the first layer: x @ (W / sd) + (b - (mu / sd) @ W).
    w0, w1 = clf.coefs_
    b0, b1 = clf.intercepts_
    w0f = w0 / sd[:, None]
    b0f = b0 - (mu / sd) @ w0
    # MLPClassifier has one logistic output unit for two classes: turn it into two logits.
    w1f = np.concatenate([np.zeros_like(w1), w1], axis=1)
    b1f = np.concatenate([[0.0], b1])
    f32 = np.float32
    inits = [
        numpy_helper.from_array(w0f.astype(f32), "W0"),
        numpy_helper.from_array(b0f.astype(f32), "B0"),
        numpy_helper.from_array(w1f.astype(f32), "W1"),
        numpy_helper.from_array(b1f.astype(f32), "B1"),
    ]
    nodes = [
        helper.make_node("Gemm", ["features", "W0", "B0"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "W1", "B1"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    n = X.shape[1]
    graph = helper.make_graph(
        nodes,
        "breast_cancer_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mlrt.demo.build"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(out / "model.onnx"))
    np.savez_compressed(
        out / "data.npz",
        features=X.astype(np.float32),
        labels=y,
        feature_names=np.array([str(s) for s in data.feature_names]),
        train_rows=train,
    )
    test = np.setdiff1d(np.arange(len(X)), train)
    acc = (clf.predict((X[test] - mu) / sd) == y[test]).mean()
    build_profile(out)
    print(f"wrote {out / 'model.onnx'}, data.npz and profile.json; held-out accuracy {acc:.3f}")
    return float(acc)


def build_profile(out: Path = HERE) -> None:
    """The reference profile, as `mlrt profile --model` fits it: the training rows in the
    model's float32, and the model's outputs on them (probabilities[0], probabilities[1],
    label)."""
    from runtime.embedded import load
    from runtime.model_profile import fit_for_model

    with np.load(out / "data.npz") as d:
        X, names, train = d["features"], [str(n) for n in d["feature_names"]], d["train_rows"]
    with load(str(out / "model.onnx")) as model:
        profile = fit_for_model(model, {n: X[train, j] for j, n in enumerate(names)}, bins=10)
    profile.save(out / "profile.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
