"""What a load run is given and how it is split (runtime/loadgen: LoadSpec, the open
loop's schedules, runner's splitting and merging): a LoadSpec refuses what cannot run,
naming the field; constant schedules of several processes interleave into the one
schedule; Poisson schedules have the rate, the exponential gaps and the independence
they should; shares, progress snapshots and pass/fail of sweep steps add up by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runtime.loadgen import LoadSpec, run_load
from runtime.loadgen.open import schedule_offsets_ns
from runtime.loadgen.result import RunResult
from runtime.loadgen.runner import merge_snapshots, split, step_passes

REQ = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def spec(**kw: Any) -> LoadSpec:
    args: dict[str, Any] = {"host": "127.0.0.1", "port": 1, "requests": (REQ,), "duration_s": 1.0}
    args.update(kw)
    if "rate" not in args and "concurrency" not in args:
        args["concurrency"] = 1
    return LoadSpec(**args)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"requests": ()}, "no requests to send"),
        ({"duration_s": 0}, "duration must be > 0 s, got 0"),
        ({"duration_s": -1.5}, "duration must be > 0 s, got -1.5"),
        ({"concurrency": 2, "rate": 10.0}, "give exactly one of concurrency"),
        ({"concurrency": None}, "give exactly one of concurrency"),
        ({"concurrency": 0}, "concurrency must be >= 1, got 0"),
        ({"rate": 0.0}, r"rate must be > 0 requests/s, got 0.0"),
        ({"rate": 10.0, "arrivals": "bursty"}, "arrivals must be 'constant' or 'poisson', got 'bursty'"),
    ],
)
def test_load_spec_refuses(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**kw)


def test_run_load_refuses_before_starting_anything() -> None:
    with pytest.raises(ValueError, match="processes must be >= 1, got 0"):
        run_load(spec(), processes=0)
    with pytest.raises(ValueError, match="concurrency 2 cannot be split over 3 processes"):
        run_load(spec(concurrency=2), processes=3)


def test_split() -> None:
    assert split(10, 3) == [4, 3, 3]
    assert split(3, 3) == [1, 1, 1]
    assert split(2, 3) == [1, 1, 0]
    assert split(7, 1) == [7]
    for total in range(0, 30):
        for parts in range(1, 7):
            shares = split(total, parts)
            assert sum(shares) == total and max(shares) - min(shares) <= 1


def test_merge_snapshots() -> None:
    a = {
        "process": 0,
        "elapsed_s": 1.0,
        "warmup": False,
        "requests": 10,
        "ok": 9,
        "errors": 1,
        "recent": 5,
        "connections": 2,
        "p50_ms": 1.0,
        "p99_ms": 4.0,
        "interval_s": 0.5,
    }
    b = {
        **a,
        "process": 1,
        "requests": 20,
        "ok": 20,
        "errors": 0,
        "recent": 7,
        "connections": 3,
        "p50_ms": 2.0,
        "p99_ms": 3.0,
    }
    m = merge_snapshots([a, b])
    assert (m["requests"], m["ok"], m["errors"], m["recent"], m["connections"]) == (30, 29, 1, 12, 5)
    # Percentiles do not add: the worst process's.
    assert (m["p50_ms"], m["p99_ms"]) == (2.0, 4.0)
    assert m["elapsed_s"] == 1.0 and m["interval_s"] == 0.5


def result(statuses: dict[str, int], latencies_ns: list[int]) -> RunResult:
    r = RunResult(mode="open", duration_s=1.0, statuses=statuses)
    r.latency.record_many(latencies_ns)
    return r


def test_step_passes() -> None:
    fast = [1_000_000] * 1000  # 1 ms
    assert step_passes(result({"200": 1000}, fast), slo_ms=5, max_error_rate=0.001)
    assert not step_passes(result({"200": 1000}, fast), slo_ms=0.5, max_error_rate=0.001)
    # 1 error in 1001 is within 0.1%, 2 are not.
    assert step_passes(result({"200": 1000, "503": 1}, fast), slo_ms=5, max_error_rate=0.001)
    assert not step_passes(result({"200": 999, "timeout": 2}, fast[:999]), slo_ms=5, max_error_rate=0.001)
    # p99 of 100 samples is the 99th: one slow answer in 100 passes, two do not.
    one_slow = [1_000_000] * 99 + [900_000_000]
    two_slow = [1_000_000] * 98 + [900_000_000] * 2
    assert step_passes(result({"200": 100}, one_slow), slo_ms=5, max_error_rate=0.0)
    assert not step_passes(result({"200": 100}, two_slow), slo_ms=5, max_error_rate=0.0)
    # Nothing measured, or nothing answered, never passes.
    assert not step_passes(result({}, []), slo_ms=5, max_error_rate=1.0)
    assert not step_passes(result({"503": 10}, []), slo_ms=5, max_error_rate=1.0)


def test_poisson_schedules_of_several_processes() -> None:
    rate, total = 2000.0, 2.0
    whole = schedule_offsets_ns(rate, total, "poisson", seed=1)
    parts = [schedule_offsets_ns(rate, total, "poisson", k, 4, seed=1) for k in range(4)]
    for offs in (whole, *parts):
        assert offs.dtype == np.int64
        assert (np.diff(offs) >= 0).all() and offs.min() >= 0 and offs.max() < total * 1e9
    # Poisson counts: mean rate x total, standard deviation its square root (63 for 4000).
    assert abs(len(whole) - 4000) < 5 * 63
    assert abs(sum(len(p) for p in parts) - 4000) < 5 * 63
    for p in parts:
        assert abs(len(p) - 1000) < 5 * 32
    # Exponential gaps: mean 1 / rate, and as many gaps above the mean as e^-1 predicts.
    gaps = np.diff(whole) / 1e9
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.1)
    assert (gaps > 1 / rate).mean() == pytest.approx(np.exp(-1), abs=0.05)
    # The processes' streams are independent (different seeds), and each reproducible.
    assert not np.array_equal(parts[0][:100], parts[1][:100])
    np.testing.assert_array_equal(parts[2], schedule_offsets_ns(rate, total, "poisson", 2, 4, seed=1))
    assert not np.array_equal(whole, schedule_offsets_ns(rate, total, "poisson", seed=2))


def test_constant_schedules_of_several_processes_interleave() -> None:
    whole = schedule_offsets_ns(300.0, 1.0, "constant")
    parts = [schedule_offsets_ns(300.0, 1.0, "constant", k, 3) for k in range(3)]
    assert len(whole) == 300
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), whole)
    np.testing.assert_array_equal(parts[1], whole[1::3])
