"""`--plot FILE.png`: latency by percentile and throughput vs latency (matplotlib, from the
optional extra `mlrt[bench]`, imported only here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MissingMatplotlib", "plot_runs"]

NINES = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)

#: The dashboard's look (runtime/server/dashboard/static/dashboard.css): its sans-serif text,
#: greys, blue for data and red for a limit.
STYLE = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Roboto", "Segoe UI", "Arial"],
    "text.color": "#212121",
    "axes.labelcolor": "#616161",
    "axes.edgecolor": "#bdbdbd",
    "axes.facecolor": "#ffffff",
    "figure.facecolor": "#fafafa",
    "xtick.color": "#616161",
    "ytick.color": "#616161",
    "grid.color": "#e0e0e0",
    "axes.titlesize": 10,
    "axes.titlecolor": "#212121",
}
BLUE, SLATE, RED, GREY = "#1e88e5", "#263238", "#c62828", "#9e9e9e"


class MissingMatplotlib(RuntimeError):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingMatplotlib(
            "--plot needs matplotlib: pip install matplotlib"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _x(p: float) -> float:
    """Percentile on a 'nines' axis: 90 -> 1, 99 -> 2, 99.9 -> 3."""
    return -math.log10(max(1e-9, 1.0 - p / 100.0))


def plot_runs(
    path: str | Path,
    runs: Sequence[dict[str, Any]],
    *,
    title: str,
    slo_ms: float | None = None,
    sustainable_rps: float | None = None,
) -> Path:
    """Write the two-panel figure for one run or a sweep's steps (RunResult.summary() dicts)."""
    plt = _pyplot()
    with plt.rc_context(STYLE):
        return _plot(plt, Path(path), runs, title, slo_ms, sustainable_rps)


def _plot(
    plt: Any,
    path: Path,
    runs: Sequence[dict[str, Any]],
    title: str,
    slo_ms: float | None,
    sustainable_rps: float | None,
) -> Path:
    import matplotlib.colors

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=90)
    # The dashboard's blue for the lightest load, its slate for the heaviest.
    cmap = matplotlib.colors.LinearSegmentedColormap.from_list("mlrt", ["#90caf9", BLUE, SLATE])
    n = len(runs)
    for i, s in enumerate(runs):
        curve = [(p, v) for p, v in s["percentile_curve_ms"] if v > 0]
        if not curve:
            continue
        color = cmap(i / max(1, n - 1) * 0.9)
        if s["mode"] == "open":
            label = f"{s['offered_rps']:,.0f} req/s offered"
        else:
            label = f"concurrency {s['concurrency']}"
        ax1.plot([_x(p) for p, _ in curve], [v for _, v in curve], color=color, lw=1.6, label=label)
    ax1.set_yscale("log")
    ax1.set_xticks([_x(p) for p in NINES], [f"{p:g}%" for p in NINES])
    ax1.set_xlim(0, _x(99.999))
    ax1.set_xlabel("percentile")
    ax1.set_ylabel("latency (ms, log scale)")
    ax1.set_title("latency by percentile (from the scheduled send time)")
    ax1.grid(True, which="both", alpha=0.3)

    xs = [s["ok_rps"] for s in runs]
    for (key, style), color in zip(
        (("p50", "o-"), ("p99", "s-"), ("p99.9", "^-")), ("#90caf9", BLUE, SLATE), strict=True
    ):
        ax2.plot(xs, [s["latency_ms"][key] for s in runs], style, color=color, ms=4, lw=1.4, label=key)
    ax2.set_yscale("log")
    ax2.set_xlabel("throughput achieved (2xx responses/s)")
    ax2.set_ylabel("latency (ms, log scale)")
    ax2.set_title("throughput vs latency")
    ax2.grid(True, which="both", alpha=0.3)
    if slo_ms is not None:
        for ax in (ax1, ax2):
            ax.axhline(slo_ms, color=RED, ls="--", lw=1.2, label=f"p99 target {slo_ms:g} ms")
    if sustainable_rps is not None:
        ax2.axvline(
            sustainable_rps, color=GREY, ls=":", lw=1.2, label=f"sustainable {sustainable_rps:,.0f} req/s"
        )
    if n > 12:  # keep the legend readable: only some of the sweep's curves get an entry
        handles, labels = ax1.get_legend_handles_labels()
        keep = set(range(0, n, math.ceil(n / 10))) | {n - 1, len(handles) - 1}
        ax1.legend(
            [h for i, h in enumerate(handles) if i in keep],
            [x for i, x in enumerate(labels) if i in keep],
            fontsize=7,
            loc="upper left",
        )
    else:
        ax1.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
