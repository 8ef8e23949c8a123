"""The self-contained HTML drift report (runtime/server/dashboard/report.py): one file, no
script or request, under 1 MB for 50 features, worst first, names escaped. The browser
test (tests/integration/test_dashboard.py) opens it offline."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from runtime.config import MonitorConfig
from runtime.monitor.drift import offline_report
from runtime.monitor.profile import Profile
from runtime.server.dashboard.report import drift_html


def _report(n: int, shifted: int) -> dict:
    rng = np.random.default_rng(0)
    ref = {f"f{i}": rng.normal(size=5000) for i in range(n)}
    cur = {k: v[:3000] + (0.5 if i < shifted else 0.0) for i, (k, v) in enumerate(ref.items())}
    return {"source": "today.parquet", **offline_report(Profile.fit(pa.table(ref)), cur, MonitorConfig())}


def test_fifty_features_make_one_small_page_worst_first() -> None:
    report = _report(50, 5)
    page = drift_html([report])
    assert len(page.encode()) < 1_000_000
    assert "<script" not in page and "https://" not in page and "src=" not in page and "<link" not in page
    rows = re.findall(r'<tr data-feature="([^"]+)" data-section="input" data-status="(\w+)"', page)
    assert len(rows) == 50
    statuses = [s for _, s in rows]
    assert statuses[:5] == ["alert"] * 5 and set(statuses[5:]) == {"ok"}
    psi = {f["name"]: f["psi"] for f in report["features"]}
    shown = [psi[name] for name, _ in rows[5:]]
    assert shown == sorted(shown, reverse=True)  # within a status, highest PSI first
    assert page.count("<svg") == 50 and "8 in alert" not in page and "5 in alert" in page


def test_names_are_escaped_and_few_rows_are_said() -> None:
    rng = np.random.default_rng(1)
    ref = {"<b>x</b>": rng.normal(size=1000)}
    report = offline_report(Profile.fit(pa.table(ref)), {"<b>x</b>": ref["<b>x</b>"][:50]}, MonitorConfig())
    page = drift_html([{"source": "a<b", **report}])
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "a&lt;b" in page
    assert "only 50 rows in the window: statuses need at least 100" in page
