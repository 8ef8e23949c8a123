"""A model version's serving metrics count requests and batches late (appended, folded on
read or every FOLD_AT): what any reader sees equals counting each one as it happened."""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import pytest

from runtime.metrics.serving import BATCH_BUCKETS, FOLD_AT, LATENCY_BUCKETS, ModelMetrics


def _buckets(bounds: tuple[float, ...], values: list[float]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect_left(bounds, v)] += 1
    return counts


@pytest.mark.parametrize("n", [1, 7, FOLD_AT - 1, FOLD_AT, 3 * FOLD_AT + 5])
def test_folded_counts_equal_counting_each(n: int) -> None:
    rng = np.random.default_rng(n)
    # Durations across every bucket, some exactly on a bound (bucket i holds values <= bound i).
    seconds = [float(x) for x in rng.lognormal(-7, 2.5, n)]
    seconds[: min(n, 3)] = list(LATENCY_BUCKETS[:3])[: min(n, 3)]
    codes = [int(c) for c in rng.choice([200, 200, 200, 400, 503], n)]
    rows = [int(r) for r in rng.integers(1, 300, n)]
    compute = [float(x) for x in rng.lognormal(-8, 1, n)]
    failed = [bool(f) for f in rng.random(n) < 0.05]
    m = ModelMetrics("m", "1")
    waits: list[float] = []
    for i in range(n):
        queue_s = [float(x) for x in rng.lognormal(-9, 1, int(rng.integers(1, 4)))]
        waits += queue_s
        m.observe_batch(rows[i], queue_s, compute[i], failed[i])
        m.observe_request(seconds[i], codes[i])

    assert m.request.counts == _buckets(LATENCY_BUCKETS, seconds)
    assert m.request.total == pytest.approx(sum(seconds), rel=1e-12)
    assert m.codes == {c: codes.count(c) for c in set(codes)}
    assert m.queue.counts == _buckets(LATENCY_BUCKETS, waits)
    assert m.compute.counts == _buckets(LATENCY_BUCKETS, compute)
    assert m.batch.counts == _buckets(BATCH_BUCKETS, rows)
    ok = [s for s, c in zip(seconds, codes, strict=True) if c == 200]
    bad = [s for s, c in zip(seconds, codes, strict=True) if c != 200]
    s = m.stats
    assert (s.success.count, s.success.ns) == (len(ok), sum(int(x * 1e9) for x in ok))
    assert (s.fail.count, s.fail.ns) == (len(bad), sum(int(x * 1e9) for x in bad))
    assert s.queue.count == len(waits)
    ran = [i for i in range(n) if not failed[i]]
    assert s.execution_count == len(ran)
    assert s.inference_count == sum(rows[i] for i in ran)
    assert s.compute_infer.ns == sum(int(compute[i] * 1e9) for i in ran)
    ran_rows = [rows[i] for i in ran]
    assert {b: d.count for b, d in s.batches.items()} == {r: ran_rows.count(r) for r in set(ran_rows)}
    if ran:
        assert s.last_inference_ms > 0


def test_pending_observations_stay_bounded() -> None:
    m = ModelMetrics("m", "1")
    for _ in range(5 * FOLD_AT):
        m.observe_request(0.001, 200)
        m.observe_batch(1, [0.0], 0.0005, False)
    assert len(m._ok) < FOLD_AT and len(m._ran) < FOLD_AT
    assert m.codes[200] == 5 * FOLD_AT
