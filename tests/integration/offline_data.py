"""Real data and a real model for the Spark and Dask batch-scoring tests, and the
single-process scoring they are held to.

scikit-learn's bundled handwritten digits (1,797 rows of 64 pixel intensities, 0-16), a
logistic regression fitted on the first 1,000 rows and exported with skl2onnx (input `X`
FP32 [-1, 64]; outputs `label` INT64 and `probabilities` FP32 [-1, 10]), and a profile
fitted for the model on those rows (`mlrt profile --model`'s path). The rows scored are
every image twice, as it is and then brightened by two levels (clipped at 16): 3,594 rows
with an `id`, half of them shifted, so that the drift counts and report are not trivial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import runtime
from runtime.model_profile import fit_for_model
from runtime.offline import BatchScorer, ScorerSpec

PIXELS = [f"px{j}" for j in range(64)]


@dataclass
class Digits:
    model: Path  # the classifier above
    other: Path  # a second classifier (another regularization): a registry's next version
    profile: Path
    table: pa.Table  # id, then the 64 pixels as float64


def digits(folder: Path) -> Digits:
    import skl2onnx
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    data = load_digits()
    X, y = data.data, data.target
    paths = []
    for name, C in (("digits.onnx", 1.0), ("digits-v2.onnx", 0.001)):
        clf = LogisticRegression(C=C, max_iter=500).fit(X[:1000], y[:1000])
        onx = skl2onnx.to_onnx(clf, X[:1].astype(np.float32), options={"zipmap": False})
        (folder / name).write_bytes(onx.SerializeToString())
        paths.append(folder / name)
    with runtime.load(str(paths[0])) as m:
        fit_for_model(m, {n: X[:1000, j] for j, n in enumerate(PIXELS)}).save(folder / "ref.json")
    rows = np.vstack([X, np.minimum(X + 2, 16)])
    table = pa.table({"id": np.arange(len(rows), dtype=np.int64) * 7 + 3,
                      **{n: rows[:, j] for j, n in enumerate(PIXELS)}})  # fmt: skip
    return Digits(model=paths[0], other=paths[1], profile=folder / "ref.json", table=table)


def single_process(table: pa.Table, spec: ScorerSpec, batch_rows: int = 500) -> tuple[pa.Table, BatchScorer]:
    """What one process gives: the scored rows, in the table's order, and its scorer (for
    `drift_counts()` and `drift_report()`)."""
    scorer = spec.build()
    read = scorer.check(table.schema)
    scored = [scorer.score(b) for b in table.select(read).to_batches(max_chunksize=batch_rows)]
    return pa.Table.from_batches(scored, schema=scorer.output_schema(table.schema)), scorer


def assert_counts_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys() == {"features", "outputs"}
    for section in want:
        assert got[section].dtype == np.int64
        np.testing.assert_array_equal(got[section], want[section], err_msg=section)
