"""runtime/traffic/rollback.py's rule on the serving metrics it reads: a canary as good as
the primary is left alone, a worse one is rolled back once it has enough requests in the
window, and counts from before the window (or from another version) do not count."""

from __future__ import annotations

from runtime.metrics.serving import ModelMetrics
from runtime.traffic import Endpoint, Rollback, RollbackRule


def setup(**rule: object) -> tuple[Endpoint, Rollback, dict[str, ModelMetrics]]:
    r = Rollback("e", "canary", RollbackRule(window_s=10, min_requests=20, **rule))  # type: ignore[arg-type]
    e = Endpoint("e", [("primary", 90), ("canary", 10)], rollbacks=[r])
    return e, r, {"primary": ModelMetrics("primary", "1"), "canary": ModelMetrics("canary", "1")}


def serve(m: ModelMetrics, n: int, seconds: float = 0.001, failed: int = 0) -> None:
    for i in range(n):
        m.observe_request(seconds, 500 if i < failed else 200)


def test_a_canary_as_good_as_the_primary_is_left_alone() -> None:
    e, r, m = setup()
    for t in range(60):  # a minute of ticks, 1% errors on both sides
        serve(m["primary"], 900, failed=9)
        serve(m["canary"], 100, failed=1)
        assert r.check(e, m.get, now=float(t)) is None
    assert e.variants[1].weight == 10 and r.count == 0


def test_errors_roll_the_canary_back_once_it_has_enough_requests() -> None:
    e, r, m = setup()
    r.check(e, m.get, now=0.0)
    serve(m["primary"], 500)
    serve(m["canary"], 19, failed=19)
    assert r.check(e, m.get, now=1.0) is None  # 19 requests: below min_requests
    serve(m["canary"], 1, failed=1)
    why = r.check(e, m.get, now=2.0)
    assert why is not None and "error rate 100.0%" in why
    assert e.variants[1].weight == 0 and r.count == 1 and r.rolled_back is not None
    assert r.check(e, m.get, now=3.0) is None  # at weight 0 there is nothing more to do


def test_slow_answers_roll_the_canary_back() -> None:
    e, r, m = setup(p99_ratio=3)
    r.check(e, m.get, now=0.0)
    serve(m["primary"], 500, seconds=0.002)
    serve(m["canary"], 50, seconds=0.004)  # twice as slow: within the factor
    assert r.check(e, m.get, now=1.0) is None
    serve(m["canary"], 50, seconds=0.05)
    why = r.check(e, m.get, now=2.0)
    assert why is not None and "p99 latency" in why


def test_only_the_window_counts() -> None:
    e, r, m = setup()
    r.check(e, m.get, now=0.0)
    serve(m["canary"], 30, failed=30)  # a bad start...
    serve(m["primary"], 300)
    e.variants[1].weight = 0  # ...taken out by hand, and back after the fix, 15 s later
    for t in range(1, 16):
        serve(m["primary"], 90)
        r.check(e, m.get, now=float(t))
    e.variants[1].weight = 10
    for t in range(16, 40):
        serve(m["canary"], 10)
        serve(m["primary"], 90)
        r.check(e, m.get, now=float(t))
    assert e.variants[1].weight == 10 and r.count == 0  # the 30 errors were out of the window
    # A new version of the canary starts a history of its own.
    m["canary"] = ModelMetrics("canary", "2")
    serve(m["canary"], 5, failed=5)
    assert r.check(e, m.get, now=31.0) is None
