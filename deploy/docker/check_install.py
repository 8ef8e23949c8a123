"""Run the install steps of deploy/docker/Dockerfile without a container engine, and check
that what they install serves.

    python deploy/docker/check_install.py [--keep]      # from anywhere; exit status 0: passed

Where there is no Docker engine (or none that can pull python:3.11-slim), this is the next
best thing to `docker build` + `docker run`. Step for step with the Dockerfile:

1. The build context: the files the builder stage COPYs, less what .dockerignore keeps out,
   copied to a scratch folder. A file the builder does not copy is missing here too.
2. Builder: `pip wheel --no-deps` of that folder, with the Python running this script (it
   needs what the builder stage installs: a C compiler and Python's headers).
3. Runtime: a fresh virtualenv that installs that wheel and nothing else of the checkout
   (not editable; dependencies from the package index).
4. The volume: the demo model that ships in the installed package, copied to
   <scratch>/models/model.onnx, stands for the folder mounted at /models.
5. The container: ENTRYPOINT + CMD as the Dockerfile writes them (/models mapped to that
   folder), run from the WORKDIR with the final stage's ENV, MLRT_PORT set to a free port
   (`docker run -e MLRT_PORT=...`). Run as root, the server runs as the image's USER.
6. HEALTHCHECK's own command: it fails while nothing listens, and passes within the start
   period and retries it allows. Then an inference request, and SIGTERM (`docker stop`):
   the server must exit 0.

What it cannot check: the base image itself, apt-get, useradd and the layer order; the
Dockerfile's facts (stages, USER, what the runtime stage copies) are checked by
tests/integration/test_deploy_docker.py. Needs only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DOCKERFILE = HERE / "Dockerfile"

# --- a small Dockerfile reader (enough for the Dockerfiles in this folder) ---------------


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined

    def exec_form(self) -> list[str] | None:
        """The JSON array form of RUN/CMD/ENTRYPOINT, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"{self.keyword}: not a JSON array of strings: {text}")
        return value

    def flags(self) -> tuple[dict[str, str], list[str]]:
        """Leading --name=value options, and the words after them (COPY, FROM)."""
        words = shlex.split(self.args)
        opts: dict[str, str] = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            opts[name] = value
        return opts, words


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for word in shlex.split(ins.args):
                key, eq, value = word.partition("=")
                if not eq:
                    raise ValueError(f"ENV {ins.args}: write ENV KEY=VALUE")
                out[key] = value
        return out


def logical_lines(text: str) -> list[str]:
    """Comment lines dropped, backslash continuations joined (comments inside a
    continued instruction are dropped too, as Docker does)."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (those before the first FROM) and the stages, in order; ${ARG}
    in FROM is replaced by its default."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        ins = Instruction(keyword.upper(), rest.strip())
        if ins.keyword == "FROM":
            _, words = ins.flags()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], ""), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if ins.keyword != "ARG":
                raise ValueError(f"{ins.keyword} before the first FROM")
            key, _, value = ins.args.partition("=")
            args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append(ins)
    return args, stages


def healthcheck(ins: Instruction) -> tuple[dict[str, str], list[str]]:
    """HEALTHCHECK's options (--interval=10s, ...) and its command in exec form."""
    found = re.match(r"(.*?)(?:^|\s)CMD\s+(.*)$", ins.args)
    if not found:
        raise ValueError("HEALTHCHECK without CMD")
    head, command = found.groups()
    opts = dict(w[2:].partition("=")[::2] for w in shlex.split(head))
    cmd = Instruction("CMD", command).exec_form()
    if cmd is None:
        raise ValueError("write HEALTHCHECK CMD in exec form (a JSON array): slim images may lack a shell")
    return opts, cmd


def seconds(duration: str) -> float:
    """Docker's durations as HEALTHCHECK writes them: 30s, 1m30s, 500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def dockerignore_patterns(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.lstrip("/") for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def ignored(relpath: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `relpath` (posix, relative to the context) out of the
    context: a pattern matches the path or a folder above it. `!` exceptions unsupported."""
    if any(p.startswith("!") for p in patterns):
        raise ValueError(".dockerignore exceptions (!) are not supported by this check")
    regexes = [_pattern_regex(p.rstrip("/")) for p in patterns]
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(r.match(prefix) for r in regexes for prefix in prefixes)


