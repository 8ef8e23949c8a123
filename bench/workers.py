"""What a second worker buys: c=64 throughput of `mlrt serve --workers 1` against `--workers 2`.

    python -m bench.workers [--rounds 8] [--seconds 5] [--connections 64] [--json [PATH]]

Both servers are the bench MLP with drift monitoring on (bench.serving.monitored_mlp, as
shipped otherwise), started once on their own ports and kept running; `--workers 1` is one
process, `--workers 2` a supervisor and two forked workers on the one port (a socket each,
SO_REUSEPORT, since c5029fc; one shared socket before).
After one warm-up run each (not counted), every round runs wrk -t1 -c`--connections` for
`--seconds` against each, the order rotated every round (1,2 then 2,1, ...).

Per run: 2xx answers per second, p50 and p99 (wrk's), non-2xx and socket errors; the CPU
seconds the server's whole process tree used during wrk's run (utime+stime of /proc/PID/stat
for the supervisor and every descendant, before and after), divided by the answers the server
counted (mlrt_requests_total) for CPU per request; wrk's own CPU (getrusage of waited
children); the machine's idle and stolen CPU (/proc/stat), and what other processes used
(the machine's busy CPU less the server's and wrk's); and, for the 2-worker server, each
worker's share of the answers (mlrt_worker_requests_total), with the ratio shown apart for the
rounds where one worker answered almost nothing (wrk's connections stay open for the whole
run, so how they were spread when it connected decides the split). CPU figures are in cores:
CPU seconds per second of wrk's run.

Check: after the last round the 2-worker server's mlrt_requests_total (all codes) is compared
with wrk's count of answers over every run against it, warm-up included. wrk counts the
answers it read; a request it sent and was waiting on when its time ran out (at most one per
connection per run) is answered and counted by the server but not by wrk, so the server may
count up to runs x connections more. The table says whether the two are equal, and by how
much they differ, with the per-run excess the server counted; PASS when every run's excess is
within 0 to --connections.

The machine's 2 cores are shared by the server and wrk, so the 2-worker figure is what a
second core buys while the load generator competes for it, not linear scaling. Linux only
(/proc).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _results
from ._harness import server
from ._results import spread, usable_cpus
from .serving import Target, metrics_text, monitored_mlp, server_counts, wrk

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
SETTLE_S = 0.3  # after wrk exits, for the answers still in flight to be counted
SYSTEMS = ("1 worker", "2 workers")
OTHER_LOAD = 0.2  # cores used by other processes, beyond which the table says the machine was busy
LOPSIDED = 0.05  # a run where one worker answered less than this share of the requests
QUIET = 0.1  # cores used by other processes, below which a run counts as quiet
WARMUP_S = 2.0


def tree_cpu_s(pid: int) -> tuple[float, list[int]]:
    """CPU seconds (user + system) used so far by `pid` and every descendant, and their pids.

    A process's children are listed per thread in /proc/PID/task/TID/children; all threads
    are read, so a child forked from any thread is found."""
    tick = os.sysconf("SC_CLK_TCK")
    total, seen, todo = 0.0, [], [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            tasks = os.listdir(f"/proc/{p}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended since its parent listed it
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15)
        seen.append(p)
        for tid in tasks:
            try:
                todo += [int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
            except FileNotFoundError:
                pass
    return total, seen


def machine_cpu_s() -> dict[str, float]:
    """The whole machine's CPU seconds so far (first line of /proc/stat): idle (with iowait),
    stolen by the hypervisor, and busy (everything else)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "busy": (user + nice + system + irq + softirq) / tick,
        "idle": (idle + iowait) / tick,
        "steal": steal / tick,
    }


