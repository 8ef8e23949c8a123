"""Every benchmark from one command, and the published tables from their raw results.

    python -m bench all [--quick | --full] [--only a,b] [--skip a,b]
    python -m bench tables        # regenerate the tables of bench/README.md and docs/ from bench/results/
    python -m bench check         # are they what the newest results of each script give?
    python -m bench list

`all --full` runs each benchmark below at its published settings, one after the other (they
share the machine: never two at once), writes each run's raw JSON under bench/results/, then
regenerates the tables. `all --quick` runs each briefly, to show the scripts still work on
this checkout; its results go to bench/results/quick/ (not kept in git) and no table is
touched, because a quick run's figures are not the published ones.

A table in bench/README.md is generated where the file has

    <!-- bench:NAME results/NAME-....json -->
    ...
    <!-- /bench:NAME -->

bench/README.md has a block for every benchmark; a page of docs/ may show one too, with the
same marker (the file still named relative to bench/). `tables` fills each such block from the
newest run of NAME at its published settings (the command `all --full` runs) whose script
version is the script's current SCRIPT_VERSION, and names that file in the block; runs at other
settings are kept beside them and never published. `check` fails when a block differs from what
its file gives, when a newer run exists, when the file was run at other settings, or when it
comes from an older version of the script (its method or settings changed since: the table is
stale). CI runs
`check` (tests/unit/test_bench_tables.py).
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _results

README = _results.ROOT / "bench" / "README.md"
DOCS = _results.ROOT / "docs"
QUICK_DIR = _results.RESULTS_DIR / "quick"


@dataclass(frozen=True)
class Bench:
    name: str  # the results' file stem and the README block's name
    script: str  # bench/<script>.py
    full: tuple[str, ...]  # published settings (the script's defaults unless said)
    quick: tuple[str, ...]  # seconds, not minutes: does it still run?
    what: str


#: The benchmarks whose tables are generated, in the order `all` runs them.
BENCHES = (
    Bench(
        "latency", "latency", (), ("--rounds", "2", "--requests", "50", "--processes", "1"),
        "concurrency 1: onnxruntime, mlrt V2 JSON/binary/gRPC, the HTTP and gRPC floors, a naive server",
    ),
    Bench(
        "serving", "serving", (), ("--quick",),
        "wrk at c=1/8/64/256: mlrt (JSON, binary, no batching, drift), naive, floors, MLServer x3; overload",
    ),
    Bench(
        "kernels", "kernels", (),
        ("--rows", "20000", "--rounds", "1", "--request-rounds", "1", "--request-calls", "200",
         "--no-evidently"),
        "drift kernels against numpy at its best and Evidently; the per-request path; PSI and fit",
    ),
    Bench(
        "predict", "predict", (), ("--rows", "131072", "--tree-rows", "65536", "--rounds", "1"),
        "batch scoring: mlrt predict against bare onnxruntime, the files alone and the job by hand",
    ),
    Bench(
        "predict_rss", "predict", ("--rss",), ("--rss", "--rss-rows", "65536", "131072"),
        "peak memory of mlrt predict from 1M to 10M rows",
    ),
    Bench(
        "stages", "stages", ("--baseline-ref", "c5672e9"), ("--rounds", "1", "--seconds", "1"),
        "the server's CPU per request at c=1 and c=64 by stage, against the code before issue 24's work",
    ),
    Bench(
        "cold_request", "cold_request", (), ("--rounds", "2", "--calls", "200"),
        "one request's decode and onnxruntime steps, warm and after an idle gap: native against Python",
    ),
    Bench(
        "sidecar", "sidecar", (), ("--runs", "2", "--rounds", "2", "--requests", "50", "--processes", "1"),
        "concurrency 1 in-host: the client over a Unix socket and TCP, in-process predict, session.run",
    ),
    Bench(
        "sidecar_contention", "sidecar", ("--contention",),
        ("--contention", "--rounds", "2", "--threads", "1", "4", "--seconds", "0.5", "--repeats", "1"),
        "a slow model and 1-8 client threads: the client's default wait against polling",
    ),
    Bench(
        "timeline", "timeline", (), ("--calls", "300", "--runs", "1"),
        "one sidecar call's steps, client and server clocks joined",
    ),
    Bench(
        "wakeup", "wakeup", (), ("--rounds", "2", "--calls", "50"),
        "what sleeping for an answer costs against polling for it, by server work time",
    ),
    Bench(
        "python_inline", "python_inline", (), ("--rounds", "3", "--requests", "50"),
        "a small Python model at c=1: on its thread (the default) against inline on the event loop",
    ),
    Bench(
        "datatypes", "datatypes", (), ("--rounds", "3", "--calls", "200"),
        "decode and encode cost per V2 datatype, JSON and binary",
    ),
    Bench(
        "hooks_dispatch", "hooks_dispatch", ("--rounds", "60"), ("--rounds", "2", "--calls", "200"),
        "what the drift tick pays the hook dispatcher per observe call",
    ),
    Bench(
        "monitor_cost", "monitor_cost", (),
        ("--calls", "64,128", "--repeat", "1", "--rounds", "2", "--round-calls", "100"),
        "instructions and wall time the drift monitor adds to an in-process predict",
    ),
    Bench(
        "workers", "workers", (), ("--rounds", "1", "--seconds", "1"),
        "c=64 throughput of mlrt serve --workers 1 against --workers 2",
    ),
    Bench(
        "shadow", "shadow", (), ("--rounds", "1", "--duration", "1"),
        "what shadow traffic, the prediction log and feedback cost the primary at c=64",
    ),
    Bench(
        "dashboard_cost", "dashboard_cost", (), ("--rounds", "1", "--seconds", "1"),
        "c=64 throughput with a browser on the dashboard, a blank page, and dashboard.json polled",
    ),
    Bench(
        "soak", "soak", (), ("--requests", "50000", "--chunk-s", "1"),
        "the server's RSS over a million requests: a leak shows as growth",
    ),
    Bench(
        "hotswap", "hotswap", (),
        ("--concurrency", "4", "--duration", "3", "--promotions", "2", "--swaps", "3"),
        "promotions of a registry alias under load; memory across swaps",
    ),
    Bench(
        "ab", "ab", ("--baseline-ref", "f2e16d2"),
        ("--baseline-ref", "f2e16d2", "--rounds", "1", "--requests", "30", "--duration", "1"),
        "this checkout against an earlier commit: c=1 p50 and p99, wrk c=64 req/s",
    ),
    Bench(
        "spark_predict", "spark_predict", (), ("--rows", "200000", "--naive-rows", "20000", "--rounds", "1"),
        "Spark local[2], 10M rows: mapInArrow against pandas_udf, a per-row UDF, no model",
    ),
    Bench(
        "validate_rates", "validate_rates", (), ("--repeats", "2", "--datasets", "fertility"),
        "mlrt validate's false alarms on unchanged real data and detection of injected defects",
    ),
    Bench(
        "drift_power", "drift_power", (),
        ("--datasets", "fertility", "--windows", "40", "--shift-windows", "20", "--references", "2",
         "--sizes", "100,500", "--no-evidently"),
        "the drift rule's false alarms and detection on real data against PSI > 0.1 and Evidently",
    ),
    Bench(
        "drift_power_fit64", "drift_power", ("--fit-dtype", "float64", "--no-evidently"),
        ("--fit-dtype", "float64", "--datasets", "fertility", "--windows", "40", "--shift-windows", "20",
         "--references", "2", "--sizes", "100,500", "--no-evidently"),
        "the same, profiled in float64 and served as float32: the mismatch that once alarmed always",
    ),
)  # fmt: skip
BY_NAME = {b.name: b for b in BENCHES}

_BLOCK = re.compile(
    r"<!-- bench:(?P<name>\w+) (?P<file>results/\S+\.json) -->\n(?P<body>.*?)<!-- /bench:(?P=name) -->",
    re.S,
)


def module(bench: Bench) -> Any:
    return importlib.import_module(f"bench.{bench.script}")


def render(bench: Bench, path: Path, where: str = "results/") -> str:
    """A block's body: the run's tables, then the line naming the command and the raw file
    (as `where` + its name: the folder as the page that shows the block reaches it)."""
    saved = _results.read(path)
    body = module(bench).markdown(saved, bench.name).rstrip("\n")
    return f"{body}\n\n{_results.heading(saved, where + path.name)}\n"


def pages() -> list[tuple[Path, str]]:
    """The pages whose blocks `tables` fills, each with how it names the results folder."""
    return [(README, "results/"), *((page, "bench/results/") for page in sorted(DOCS.glob("*.md")))]


def published_command(bench: Bench) -> str:
    """The command a run at the published settings records (`Run.envelope`'s "command")."""
    return " ".join(["python -m", f"bench.{bench.script}", *bench.full])


def newest_current(bench: Bench, results: Path) -> Path | None:
    """The newest run at the published settings and the script's current version: a run at
    other settings (another baseline, fewer rounds) is kept beside it, never published."""
    version, command = module(bench).SCRIPT_VERSION, published_command(bench)
    runs = [
        p
        for p in _results.runs_of(bench.name, results)
        if (saved := _results.read(p))["script_version"] == version and saved["command"] == command
    ]
    return runs[-1] if runs else None


def problems(
    text: str, results: Path = _results.RESULTS_DIR, where: str = "results/", every: bool = True
) -> list[str]:
    """What is wrong with the generated blocks of `text` (a page's contents), whose files are
    named relative to the folder above `results`; `every`: the page must show every benchmark
    (bench/README.md does)."""
    found: list[str] = []
    seen = set()
    for m in _BLOCK.finditer(text):
        name, rel = m["name"], m["file"]
        seen.add(name)
        bench = BY_NAME.get(name)
        if bench is None:
            found.append(f"block '{name}': no such benchmark in bench/__main__.py")
            continue
        path = results.parent / rel
        if not path.is_file():
            found.append(f"block '{name}': {rel} does not exist")
            continue
        saved = _results.read(path)
        version = module(bench).SCRIPT_VERSION
        if saved.get("script_version") != version:
            found.append(
                f"block '{name}': {rel} comes from version {saved.get('script_version')} of "
                f"bench/{bench.script}.py, which is at version {version} now: rerun "
                f"`python -m bench all --full --only {name}`"
            )
            continue
        if saved.get("command") != published_command(bench):
            found.append(
                f"block '{name}': {rel} was run as `{saved.get('command')}`, not at the published "
                f"settings (`{published_command(bench)}`)"
            )
            continue
        newest = newest_current(bench, results)
        if newest is not None and newest.resolve() != path.resolve():
            found.append(
                f"block '{name}': {rel} is not the newest run ({newest.name}): `python -m bench tables`"
            )
        if m["body"] != render(bench, path, where):
            found.append(f"block '{name}': differs from what {rel} gives: `python -m bench tables`")
    for bench in BENCHES if every else ():
        if bench.name not in seen:
            found.append(f"bench/README.md has no generated block for '{bench.name}'")
    return found


def check_pages(results: Path = _results.RESULTS_DIR) -> list[str]:
    """`problems` of every page, each line naming its page."""
    found = []
    for page, where in pages():
        shown = page.relative_to(_results.ROOT)
        every = page == README
        found += [f"{shown}: {line}" for line in problems(page.read_text(), results, where, every)]
    return found


def write_tables(results: Path = _results.RESULTS_DIR) -> None:
    """Fill the blocks of every page; a page without blocks is left untouched."""
    for page, where in pages():
        text = page.read_text()
        new = regenerate(text, results, where)
        if new != text:
            page.write_text(new)


def regenerate(text: str, results: Path = _results.RESULTS_DIR, where: str = "results/") -> str:
    """`text` with every generated block filled from the newest current run of its benchmark."""

    def fill(m: re.Match[str]) -> str:
        bench = BY_NAME.get(m["name"])
        path = newest_current(bench, results) if bench else None
        if bench is None or path is None:
            return m.group(0)  # `check` says why
        rel = f"{results.name}/{path.name}"
        return f"<!-- bench:{bench.name} {rel} -->\n{render(bench, path, where)}<!-- /bench:{bench.name} -->"

    return _BLOCK.sub(fill, text)


def run_all(quick: bool, selected: list[Bench], directory: Path | None = None) -> int:
    directory = directory or (QUICK_DIR if quick else _results.RESULTS_DIR)
    failed = []
    for i, bench in enumerate(selected, 1):
        stamp = time.strftime("%Y-%m-%dT%H%M%S")
        out = directory / f"{bench.name}-{stamp}.json"
        cmd = [sys.executable, "-m", f"bench.{bench.script}", *(bench.quick if quick else bench.full)]
        print(
            f"[bench all] {i}/{len(selected)} {bench.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True
        )
        started = time.monotonic()
        code = subprocess.call([*cmd, "--json", str(out)], cwd=_results.ROOT)
        took = time.monotonic() - started
        print(f"[bench all] {bench.name}: exit {code} after {took:.0f} s", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(bench.name)
    if not quick and directory == _results.RESULTS_DIR:
        write_tables()
    if failed:
        print(f"[bench all] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _names(value: str) -> list[str]:
    names = [n for n in value.split(",") if n]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; `python -m bench list` names them")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("all", help="run every benchmark, then regenerate the tables")
    mode = a.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a short run of each, tables untouched")
    mode.add_argument("--full", action="store_true", help="the published settings (the default)")
    a.add_argument("--only", type=_names, default=None, help="these benchmarks (comma-separated)")
    a.add_argument("--skip", type=_names, default=[], help="not these")
    a.add_argument("--results", type=Path, default=None,
                   help="write the raw results here instead (and leave the tables)")  # fmt: skip
    sub.add_parser("tables", help="regenerate the tables of bench/README.md and docs/ from bench/results/")
    sub.add_parser("check", help="exit 1 when a table is not what the newest current results give")
    sub.add_parser("list", help="the benchmarks `all` runs")
    args = p.parse_args(argv)
    if args.command == "list":
        for b in BENCHES:
            print(f"{b.name:<14} python -m bench.{b.script} {' '.join(b.full)}".rstrip() + f"  # {b.what}")
        return 0
    if args.command == "tables":
        write_tables()
        args.command = "check"
    if args.command == "check":
        found = check_pages()
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    selected = [b for b in BENCHES if (args.only is None or b.name in args.only) and b.name not in args.skip]
    return run_all(args.quick, selected, args.results)


if __name__ == "__main__":
    raise SystemExit(main())