# --- the check ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"check_install: {message}", flush=True)


def run(cmd: list[str], **kwargs) -> None:
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy_context(builder: Stage, dest: Path) -> None:
    """The builder's COPY sources, as the context would hold them, to `dest` (its WORKDIR)."""
    patterns = dockerignore_patterns(REPO_ROOT / ".dockerignore")
    for ins in builder.all("COPY"):
        opts, words = ins.flags()
        if "from" in opts:
            continue
        *sources, target = words
        for source in sources:
            src = REPO_ROOT / source
            if not src.exists():
                raise SystemExit(f"check_install: the builder copies {source}, which the checkout lacks")
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for f in files:
                rel = f.relative_to(REPO_ROOT).as_posix()
                if ignored(rel, patterns):
                    continue
                inside = f.relative_to(src) if src.is_dir() else Path(f.name)
                out = dest / target / inside if (target.endswith("/") or src.is_dir()) else dest / target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out)


def infer_request(base: str, model: str) -> None:
    with urllib.request.urlopen(f"{base}/v2/models/{model}", timeout=10) as r:
        meta = json.load(r)
    inputs = []
    for spec in meta["inputs"]:
        shape = [1 if d < 0 else d for d in spec["shape"]]
        size = 1
        for d in shape:
            size *= d
        if spec["datatype"] not in ("FP32", "FP64", "INT32", "INT64"):
            raise SystemExit(f"check_install: no test data for datatype {spec['datatype']}")
        inputs.append({**spec, "shape": shape, "data": [0] * size})
    body = json.dumps({"inputs": inputs}).encode()
    req = urllib.request.Request(
        f"{base}/v2/models/{model}/infer", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.load(r)
    names = [o["name"] for o in answer["outputs"]]
    log(f"inference on {model!r} answered outputs {names}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dockerfile", type=Path, default=DOCKERFILE)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    opts = parser.parse_args(argv)

    _, stages = parse_dockerfile(opts.dockerfile.read_text())
    if len(stages) < 2:
        raise SystemExit("check_install: expected a builder stage and a runtime stage")
    builder, final = stages[0], stages[-1]

    scratch = Path(tempfile.mkdtemp(prefix="mlrt-check-install-"))
    try:
        return _check(builder, final, scratch)
    finally:
        if opts.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _check(builder: Stage, final: Stage, scratch: Path) -> int:
    started = time.monotonic()
    workdir = builder.last("WORKDIR")
    src = scratch / "context" / (workdir.args.strip().lstrip("/") if workdir else "")
    copy_context(builder, src)
    log(f"1. context: {sum(1 for p in src.rglob('*') if p.is_file())} files copied as the builder does")

    wheels = scratch / "wheels"
    # pip's own cache is kept out, as the builder's --no-cache-dir does.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_CACHE_DIR"] = "1"
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(src)],
        env=env,
    )
    built = sorted(wheels.glob("mlrt-*.whl"))
    if len(built) != 1:
        raise SystemExit(f"check_install: expected one mlrt wheel, found {[p.name for p in built]}")
    log(f"2. builder: {built[0].name}")

    venv = scratch / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(built[0])], env=env)
    models = scratch / "models"
    models.mkdir()
    probe = (
        "import importlib, pathlib, sys, runtime\n"
        "for name in sys.argv[1:]: importlib.import_module('runtime._native.' + name)\n"
        "print(pathlib.Path(runtime.__file__).parent)"
    )
    natives = sorted(p.stem for p in (REPO_ROOT / "native").glob("*.pyx"))
    package = Path(
        subprocess.run(
            [str(py), "-c", probe, *natives], cwd=models, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    if venv.resolve() not in package.resolve().parents:
        raise SystemExit(f"check_install: runtime was imported from {package}, not from the virtualenv")
    log(f"3. runtime: installed in {package.relative_to(venv)}; compiled: {', '.join(natives)}")

    shutil.copy(package / "demo" / "model.onnx", models / "model.onnx")
    log("4. volume: the package's demo model as <volume>/model.onnx")

    return _run_container(final, venv, models, env, started)


def _image_user(user: Instruction | None, venv: Path, models: Path, env: dict[str, str]) -> dict[str, Any]:
    """Popen arguments that run the server as the image's USER, when this check runs as root
    and that user can run the virtualenv's interpreter (a Python installed under root's home
    cannot be); models read-only, HOME a fresh folder of its own. Else {}: the current user."""
    if os.geteuid() != 0 or user is None:
        log("5. container: as the current user (not root: the image's USER is not taken)")
        return {}
    uid_text, _, gid_text = user.args.strip().partition(":")
    uid, gid = int(uid_text), int(gid_text or uid_text)
    root = models.parent
    for p in (root, *root.rglob("*")):
        p.chmod(p.stat().st_mode | 0o444 | (0o111 if p.is_dir() else 0))
    run_as: dict[str, Any] = {"user": uid, "group": gid, "extra_groups": []}
    try:
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "pass"], check=True, capture_output=True, **run_as
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        log(f"5. container: as root, since uid {uid} cannot run this Python ({exc})")
        return {}
    home = root / "home"
    home.mkdir()
    os.chown(home, uid, gid)
    models.chmod(0o555)
    env["HOME"] = str(home)
    log(f"5. container: as uid {uid}, models read-only")
    return run_as


def _run_container(final: Stage, venv: Path, models: Path, env: dict[str, str], started: float) -> int:
    entrypoint = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    health = final.last("HEALTHCHECK")
    workdir = final.last("WORKDIR")
    user = final.last("USER")
    if entrypoint is None or entrypoint.exec_form() is None or health is None:
        raise SystemExit("check_install: the final stage needs ENTRYPOINT (exec form) and HEALTHCHECK")

    def mounted(arg: str) -> str:  # /models inside the container is the folder of step 4
        return re.sub(r"(?<![^=\s])/models(?=/|$)", str(models), arg)

    argv = [mounted(a) for a in [*entrypoint.exec_form(), *(cmd.exec_form() if cmd else [])]]
    port = free_port()
    container_env = {**env, **final.env(), "MLRT_PORT": str(port)}
    container_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cwd = Path(mounted(workdir.args.strip())) if workdir else models
    health_opts, health_cmd = healthcheck(health)

    run_as = _image_user(user, venv, models, container_env)

    def health_status() -> int:
        try:
            return subprocess.run(
                health_cmd,
                env=container_env,
                cwd=cwd,
                capture_output=True,
                timeout=seconds(health_opts.get("timeout", "30s")),
                **run_as,
            ).returncode
        except subprocess.TimeoutExpired:
            return 124

    if health_status() == 0:
        raise SystemExit("check_install: HEALTHCHECK passed with no server running: it checks nothing")

    log(f"5. container: {' '.join(argv)}  (cwd {cwd}, MLRT_PORT={port})")
    server = subprocess.Popen(argv, cwd=cwd, env=container_env, **run_as)
    try:
        start_period = seconds(health_opts.get("start-period", "0s"))
        interval = seconds(health_opts.get("interval", "30s"))
        deadline = time.monotonic() + start_period + interval * int(health_opts.get("retries", "3"))
        t0 = time.monotonic()
        while health_status() != 0:
            if server.poll() is not None:
                raise SystemExit(f"check_install: mlrt serve exited with {server.returncode} before healthy")
            if time.monotonic() > deadline:
                raise SystemExit("check_install: HEALTHCHECK still failing past its start period and retries")
            time.sleep(0.5)
        log(f"6. HEALTHCHECK passed {time.monotonic() - t0:.1f} s after the start")
        model = argv[-1].partition("=")[0] if "=" in argv[-1] else Path(argv[-1]).stem
        infer_request(f"http://127.0.0.1:{port}", model)
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=float(container_env.get("MLRT_GRACEFUL_TIMEOUT", "30")) + 15)
        if code != 0:
            raise SystemExit(f"check_install: mlrt serve exited with {code} on SIGTERM")
        log("6. SIGTERM: exit 0")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    log(f"passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
