"""The load generator behind `mlrt bench`: raw HTTP/1.1 keep-alive connections on uvloop,
pre-encoded requests, open- and closed-loop drivers, log-linear latency histograms that
merge across generator processes. docs/bench.md describes the method and the output.

    from runtime.loadgen import LoadSpec, run_load
    spec = LoadSpec(host="127.0.0.1", port=8000, requests=(raw_request,), duration_s=10, rate=2000)
    result = run_load(spec)              # RunResult
    result.summary()["latency_ms"]["p99"]

Modules: histogram (Histogram), connection (the protocol), payload (inputs and encodings),
open / closed (the drivers), runner (processes, sweep), result (RunResult), report (rich
tables and the live line), plot (matplotlib, optional).
"""

from __future__ import annotations

from ._base import LoadSpec
from .connection import request_bytes
from .histogram import Histogram
from .result import RunResult
from .runner import SweepResult, run_load, sweep

__all__ = ["Histogram", "LoadSpec", "RunResult", "SweepResult", "request_bytes", "run_load", "sweep"]
