"""Python models for tests/integration/test_datatypes.py, served as
`name=tests.integration.dtype_models:obj`."""

from __future__ import annotations

import numpy as np


def seen(x: np.ndarray) -> dict[str, np.ndarray]:
    """Echoes its FP32 input and says, per row, which numpy dtype it was called with."""
    return {"y": x, "dtype": np.array([[x.dtype.str]] * len(x))}


seen.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]
seen.outputs = [  # type: ignore[attr-defined]
    {"name": "y", "datatype": "FP32", "shape": [-1, 2]},
    {"name": "dtype", "datatype": "BYTES", "shape": [-1, 1]},
]
