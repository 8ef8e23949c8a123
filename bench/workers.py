"""What a second worker buys: c=64 throughput of `mlrt serve --workers 1` against `--workers 2`.

    python -m bench.workers [--rounds 8] [--seconds 5] [--connections 64] [--json PATH]

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
much they differ, with the per-run excess the server counted.

The machine's 2 cores are shared by the server and wrk, so the 2-worker figure is what a
second core buys while the load generator competes for it, not linear scaling. Linux only
(/proc).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from ._harness import server
from ._results import cpu_model as _cpu_model
from ._results import git as _git
from .serving import Target, metrics_text, monitored_mlp, server_counts, wrk

SETTLE_S = 0.3  # after wrk exits, for the answers still in flight to be counted
SYSTEMS = ("1 worker", "2 workers")
OTHER_LOAD = 0.2  # cores used by other processes, beyond which the table says the machine was busy
LOPSIDED = 0.05  # a run where one worker answered less than this share of the requests


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


def spread(xs: list[float], fmt: str) -> str:
    """median [min-max]"""
    return f"{fmt.format(float(np.median(xs)))} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]"


def med(runs: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def report(doc: dict) -> list[str]:
    a, m, c = doc["args"], doc["machine"], doc["check"]
    rounds = {s: [r for r in doc["runs"] if r["system"] == s and r["round"] > 0] for s in SYSTEMS}
    rps = {s: [r["ok_rps"] for r in rounds[s]] for s in SYSTEMS}
    ratios = [two / one for one, two in zip(rps["1 worker"], rps["2 workers"], strict=True)]
    lines = [
        f"mlrt serve --workers 1 vs --workers 2, bench MLP with drift monitoring, "
        f"wrk -t1 -c{a['connections']}, {a['rounds']} rounds x {a['seconds']:g} s per system, "
        "order rotated; median [min-max] over rounds",
        f"{m['nproc']} CPUs ({m['cpu']}), shared by the servers and wrk; commit {doc['commit'][:7]}"
        f"{' + uncommitted runtime/ changes' if doc['runtime_uncommitted'] else ''}; "
        f"{doc['date']}",
        "",
        f"{'system':<11}{'2xx/s':>25}{'p50 ms':>8}{'p99 ms':>8}{'CPU µs/req':>12}{'server cores':>14}"
        f"{'wrk cores':>11}{'other':>7}{'idle':>6}{'steal':>7}{'non-2xx':>9}{'sock err':>10}",
    ]
    for s in SYSTEMS:
        rs = rounds[s]
        errors = sum(r["socket_errors"] + r["timeouts"] for r in rs)
        lines.append(
            f"{s:<11}{spread(rps[s], '{:,.0f}'):>25}{med(rs, 'p50_us') / 1e3:>8.2f}"
            f"{med(rs, 'p99_us') / 1e3:>8.2f}{med(rs, 'server_cpu_us_per_answer'):>12.1f}"
            f"{med(rs, 'server_cores'):>14.2f}{med(rs, 'wrk_cores'):>11.2f}{med(rs, 'other_cores'):>7.2f}"
            f"{med(rs, 'machine_idle_cores'):>6.2f}{med(rs, 'machine_steal_cores'):>7.2f}"
            f"{sum(r['non_2xx'] for r in rs):>9}{errors:>10}"
        )
    others = [r["other_cores"] for s in SYSTEMS for r in rounds[s]]
    if float(np.median(others)) > OTHER_LOAD:
        lines.append(
            f"NOTE: other processes took {float(np.median(others)):.2f} cores (median over runs) while this "
            "ran: not the figures of a quiet machine"
        )
    lines.append(f"2 workers / 1 worker, 2xx/s (per-round ratio): {spread(ratios, '{:.3f}')}")
    shares = [r["worker_share"] for r in rounds["2 workers"]]
    lines.append(
        "2 workers, each one's share of the answers per round: "
        + ", ".join(f"worker {w} {spread([sh[w] for sh in shares], '{:.3f}')}" for w in sorted(shares[0]))
    )
    # wrk's connections stay open for the whole run, so the split is decided when it connects
    lopsided = [min(sh.values()) < LOPSIDED for sh in shares]
    lines.append(
        f"rounds where one of the 2 workers answered under {LOPSIDED:.0%}: {sum(lopsided)} of {len(shares)}"
    )
    for name, pick in (("under", True), ("not under", False)):
        rs = [x for x, lop in zip(ratios, lopsided, strict=True) if lop == pick]
        if rs:
            lines.append(f"  2 workers / 1 worker, those {name} {LOPSIDED:.0%}: {spread(rs, '{:.3f}')}")
    verdict = "EQUAL" if c["difference"] == 0 else f"NOT EQUAL, the server counted {c['difference']:+,}"
    within = all(0 <= x <= a["connections"] for x in c["per_run_excess"])
    lines += [
        f"check, 2 workers: mlrt_requests_total {c['server_total']:,} vs wrk's answers {c['wrk_total']:,} "
        f"over its {c['runs']} runs (warm-up included): {verdict}",
        f"  server minus wrk per run {min(c['per_run_excess'])} to {max(c['per_run_excess'])}; every run "
        f"within 0 to {a['connections']} (the requests wrk can leave in flight when it stops): "
        f"{'yes' if within else 'NO'}; wrk socket errors {c['socket_errors']}, timeouts {c['timeouts']}, "
        f"non-2xx {c['non_2xx']}",
    ]
    one, two = (med(rounds[s], "server_cpu_us_per_answer") for s in SYSTEMS)
    r1, r2 = (float(np.median(rps[s])) for s in SYSTEMS)
    per_core = (
        f"Per core: 1 worker answered {r1:,.0f}/s on {med(rounds['1 worker'], 'server_cores'):.2f} cores "
        f"of server CPU ({one:.0f} µs/req), 2 workers {r2:,.0f}/s on "
        f"{med(rounds['2 workers'], 'server_cores'):.2f} cores ({two:.0f} µs/req), while wrk took "
        f"{med(rounds['2 workers'], 'wrk_cores'):.2f} of the {m['nproc']}. "
        f"The {float(np.median(ratios)):.2f}x is what a second core buys on this machine with the load "
        "generator competing for it, not linear scaling"
        + (
            f" (and it mixes {sum(lopsided)} rounds where one worker got almost no connections; the others "
            f"give {float(np.median([x for x, lop in zip(ratios, lopsided, strict=True) if not lop])):.2f}x)"
            if 0 < sum(lopsided) < len(lopsided)
            else ""
        )
        + ". "
        f"A worker with a core to itself would answer about {1e6 / two:,.0f}/s at this run's "
        f"{two:.0f} µs/req (a prediction from CPU per request, not measured)."
    )
    lines += ["", *textwrap.wrap(per_core, 100)]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="wrk run per system per round")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--json", metavar="PATH", help="write every run's raw figures here")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None or not Path("/proc/self/stat").exists():
        print("bench.workers needs wrk (apt install wrk) and Linux /proc", file=sys.stderr)
        return 2
    servers = {}
    for n, s in enumerate(SYSTEMS, start=1):
        cmd, target = monitored_mlp(f"mlrt-workers{n}-")
        servers[s] = ([*cmd, "--workers", str(n)], target)
    runs: list[dict] = []

    def run(system: str, rnd: int, seconds: float) -> None:
        res = measured_run(servers[system][1], pids[system], args.connections, seconds)
        runs.append({"system": system, "round": rnd, **res})
        print(
            f"# {'warm-up' if rnd == 0 else f'round {rnd}'} {system}: {res['ok_rps']:,.0f} 2xx/s, "
            f"p99 {res['p99_us'] / 1e3:.1f} ms, server CPU {res['server_cpu_s']:.2f} s "
            f"({res['server_cpu_us_per_answer']:.0f} µs/req), wrk CPU {res['wrk_cpu_s']:.2f} s"
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
            run(system, 0, 2)  # warm-up, not in the table (but in the check)
        for i in range(args.rounds):
            for system in SYSTEMS[i % 2 :] + SYSTEMS[: i % 2]:
                run(system, i + 1, args.seconds)
        time.sleep(SETTLE_S)
        two = [r for r in runs if r["system"] == "2 workers"]
        total = answered(t2.port)
    wrk_total = sum(r["requests"] for r in two)
    doc = {
        "command": "python -m bench.workers " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(),
        "commit": _git("rev-parse", "HEAD"),
        # what the servers ran differs from the commit if runtime/ has changes not committed
        "runtime_uncommitted": _git("status", "--porcelain", "--", "runtime").splitlines(),
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu": _cpu_model()},
        "args": vars(args),
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
    print("\n".join(report(doc)))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
