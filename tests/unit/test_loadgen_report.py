"""What `mlrt bench` reports (runtime/loadgen/result.py and report.py), from results built
here with known samples: the summary's percentiles against numpy's sorted samples (within
the histogram's stated error) and, for samples where the histogram is exact, against
hand-computed values; throughput, rows/s and the error breakdown by hand; merging and the
state that crosses processes; then the same figures as the tables and the live progress
line print them.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import pytest
from rich.console import Console

from runtime.loadgen import report
from runtime.loadgen.result import CURVE, PERCENTILES, RunResult
from runtime.loadgen.runner import SweepResult

# Two latencies the histogram reports exactly (7 sub-bucket bits): V1 is the last value of
# its bucket [2**20, 2**20 + 8192), whose midpoint is below it, and V2 = 2**28 the first of
# its bucket, whose midpoint is above it; as the min and the max, both are clamped to exact.
V1 = 2**20 + 8191  # 1.056767 ms
V2 = 2**28  # 268.435456 ms


def known_result(mode: str = "closed") -> RunResult:
    """95 answers of V1 and 5 of V2 in 2 s, and 6 errors of three kinds."""
    r = RunResult(mode=mode, duration_s=2.0)
    r.latency.record_many([V1] * 95 + [V2] * 5)
    r.statuses = {"timeout": 2, "200": 90, "503": 3, "204": 10, "connection_error": 1}
    if mode == "open":
        r.offered_rps = 55.0
        r.send_lag.record_many([0] * 90 + [2_000_000] * 10)
        r.delayed = 7
    else:
        r.concurrency = 4
    r.connections = 4
    return r


def nearest_rank(values: np.ndarray, ps: list[float]) -> np.ndarray:
    s = np.sort(values)
    ranks = [max(1, math.ceil(Fraction(str(p)) * len(s) / 100)) for p in ps]
    return s[np.array(ranks) - 1]


# -- the summary ---------------------------------------------------------------------------


def test_summary_of_known_samples_by_hand() -> None:
    s = known_result().summary(batch_size=4)
    assert (s["mode"], s["concurrency"], s["offered_rps"], s["processes"]) == ("closed", 4, None, 1)
    assert s["duration_s"] == 2.0
    assert (s["requests"], s["ok"]) == (106, 100)
    assert s["throughput_rps"] == 53.0 and s["ok_rps"] == 50.0
    assert s["rows_per_s"] == 200.0  # 50 answers/s of 4 rows
    assert s["statuses"] == {"200": 90, "204": 10, "503": 3, "connection_error": 1, "timeout": 2}
    assert list(s["statuses"]) == sorted(s["statuses"])
    assert s["errors"] == {"503": 3, "connection_error": 1, "timeout": 2}
    assert s["error_count"] == 6
    lat = s["latency_ms"]
    # Nearest rank of 100 samples: the 50th, 90th, 99th, 100th (for 99.9) sorted sample.
    assert (lat["p50"], lat["p90"], lat["p99"], lat["p99.9"]) == (V1 / 1e6, V1 / 1e6, V2 / 1e6, V2 / 1e6)
    assert (lat["min"], lat["max"]) == (1.056767, 268.435456)
    assert lat["mean"] == pytest.approx((95 * V1 + 5 * V2) / 100 / 1e6, rel=1e-12)
    assert "send_lag_ms" not in s and "delayed_sends" not in s


def test_summary_of_an_open_loop_run() -> None:
    s = known_result("open").summary()
    assert s["offered_rps"] == 55.0 and s["delayed_sends"] == 7
    # 90 sends on time, 10 two milliseconds late: p50 0, p99 and max 2 ms.
    assert s["send_lag_ms"] == {"p50": 0.0, "p99": 2.0, "max": 2.0}


@pytest.mark.parametrize("seed", [0, 1])
def test_summary_percentiles_against_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.rint(rng.lognormal(np.log(2e6), 0.8, 20_000)).astype(np.int64)  # around 2 ms, in ns
    r = RunResult(mode="closed", duration_s=4.0, statuses={"200": len(values)})
    r.latency.record_many(values)
    s = r.summary()
    got = [s["latency_ms"][k] for k in ("p50", "p90", "p99", "p99.9")]
    want = nearest_rank(values, list(PERCENTILES)) / 1e6
    np.testing.assert_allclose(got, want, rtol=r.latency.relative_error)
    assert s["latency_ms"]["min"] == values.min() / 1e6 and s["latency_ms"]["max"] == values.max() / 1e6
    assert s["latency_ms"]["mean"] == pytest.approx(values.mean() / 1e6, rel=1e-9)
    assert s["ok_rps"] == 5000.0
    # The percentile curve: 0 to 99.999 in tenths of a "nine", rising, each within the error.
    curve = s["percentile_curve_ms"]
    assert [p for p, _ in curve] == [round(p, 4) for p in CURVE]
    assert curve[0][0] == 0.0 and curve[-1][0] == 99.999
    assert all(a[1] <= b[1] for a, b in zip(curve[:-1], curve[1:], strict=True))
    np.testing.assert_allclose(
        [v for _, v in curve], nearest_rank(values, list(CURVE)) / 1e6, rtol=r.latency.relative_error
    )
    assert "percentile_curve_ms" not in r.summary(curve=False)


def test_summary_of_an_empty_run() -> None:
    s = RunResult(mode="closed", duration_s=0.0).summary()
    assert (s["requests"], s["ok"], s["ok_rps"], s["error_count"]) == (0, 0, 0.0, 0)
    assert set(s["latency_ms"].values()) == {0.0}


def test_merge_adds_processes_up() -> None:
    a, b = known_result(), known_result()
    b.latency.record_many([V1] * 10)
    b.statuses["200"] += 10
    b.duration_s = 2.5
    a.merge(b)
    assert a.statuses["200"] == 190 and a.statuses["timeout"] == 4
    assert a.latency.total == 210 and a.latency.min == V1 and a.latency.max == V2
    assert (a.concurrency, a.connections, a.processes, a.duration_s) == (8, 8, 2, 2.5)


def test_state_round_trip() -> None:
    r = known_result("open")
    back = RunResult.from_state(r.to_state())
    assert back.summary() == r.summary()
    assert back.delayed == 7 and back.send_lag.total == 100


# -- the tables ----------------------------------------------------------------------------


def printed(fn, *args: object) -> str:  # type: ignore[no-untyped-def]
    console = Console(file=io.StringIO(), width=160, color_system=None)
    fn(console, *args)
    return console.file.getvalue()  # type: ignore[attr-defined]


def row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    rows = [
        [c.strip() for c in ln.strip().strip("│").split("│")]
        for ln in text.splitlines()
        if ln.startswith("│")
    ]
    (cells,) = [r for r in rows if r[0] == first]
    return cells[1:]


def test_result_table_of_a_closed_loop_run() -> None:
    out = printed(report.print_result, "the title", known_result().summary(batch_size=4))
    assert "the title" in out
    assert row(out, "concurrency") == ["4"] and "offered rate" not in out
    assert row(out, "duration") == ["2.0 s"]
    assert row(out, "requests") == ["106"]
    assert row(out, "throughput (2xx)") == ["50.0 req/s  (200 rows/s)"]
    assert row(out, "errors") == ["503: 3, connection_error: 1, timeout: 2"]
    # Below 100 ms three decimals, from 100 ms one.
    assert row(out, "latency p50") == row(out, "latency p90") == ["1.057 ms"]
    assert row(out, "latency p99") == row(out, "latency p99.9") == row(out, "latency max") == ["268.4 ms"]
    assert row(out, "connections") == ["4"]
    assert "send lag" not in out


def test_result_table_of_an_open_loop_run() -> None:
    out = printed(report.print_result, "t", known_result("open").summary())
    assert row(out, "offered rate") == ["55.0 req/s"] and " concurrency " not in out
    assert row(out, "send lag p50 / p99") == ["0.000 / 2.000 ms"]
    assert row(out, "sends that waited for a connection") == ["7"]


def test_result_table_without_errors() -> None:
    r = RunResult(mode="closed", duration_s=1.0, statuses={"200": 1}, concurrency=1)
    r.latency.record(1_234_567_890)  # 1,234.6 ms
    out = printed(report.print_result, "t", r.summary())
    assert row(out, "errors") == ["none"]
    assert row(out, "latency p50") == ["1,234.6 ms"]


def sweep_result(sustainable: float | None) -> SweepResult:
    fast, slow = RunResult(mode="open", duration_s=2.0), RunResult(mode="open", duration_s=2.0)
    fast.statuses, slow.statuses = {"200": 200}, {"200": 396, "503": 4}
    fast.latency.record_many([V1] * 200)
    slow.latency.record_many([V1] * 196 + [V2] * 200)
    fast.offered_rps, slow.offered_rps = 100.0, 200.0
    return SweepResult(5.0, 0.001, [(100.0, fast), (200.0, slow)], sustainable, "because", 150.0)


def test_sweep_table() -> None:
    out = printed(report.print_sweep, sweep_result(100.0), 1)
    assert "sweep: p99 target 5 ms" in out
    # offered, achieved (2xx/s), p50, p99, p99.9, errors, verdict
    assert row(out, "100") == ["100", "1.057", "1.057", "1.057", "0", "ok"]
    assert row(out, "200") == ["198", "268.4", "268.4", "268.4", "4", "over"]
    assert "highest sustainable rate: 100 req/s (p99 <= 5 ms); stopped because because" in out


def test_sweep_table_when_no_rate_passed() -> None:
    out = printed(report.print_sweep, sweep_result(None), 1)
    assert "no rate met the target; because" in out and "highest" not in out


def test_sweep_summary() -> None:
    sw = sweep_result(100.0)
    doc = report.sweep_summary(sw, 2)
    assert doc["slo_ms"] == 5.0 and doc["max_error_rate"] == 0.001
    assert doc["sustainable_rps"] == 100.0 and doc["capacity_probe_rps"] == 150.0
    assert doc["stopped_because"] == "because"
    assert [(st["offered_rps"], st["passed"]) for st in doc["steps"]] == [(100.0, True), (200.0, False)]
    assert doc["steps"][0]["rows_per_s"] == 200.0  # 100 answers/s of 2 rows
    assert report.result_summary(sw.steps[1][1], 3) == sw.steps[1][1].summary(3)


# -- the live line -------------------------------------------------------------------------

SNAP = {
    "process": 0,
    "elapsed_s": 1.04,
    "total_s": 3.0,
    "warmup": False,
    "requests": 600,
    "ok": 598,
    "errors": 1234,
    "recent": 500,
    "interval_s": 0.5,
    "p50_ms": 1.5,
    "p99_ms": 9.25,
    "connections": 4,
}


def test_progress_line_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with report.Progress(console) as progress:
        progress.label = "step 2: "
        progress.update(SNAP)
        progress.update({**SNAP, "warmup": True, "interval_s": 0})
        progress.say("a message")
    out = console.file.getvalue()  # type: ignore[attr-defined]
    # 500 requests in the last 0.5 s: 1,000 req/s.
    assert (
        "step 2: measuring   1.0/3 s      1,000 req/s  p50   1.500 ms  p99    9.250 ms  errors 1,234  conns 4"
        in out
    )
    assert "step 2: warmup   1.0/3 s          0 req/s" in out
    assert "a message" in out


@pytest.mark.parametrize("terminal, enabled", [(False, True), (True, False)])
def test_no_progress_line_off_a_terminal_or_when_quiet(terminal: bool, enabled: bool) -> None:
    console = Console(file=io.StringIO(), force_terminal=terminal, width=200)
    with report.Progress(console, enabled=enabled) as progress:
        progress.update(SNAP)
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]
