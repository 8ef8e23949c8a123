"""What an open dashboard costs the server: throughput at 64 connections with a browser
showing the dashboard (polling dashboard.json every 2 s) against the same browser on a blank
page, and against dashboard.json polled every 2 s without a browser (the server's own share:
on this machine the browser also takes CPU from the server), in interleaved rounds (order
rotated) on one server:

    python -m bench.dashboard_cost [--rounds 10] [--seconds 4] [--json [PATH]]

The server is the bench MLP with drift monitoring on (20 features and 2 outputs, so every
poll builds a full drift report). The browser is headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium); each round runs wrk three times, once with the dashboard
open, once blank and once with the poller, and the table gives the median over rounds of
each one's ratio of 2xx answers per second to the blank page's in the same round, with its
spread (min-max and p25-p75). No goal is set, so no verdict.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Any

import numpy as np

from . import _results
from ._harness import server
from ._results import spread
from .serving import monitored_mlp, wrk

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
SYSTEMS = ("blank", "dashboard", "poller")
LABELS = {
    "blank": "browser on a blank page",
    "dashboard": "browser on the dashboard",
    "poller": "dashboard.json every 2 s, no browser",
}
WARMUP_S = 2.0
PAGE_S = 1.0  # after loading the page, before wrk: the page loaded and polling


def _browser():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


class _Poller:
    """What the dashboard asks of the server, without a browser: dashboard.json every 2 s."""

    def __init__(self, url: str) -> None:
        import threading

        self.url, self.stop, self.polls = url, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                http.get(self.url).raise_for_status()
                self.polls += 1
                self.stop.wait(2.0)

    def __enter__(self) -> _Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _quartiles(v: list[float], fmt: str) -> str:
    return f"{np.percentile(v, 25):{fmt}}-{np.percentile(v, 75):{fmt}}"


def markdown(saved: dict[str, Any], name: str = "dashboard_cost") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    r, s = saved["results"], saved["settings"]
    per_round = r["per_round"]
    blank = per_round["blank"]["rps"]
    lines = [
        "| system | 2xx/s | p25-p75 | / blank, per round | p25-p75 | p99 ms | non-2xx, socket errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, fig in per_round.items():
        ratios = [a / b for a, b in zip(fig["rps"], blank, strict=True)]
        ratio = ("1", "") if system == "blank" else (spread(ratios, '.3f'), _quartiles(ratios, ".3f"))
        errors = sum(fig["non_2xx"]), sum(fig["socket_errors"]) + sum(fig["timeouts"])
        lines.append(
            f"| {LABELS.get(system, system)} | {spread(fig['rps'], ',.0f')} "
            f"| {_quartiles(fig['rps'], ',.0f')} | {ratio[0]} | {ratio[1]} "
            f"| {np.median(fig['p99_us']) / 1e3:.2f} | {errors[0]}, {errors[1]} |"
        )
    lines += [
        "",
        f"The bench MLP with drift monitoring (20 features, 2 outputs: every dashboard poll builds a full "
        f"drift report), wrk -t1 -c{s['connections']} after a {s['warmup_s']:g} s warm-up, {s['rounds']} "
        f"rounds of {s['seconds']:g} s per system, order rotated, on one server; headless Chromium on the "
        f"same {s['cpus']} CPUs, the page loaded {s['page_s']:g} s before each wrk run. 2xx/s: median "
        "[min-max] and p25-p75 over rounds; ratios: each round's 2xx/s over the blank page's in the same "
        f"round, median [min-max] and p25-p75; p99: median over rounds. The poller made "
        f"{sum(r['polls'])} polls over its {len(r['polls'])} runs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ._results import Run, usable_cpus

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seconds", type=float, default=4.0, help="wrk run per system per round")
    p.add_argument("--connections", type=int, default=64)
    _results.json_option(p)
    args = p.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("chromium") is None:
        print(
            "bench.dashboard_cost needs wrk and chromium (apt install wrk chromium chromium-driver)",
            file=sys.stderr,
        )
        return 2
    settings = {
        "rounds": args.rounds, "seconds": args.seconds, "connections": args.connections,
        "warmup_s": WARMUP_S, "page_s": PAGE_S, "systems": list(SYSTEMS), "cpus": usable_cpus(),
        "model": "bench MLP, 20 FP32 -> 64 -> 32 -> 2, drift monitoring on, one row per V2 binary request",
        "load_generator": "wrk -t1 + bench/wrk/post.lua (closed loop, keep-alive)",
        "browser": "headless Chromium via Selenium, window 1400x1800",
    }  # fmt: skip
    run = Run("dashboard_cost", SCRIPT_VERSION, settings, argv=argv, measured=("runtime", "native",
              "setup.py", "bench/models.py", "bench/serving.py", "bench/wrk"))  # fmt: skip
    cmd, target = monitored_mlp("mlrt-dash-")
    port = target.port
    keys = ("rps", "p50_us", "p99_us", "non_2xx", "socket_errors", "timeouts")
    per_round: dict[str, dict[str, list]] = {s: {k: [] for k in keys} for s in SYSTEMS}
    orders, polls = [], []
    with server(cmd, port):
        browser = _browser()
        try:
            wrk(target, args.connections, WARMUP_S)  # warm-up
            for i in range(args.rounds):
                order = SYSTEMS[i % 3 :] + SYSTEMS[: i % 3]  # rotated each round
                orders.append(list(order))
                for system in order:
                    browser.get(f"http://127.0.0.1:{port}/" if system == "dashboard" else "about:blank")
                    time.sleep(PAGE_S)  # the page loaded and polling
                    if system == "poller":
                        with _Poller(f"http://127.0.0.1:{port}/dashboard.json") as poller:
                            res = wrk(target, args.connections, args.seconds)
                        polls.append(poller.polls)
                    else:
                        res = wrk(target, args.connections, args.seconds)
                    fig = per_round[system]
                    for k in ("p50_us", "p99_us"):
                        fig[k].append(float(res[k]))
                    fig["rps"].append(float(res["ok_rps"]))
                    for k in ("non_2xx", "socket_errors", "timeouts"):
                        fig[k].append(int(res[k]))
                print(
                    f"[bench.dashboard_cost] round {i + 1}/{args.rounds}: "
                    + ", ".join(f"{s} {per_round[s]['rps'][-1]:,.0f} 2xx/s" for s in SYSTEMS),
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            browser.quit()
    results = {"per_round": per_round, "orders": orders, "polls": polls}
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
