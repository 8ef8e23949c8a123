"""Train a model for the example pipeline: breast-cancer data (it ships with
scikit-learn), a fixed split, exported to ONNX.

    python train.py WORKDIR --kind tree|logistic

Writes WORKDIR/train.parquet and WORKDIR/test.parquet (30 features and `malignant`) once,
and WORKDIR/<kind>.onnx. `tree` is a one-split decision tree (the weak model the pipeline
starts from), `logistic` a scaled logistic regression (the better candidate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

MODELS = {
    "tree": lambda: DecisionTreeClassifier(max_depth=1, random_state=0),
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--kind", choices=sorted(MODELS), required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    data = load_breast_cancer()
    X = data.data.astype(np.float32)  # the model takes float32, as served
    y = (data.target == 0).astype(np.int64)  # scikit-learn's target is 0 for malignant: 1 here
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    names = [n.replace(" ", "_") for n in data.feature_names]
    for split, rows in (("train", train), ("test", test)):
        path = args.workdir / f"{split}.parquet"
        if not path.exists():
            table = pa.table({**{n: X[rows, i] for i, n in enumerate(names)}, "malignant": y[rows]})
            pq.write_table(table, path)

    model = MODELS[args.kind]().fit(X[train], y[train])
    # Class scores as a [rows, 2] tensor (not a list of dicts): what mlrt's gate reads.
    no_zipmap = {LogisticRegression: {"zipmap": False}, DecisionTreeClassifier: {"zipmap": False}}
    onnx = to_onnx(model, X[:1], options=no_zipmap)
    (args.workdir / f"{args.kind}.onnx").write_bytes(onnx.SerializeToString())
    print(f"trained {args.kind}: {args.workdir / (args.kind + '.onnx')}")


if __name__ == "__main__":
    main()
