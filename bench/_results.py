"""Raw benchmark results on disk: one JSON file per run under bench/results/, each carrying
what a skeptic needs to judge and rerun it (the command, the commit and whether the measured
code had uncommitted changes, package versions, the machine, its load before and after).

Every script that publishes a table writes its run through `save`, declares a
SCRIPT_VERSION (raised when a change to the script makes old results incomparable: another
method, other systems, other settings by default) and renders its tables from a saved result
with `markdown(result)`, so the tables in bench/README.md are regenerated from these files
(`python -m bench tables`) and checked against them (`python -m bench check`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

#: Packages whose versions move the figures; those not installed are left out.
PACKAGES = (
    "numpy", "onnxruntime", "pyarrow", "uvloop", "uvicorn", "httptools", "starlette", "msgpack",
    "Cython", "grpcio", "pyspark", "dask", "mlserver", "evidently",
)  # fmt: skip


def git(*args: str) -> str:
    """A git command's output in the checkout ("" outside a checkout or without git)."""
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=ROOT)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def installed(packages: Iterable[str]) -> dict[str, str]:
    """The installed version of each of `packages`; those not installed are left out."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **installed(PACKAGES)}


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "platform": platform.platform(),
    }


class Run:
    """One benchmark run: `Run(...)` as it starts (the load and time before), then `save`."""

    def __init__(
        self,
        benchmark: str,
        version: int,
        settings: dict[str, Any],
        measured: Sequence[str] = ("runtime", "native", "setup.py"),
        argv: Sequence[str] | None = None,
        script: str | None = None,
    ) -> None:
        self.benchmark = benchmark
        self.script = script or benchmark
        self.version = version
        self.settings = settings
        self.measured = [*measured, f"bench/{self.script}.py"]
        self.argv = _without_output(list(sys.argv[1:] if argv is None else argv))
        self.started = _dt.datetime.now().astimezone()
        self.load_before = load()

    def envelope(self, results: dict[str, Any]) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "script_version": self.version,
            "command": " ".join(["python -m", f"bench.{self.script}", *self.argv]),
            "meta": {
                "date": self.started.isoformat(timespec="seconds"),
                "commit": git("rev-parse", "--short=7", "HEAD"),
                # Uncommitted changes to what the figures measure (other files may differ too).
                "dirty": git("status", "--porcelain", "--", *self.measured).splitlines(),
                "load_before": self.load_before,
                "load_after": load(),
                "machine": machine(),
                "versions": versions(),
            },
            "settings": self.settings,
            "results": results,
        }

    def save(self, results: dict[str, Any], path: str | os.PathLike[str] | None = None) -> Path:
        """Write the run as JSON: to `path`, else bench/results/<benchmark>-<date>T<time>.json."""
        out = Path(path) if path else RESULTS_DIR / f"{self.benchmark}-{self.started:%Y-%m-%dT%H%M%S}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.envelope(results), indent=1) + "\n")
        print(f"[bench.{self.script}] raw results: {_shown(out)}", file=sys.stderr, flush=True)
        return out


def _without_output(argv: list[str]) -> list[str]:
    """The arguments that shape a run, without `--json [PATH]` (where its figures are written
    is no part of how they were made, and a path would name one machine's folders)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            if not arg.startswith("-"):
                continue
        if arg == "--json":
            skip = True
            continue
        if arg.startswith("--json="):
            continue
        out.append(arg)
    return out


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def runs_of(benchmark: str, directory: Path | None = None) -> list[Path]:
    """The saved runs of one benchmark written by `Run.save`, oldest first (by the date in
    their names; files of other layouts, kept from before, are not runs)."""
    found = []
    for path in sorted((directory or RESULTS_DIR).glob(f"{benchmark}-[0-9]*.json")):
        try:
            saved = read(path)
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict) and saved.get("benchmark") == benchmark and "results" in saved:
            found.append(path)
    return found


def heading(result: dict[str, Any], name: str) -> str:
    """The line under a generated table: where the figures come from (`name`, the raw file as
    the table's page names it) and how to get them again."""
    meta = result["meta"]
    changed = [line.split(None, 1)[-1] for line in meta.get("dirty") or []]  # `git status --porcelain`
    dirty = f" (with uncommitted changes to {', '.join(changed)})" if changed else ""
    when = meta["date"].replace("T", " ")[:16]
    cpus = meta["machine"].get("usable_cpus")
    return (
        f"`{result['command']}` on commit {meta['commit']}{dirty}, {when}, {cpus} CPUs, "
        f"load {_load(meta.get('load_before'))} before and {_load(meta.get('load_after'))} after; "
        f"raw: `{name}`"
    )


def _load(values: list[float] | None) -> str:
    return "?" if not values else f"{values[0]:.2f}"


def json_option(parser: argparse.ArgumentParser) -> None:
    """Every script's `--json [PATH]`: also write the run's raw results (`Run.save`)."""
    parser.add_argument(
        "--json", nargs="?", const="", default=None, metavar="PATH",
        help="also write the raw results: to PATH, or to bench/results/NAME-DATE.json without one",
    )  # fmt: skip


def spread(values: Iterable[float], fmt: str = ".1f", sign: str = "") -> str:
    """'median [lowest-highest]' of `values`, each written with the format spec `fmt` (`sign`
    "+" puts a sign on all three). The ends are joined by " to " where one may be negative, so
    a minus is not read as the dash."""
    v = [float(x) for x in values]
    sep = " to " if sign or min(v) < 0 else "-"
    spec = sign + fmt
    return f"{statistics.median(v):{spec}} [{min(v):{spec}}{sep}{max(v):{spec}}]"