def worker_requests(port: int) -> dict[str, float]:
    """mlrt_worker_requests_total by worker (absent from a 1-worker server's /metrics)."""
    out = {}
    for line in metrics_text(port).splitlines():
        if line.startswith("mlrt_worker_requests_total{"):
            out[line.split('worker="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out


def answered(port: int) -> int:
    """The server's mlrt_requests_total, summed over models, versions and codes."""
    return int(sum(server_counts(port)["codes"].values()))


def measured_run(target: Target, pid: int, connections: int, seconds: float) -> dict:
    """One wrk run, with the server's CPU, its own answer count and (2 workers) each worker's."""
    workers0, answered0 = worker_requests(target.port), answered(target.port)
    cpu0, pids = tree_cpu_s(pid)
    t0, wrk0, mach0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN), machine_cpu_s()
    res = wrk(target, connections, seconds)
    t1, wrk1, mach1 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN), machine_cpu_s()
    cpu1, pids1 = tree_cpu_s(pid)
    time.sleep(SETTLE_S)
    workers1, answered1 = worker_requests(target.port), answered(target.port)
    server_answers = answered1 - answered0
    wrk_cpu_s = (wrk1.ru_utime - wrk0.ru_utime) + (wrk1.ru_stime - wrk0.ru_stime)
    res |= {
        "server_answers": server_answers,
        "server_excess": server_answers - res["requests"],  # answered, but not read by wrk
        "server_cpu_s": cpu1 - cpu0,
        "server_cores": (cpu1 - cpu0) / (t1 - t0),
        "server_cpu_us_per_answer": (cpu1 - cpu0) / max(server_answers, 1) * 1e6,
        "server_pids": len(pids1),
        "server_pids_changed": sorted(pids) != sorted(pids1),
        "wrk_cpu_s": wrk_cpu_s,
        "wrk_cores": wrk_cpu_s / (t1 - t0),
        "wall_s": t1 - t0,
        # the whole machine during wrk's run, in cores: what was left idle, what the hypervisor took
        **{f"machine_{k}_cores": (mach1[k] - mach0[k]) / (t1 - t0) for k in mach0},
    }
    # what neither the server nor wrk used: other processes on the machine (the idle server too)
    res["other_cores"] = res["machine_busy_cores"] - res["server_cores"] - res["wrk_cores"]
    if workers1:
        per = {w: n - workers0.get(w, 0.0) for w, n in sorted(workers1.items())}
        res["worker_answers"] = per
        res["worker_share"] = {w: n / max(sum(per.values()), 1) for w, n in per.items()}
    return res


