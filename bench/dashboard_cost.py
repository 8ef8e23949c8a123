"""What an open dashboard costs the server: throughput at 64 connections with a browser
showing the dashboard (polling dashboard.json every 2 s) against the same browser on a blank
page, and against dashboard.json polled every 2 s without a browser (the server's own share:
on this machine the browser also takes CPU from the server), in interleaved rounds (order
rotated) on one server:

    python -m bench.dashboard_cost [--rounds 10] [--seconds 4] [--json PATH]

The server is the bench MLP with drift monitoring on (20 features and 2 outputs, so every
poll builds a full drift report). The browser is headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium); each round runs wrk three times, once with the dashboard
open, once blank and once with the poller, and the table gives the median over rounds of
each one's ratio of 2xx answers per second to the blank page's, with its spread.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ._harness import server
from .serving import monitored_mlp, wrk


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seconds", type=float, default=4.0, help="wrk run per system per round")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--json", metavar="PATH", help="write the raw figures here")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("chromium") is None:
        print(
            "bench.dashboard_cost needs wrk and chromium (apt install wrk chromium chromium-driver)",
            file=sys.stderr,
        )
        return 2
    cmd, target = monitored_mlp("mlrt-dash-")
    port = target.port
    systems = ("blank", "dashboard", "poller")
    rounds = []
    with server(cmd, port):
        browser = _browser()
        try:
            wrk(target, args.connections, 2)  # warm-up
            for i in range(args.rounds):
                order = systems[i % 3 :] + systems[: i % 3]  # rotated each round
                figures = {}
                for system in order:
                    browser.get(f"http://127.0.0.1:{port}/" if system == "dashboard" else "about:blank")
                    time.sleep(1.0)  # the page loaded and polling
                    if system == "poller":
                        with _Poller(f"http://127.0.0.1:{port}/dashboard.json"):
                            figures[system] = wrk(target, args.connections, args.seconds)["ok_rps"]
                    else:
                        figures[system] = wrk(target, args.connections, args.seconds)["ok_rps"]
                rounds.append(figures)
                print(f"# round {i + 1}: {figures}", file=sys.stderr)
        finally:
            browser.quit()
    head = f"wrk c={args.connections}, bench MLP with drift, {args.rounds} rounds"
    print(f"{head} of {args.seconds:g} s per system")
    print(f"{'system':<34}{'median req/s':>14}{'p25-p75':>16}{'ratio to blank':>16}{'ratio p25-p75':>16}")
    blank = np.array([r["blank"] for r in rounds])
    labels = {
        "blank": "browser on a blank page",
        "dashboard": "browser on the dashboard",
        "poller": "dashboard.json every 2 s, no browser",
    }
    for system in systems:
        values = np.array([r[system] for r in rounds])
        ratios = values / blank
        spread = f"{np.percentile(values, 25):.0f}-{np.percentile(values, 75):.0f}"
        rspread = f"{np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f}"
        print(
            f"{labels[system]:<34}{np.median(values):>14.0f}{spread:>16}{np.median(ratios):>16.3f}{rspread:>16}"
        )
    if args.json:
        command = "python -m bench.dashboard_cost " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.json).write_text(json.dumps({"command": command, "rounds": rounds}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
