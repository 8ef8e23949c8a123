"""mlrt: low-latency model serving with inline drift monitoring.

Import name `runtime`, distribution name `mlrt`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Histogram", "LocalModel", "Profile", "__version__", "load", "predict_files", "psi"]

# Drift names resolve on first use so `import runtime` (and `mlrt --help`)
# does not load numpy or the native kernels.
_LAZY = {
    "Histogram": "runtime.monitor",
    "Profile": "runtime.monitor",
    "psi": "runtime.monitor",
    "load": "runtime.embedded",
    "LocalModel": "runtime.embedded",
    "predict_files": "runtime.offline",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