def med(runs: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def markdown(saved: dict[str, Any], name: str = "workers") -> str:
    """A saved run's tables (bench/_results.py's layout) in Markdown."""
    s, res = saved["settings"], saved["results"]
    c, cpus, conns = res["check"], s["cpus"], s["connections"]
    rounds = {x: [r for r in res["runs"] if r["system"] == x and r["round"] > 0] for x in SYSTEMS}
    rps = {x: [r["ok_rps"] for r in rounds[x]] for x in SYSTEMS}
    ratios = [two / one for one, two in zip(rps["1 worker"], rps["2 workers"], strict=True)]
    lines = [
        "| system | 2xx/s | p50 ms | p99 ms | CPU µs/req | server cores | wrk cores | other | idle | steal "
        "| non-2xx, socket errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in SYSTEMS:
        rs = rounds[x]
        errors = sum(r["socket_errors"] + r["timeouts"] for r in rs)
        lines.append(
            f"| {x} | {spread(rps[x], ',.0f')} | {med(rs, 'p50_us') / 1e3:.2f} "
            f"| {med(rs, 'p99_us') / 1e3:.2f} | {med(rs, 'server_cpu_us_per_answer'):.1f} "
            f"| {med(rs, 'server_cores'):.2f} | {med(rs, 'wrk_cores'):.2f} | {med(rs, 'other_cores'):.2f} "
            f"| {med(rs, 'machine_idle_cores'):.2f} | {med(rs, 'machine_steal_cores'):.2f} "
            f"| {sum(r['non_2xx'] for r in rs)}, {errors} |"
        )
    lines += [
        "",
        "mlrt serve --workers 1 and --workers 2 (bench MLP with drift monitoring), both started once; "
        f"after a {s['warmup_s']:g} s warm-up each, {s['rounds']} rounds of wrk -t1 -c{conns} for "
        f"{s['seconds']:g} s per server, order rotated. 2xx/s: median [min-max] over rounds; the rest "
        "medians over rounds. CPU in cores (CPU seconds per second of wrk's run): the server's process "
        "tree (supervisor and workers), wrk, other (the rest of the machine's busy CPU: other work, the "
        f"idle server's share too), idle and stolen; {cpus} CPUs, shared by the servers and wrk.",
        "",
        f"2 workers / 1 worker, per-round ratio of 2xx/s: **{spread(ratios, '.3f')}**",
    ]
    others = [r["other_cores"] for x in SYSTEMS for r in rounds[x]]
    if float(np.median(others)) > OTHER_LOAD:
        lines += [
            "",
            f"NOTE: other processes took {float(np.median(others)):.2f} cores (median over runs) while this "
            "ran: not the figures of a quiet machine.",
        ]
    quiet = [
        max(one["other_cores"], two["other_cores"]) < QUIET
        for one, two in zip(rounds["1 worker"], rounds["2 workers"], strict=True)
    ]
    quiet_ratios = [x for x, q in zip(ratios, quiet, strict=True) if q]
    lines += [
        "",
        f"Rounds where neither run had other processes over {QUIET:g} cores: {sum(quiet)} of {len(quiet)}"
        + (f", ratio {spread(quiet_ratios, '.3f')}" if quiet_ratios else "")
        + ".",
    ]
    shares = [r["worker_share"] for r in rounds["2 workers"]]
    # wrk's connections stay open for the whole run, so the split is decided when it connects
    lopsided = [min(sh.values()) < LOPSIDED for sh in shares]
    lines += [
        "",
        "2 workers, each one's share of the answers per round: "
        + ", ".join(f"worker {w} {spread([sh[w] for sh in shares], '.3f')}" for w in sorted(shares[0]))
        + f"; rounds where one of them answered under {LOPSIDED:.0%}: {sum(lopsided)} of {len(shares)}"
        + "".join(
            f"; ratio in those {label} {LOPSIDED:.0%}: "
            + spread([x for x, lop in zip(ratios, lopsided, strict=True) if lop == pick], '.3f')
            for label, pick in (("under", True), ("not under", False))
            if 0 < sum(lopsided) < len(lopsided)
        )
        + ".",
        "",
        "| round | 1 worker 2xx/s | 2 workers 2xx/s | ratio | worker shares | other cores, 1 / 2 workers |",
        "|---|---|---|---|---|---|",
    ]
    for i, (one, two) in enumerate(zip(rounds["1 worker"], rounds["2 workers"], strict=True)):
        share = " / ".join(f"{two['worker_share'][w]:.3f}" for w in sorted(two["worker_share"]))
        lines.append(
            f"| {one['round']} | {one['ok_rps']:,.0f} | {two['ok_rps']:,.0f} | {ratios[i]:.3f} | {share} "
            f"| {one['other_cores']:.2f} / {two['other_cores']:.2f} |"
        )
    equal = "equal" if c["difference"] == 0 else f"not equal, the server counted {c['difference']:+,}"
    within = all(0 <= x <= conns for x in c["per_run_excess"])
    lines += [
        "",
        f"Check, 2 workers: mlrt_requests_total {c['server_total']:,} against wrk's {c['wrk_total']:,} "
        f"answers over its {c['runs']} runs (warm-up included): {equal}. wrk counts the answers it read; a "
        "request it was waiting on when its time ran out (at most one per connection per run) is answered "
        f"and counted by the server but not by wrk. Server minus wrk per run: {min(c['per_run_excess'])} to "
        f"{max(c['per_run_excess'])}; wrk socket errors {c['socket_errors']}, timeouts {c['timeouts']}, "
        f"non-2xx {c['non_2xx']}.",
        "",
        f"{'PASS' if within else 'FAIL'}: every run's server count within 0 to {conns} (the requests wrk can "
        "leave in flight when it stops) above wrk's.",
    ]
    one, two = (med(rounds[x], "server_cpu_us_per_answer") for x in SYSTEMS)
    r1, r2 = (float(np.median(rps[x])) for x in SYSTEMS)
    lines += [
        "",
        f"Per core: 1 worker answered {r1:,.0f}/s on {med(rounds['1 worker'], 'server_cores'):.2f} cores "
        f"of server CPU ({one:.0f} µs/req), 2 workers {r2:,.0f}/s on "
        f"{med(rounds['2 workers'], 'server_cores'):.2f} cores ({two:.0f} µs/req), while wrk took "
        f"{med(rounds['2 workers'], 'wrk_cores'):.2f} of the {cpus}. "
        f"The {float(np.median(ratios)):.2f}x is what a second core buys on this machine with the load "
        "generator competing for it, not linear scaling. "
        f"A worker with a core to itself would answer about {1e6 / two:,.0f}/s at this run's "
        f"{two:.0f} µs/req (a prediction from CPU per request, not measured).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="wrk run per system per round")
    p.add_argument("--connections", type=int, default=64)
    _results.json_option(p)
    args = p.parse_args(argv)
    if shutil.which("wrk") is None or not Path("/proc/self/stat").exists():
        print("bench.workers needs wrk (apt install wrk) and Linux /proc", file=sys.stderr)
        return 2
    settings = {
        "rounds": args.rounds, "seconds": args.seconds, "connections": args.connections,
        "warmup_s": WARMUP_S, "settle_s": SETTLE_S, "systems": list(SYSTEMS), "cpus": usable_cpus(),
        "model": "bench MLP, 20 FP32 -> 64 -> 32 -> 2, drift monitoring on, one row per V2 binary request",
        "load_generator": "wrk -t1 + bench/wrk/post.lua (closed loop, keep-alive)",
    }  # fmt: skip
    run_ = Run("workers", SCRIPT_VERSION, settings, argv=argv, measured=("runtime", "native", "setup.py",
               "bench/models.py", "bench/serving.py", "bench/wrk"))  # fmt: skip
    servers = {}
    for n, s in enumerate(SYSTEMS, start=1):
        cmd, target = monitored_mlp(f"mlrt-workers{n}-")
        servers[s] = ([*cmd, "--workers", str(n)], target)
    runs: list[dict] = []

    def run(system: str, rnd: int, seconds: float) -> None:
        res = measured_run(servers[system][1], pids[system], args.connections, seconds)
        runs.append({"system": system, "round": rnd, **res})
        print(
            f"[bench.workers] {'warm-up' if rnd == 0 else f'round {rnd}'} {system}: "
            f"{res['ok_rps']:,.0f} 2xx/s, p99 {res['p99_us'] / 1e3:.1f} ms, "
            f"server CPU {res['server_cpu_s']:.2f} s ({res['server_cpu_us_per_answer']:.0f} µs/req), "
            f"wrk CPU {res['wrk_cpu_s']:.2f} s"
            + (f", shares {res['worker_share']}" if "worker_share" in res else "")
            + (f", non-2xx {res['non_2xx']}" if res["non_2xx"] else "")
            + (f", socket errors {res['socket_errors']}" if res["socket_errors"] else ""),
            file=sys.stderr,
            flush=True,
        )

    (cmd1, t1), (cmd2, t2) = servers["1 worker"], servers["2 workers"]
    with server(cmd1, t1.port) as p1, server(cmd2, t2.port) as p2:
        pids = {"1 worker": p1.pid, "2 workers": p2.pid}
        for system in SYSTEMS:
            run(system, 0, WARMUP_S)  # warm-up, not in the table (but in the check)
        for i in range(args.rounds):
            for system in SYSTEMS[i % 2 :] + SYSTEMS[: i % 2]:
                run(system, i + 1, args.seconds)
        time.sleep(SETTLE_S)
        two = [r for r in runs if r["system"] == "2 workers"]
        total = answered(t2.port)
    wrk_total = sum(r["requests"] for r in two)
    results = {
        "check": {  # the 2-worker server's count against wrk's
            "server_total": total,
            "wrk_total": wrk_total,
            "difference": total - wrk_total,
            "runs": len(two),
            "per_run_excess": [r["server_excess"] for r in two],
            "socket_errors": sum(r["socket_errors"] for r in two),
            "timeouts": sum(r["timeouts"] for r in two),
            "non_2xx": sum(r["non_2xx"] for r in two),
        },
        "runs": runs,
    }
    print(markdown(run_.envelope(results)), end="")
    if args.json is not None:
        run_.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
