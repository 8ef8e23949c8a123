"""Show or change how a running server splits an endpoint's traffic between its variants.

An endpoint ([[endpoints]] in the server's config, docs/traffic.md) is a name clients call
like a model, routed to weighted variants. `show` prints its variants, weights and the
requests each got; `set` changes weights at run time (variants not named keep theirs; 0
stops a variant from receiving new requests). The server keeps a change until the next
one or a restart. Exit status 2 on a refused change or an unreachable server.

examples:
  mlrt traffic show churn --url http://127.0.0.1:8000
  mlrt traffic set churn churn-v1=50 churn-v2=50 --token "$MLRT_ADMIN_TOKEN"
  mlrt traffic set churn churn-v2=0          # roll the canary back
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

NAME = "traffic"
HELP = "show or change an endpoint's variant weights on a running server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="traffic_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="variants, weights and requests of an endpoint")
    show.add_argument("endpoint")
    change = sub.add_parser("set", help="change variant weights: MODEL=WEIGHT ...")
    change.add_argument("endpoint")
    change.add_argument("weights", nargs="+", metavar="MODEL=WEIGHT")
    for p in (show, change):
        p.add_argument("--url", default="http://127.0.0.1:8000", help="the server (http://127.0.0.1:8000)")
        p.add_argument("--token", help="admin token (default: MLRT_ADMIN_TOKEN)")


def run(args: argparse.Namespace) -> int:
    import httpx

    def fail(message: str) -> int:
        print(f"mlrt traffic: {message}", file=sys.stderr)
        return 2

    base = args.url.rstrip("/")
    token = args.token or os.environ.get("MLRT_ADMIN_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=base, timeout=10.0, headers=headers) as client:
            path = f"/v2/endpoints/{args.endpoint}"
            if args.traffic_command == "show":
                r = client.get(path)
            else:
                try:
                    weights = dict(_weight(w) for w in args.weights)
                except ValueError as exc:
                    return fail(str(exc))
                r = client.put(path, json={"weights": weights})
    except httpx.HTTPError as exc:
        return fail(f"cannot reach {base}: {exc}")
    if r.status_code != 200:
        from . import server_error

        return fail(server_error(r))
    _print(r.json())
    return 0


def _weight(text: str) -> tuple[str, float]:
    model, eq, value = text.partition("=")
    try:
        if not eq or not model:
            raise ValueError
        weight = float(value)
    except ValueError:
        raise ValueError(f"weights are MODEL=WEIGHT (e.g. churn-v2=10), got {text!r}") from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"a weight must be a number >= 0, got {text!r}")
    return model, weight


def _print(doc: dict[str, Any]) -> None:
    total = sum(v["weight"] for v in doc["variants"]) or 1.0
    sticky = doc.get("sticky") or "none (each request drawn by weight)"
    print(f"endpoint {doc['name']}, sticky key: {sticky}")
    print(f"  {'variant':<24}{'weight':>10}{'share':>9}{'requests':>12}")
    for v in doc["variants"]:
        print(f"  {v['model']:<24}{v['weight']:>10g}{100 * v['weight'] / total:>8.1f}%{v['requests']:>12,}")
    shadows = doc.get("shadows") or []
    if shadows:
        print(f"  {'shadow':<24}{'sample':>10}{'sent':>9}{'dropped':>12}{'failed':>9}{'agreement':>11}")
        for s in shadows:
            agreement = "-" if s["agreement"] is None else f"{100 * s['agreement']:.1f}%"
            print(
                f"  {s['model']:<24}{s['sample']:>10g}{s['sent']:>9,}{s['dropped']:>12,}{s['failed']:>9,}"
                f"{agreement:>11}"
            )
