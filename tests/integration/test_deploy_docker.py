"""The container image (deploy/docker/): the Dockerfile's facts, .dockerignore, its
HEALTHCHECK command against a real server, and its install steps run without an engine
(deploy/docker/check_install.py: there is no Docker engine where these tests run)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from bench import models as bench_models
from runtime import __version__
from runtime.cli import build_parser
from tests.integration.deploy_files import DOCKER, check_install, stages
from tests.integration.serving import REPO_ROOT, free_port, start_server, stop_server

ci = check_install()


def test_the_dockerfile_builds_a_wheel_in_one_stage_and_installs_only_it_in_a_slim_one() -> None:
    args, (builder, final, *more) = stages()
    assert not more, "two stages: a builder and the runtime"
    assert builder.name == "builder" and final.name is None
    assert builder.base == final.base == f"python:{args['PYTHON_VERSION']}-slim"
    # The builder has the compiler the Cython extensions need (the image has Python's headers).
    builder_runs = " ".join(i.args for i in builder.all("RUN"))
    assert "apt-get install" in builder_runs and " gcc " in f" {builder_runs} "
    assert "pip wheel" in builder_runs and "--no-deps" in builder_runs
    copied = [w for i in builder.all("COPY") for w in i.flags()[1][:-1]]
    assert set(copied) == {"pyproject.toml", "setup.py", "README.md", "native/", "runtime/"}
    wheel_dir = shlex.split(builder_runs.split("--wheel-dir", 1)[1])[0]

    # The runtime stage copies the builder's wheel folder and nothing else: no sources, no
    # compiler; it installs the wheel and removes it.
    copies = final.all("COPY") + final.all("ADD")
    assert len(copies) == 1
    opts, (source, target) = copies[0].flags()
    assert opts == {"from": "builder"} and source.rstrip("/") == wheel_dir
    runs = " ".join(i.args for i in final.all("RUN"))
    assert f"{target.rstrip('/')}/mlrt-*.whl" in runs and "pip install" in runs
    assert f"rm -rf {target.rstrip('/')}" in runs
    assert "apt-get" not in runs and "gcc" not in runs


def test_the_image_runs_mlrt_serve_as_a_user_with_a_readiness_healthcheck() -> None:
    _, (_, final) = stages()
    user = final.last("USER").args.strip()
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, user
    assert any(f"--uid {uid}" in i.args for i in final.all("RUN")), "the user exists in /etc/passwd"
    # USER comes after every RUN: nothing later runs as root.
    order = [i.keyword for i in final.instructions]
    assert order.index("USER") > max(n for n, k in enumerate(order) if k == "RUN")

    opts, cmd = ci.healthcheck(final.last("HEALTHCHECK"))
    assert cmd[:2] == ["python", "-c"], "slim images have no curl: Python's urllib"
    assert "/v2/health/ready" in cmd[2] and "MLRT_PORT" in cmd[2]
    assert {"interval", "timeout", "start-period", "retries"} <= set(opts)
    assert ci.seconds(opts["timeout"]) < ci.seconds(opts["interval"])

    env = final.env()
    assert final.last("EXPOSE").args.split() == [env["MLRT_PORT"]] == ["8000"]
    entrypoint, cmd_args = final.last("ENTRYPOINT").exec_form(), final.last("CMD").exec_form()
    assert entrypoint[:2] == ["mlrt", "serve"] and "--host" in entrypoint
    assert final.last("STOPSIGNAL").args == "SIGTERM"

    # What `docker run IMAGE` runs parses with mlrt's own parser, serving from /models.
    parsed = build_parser().parse_args(entrypoint[1:] + cmd_args)
    assert parsed.command == "serve" and parsed.host == "0.0.0.0"
    workdir = final.last("WORKDIR").args
    assert workdir == "/models" and parsed.models == ["model=/models/model.onnx"]


def test_the_baked_example_puts_its_model_where_the_default_cmd_looks() -> None:
    args, (stage,) = stages("Dockerfile.baked")
    _, (_, final) = stages()
    assert stage.base == args["MLRT_IMAGE"] == f"mlrt:{__version__}"
    (copy,) = stage.all("COPY")
    _, (source, target) = copy.flags()
    assert source == "model.onnx" and f"model={target}" in final.last("CMD").exec_form()
    assert f"mlrt:{__version__}" in (DOCKER / "Dockerfile").read_text(), "the tag its comments build"


def test_dockerignore_keeps_build_output_out_and_the_builder_inputs_in() -> None:
    patterns = ci.dockerignore_patterns(REPO_ROOT / ".dockerignore")
    out = [
        ".git/HEAD",
        ".venv/bin/python",
        "build/lib/runtime/cli.py",
        "dist/mlrt-0.1.0.tar.gz",
        "mlrt.egg-info/PKG-INFO",
        "runtime/_native/_psi.cpython-311-x86_64-linux-gnu.so",
        "runtime/server/__pycache__/app.cpython-311.pyc",
        "native/_psi.c",
        "tests/artifacts/dashboard.png",
        ".pytest_cache/v/cache/nodeids",
    ]
    kept = ["pyproject.toml", "setup.py", "README.md", "native/_psi.pyx", "native/common.pxd"]
    kept += ["native/_count_ge.h", "runtime/cli.py", "runtime/demo/model.onnx"]
    assert [p for p in out if not ci.ignored(p, patterns)] == []
    assert [p for p in kept if ci.ignored(p, patterns)] == []
    # Every file git tracks under the builder's sources reaches the build.
    tracked = subprocess.run(
        ["git", "ls-files", "native", "runtime"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked and [p for p in tracked if ci.ignored(p, patterns)] == []


@pytest.mark.integration
def test_the_healthcheck_command_passes_on_a_ready_server_and_fails_on_none(tmp_path: Path) -> None:
    _, (_, final) = stages()
    _, cmd = ci.healthcheck(final.last("HEALTHCHECK"))
    bench_models.mlp(tmp_path / "mlp.onnx")
    server = start_server([f"mlp={tmp_path / 'mlp.onnx'}"], tmp_path)
    try:
        port = str(urlparse(server.url).port)
        argv = [sys.executable, *cmd[1:]]  # `python` in the image: any Python runs it
        ok = subprocess.run(argv, env={**os.environ, "MLRT_PORT": port}, capture_output=True, timeout=10)
        assert ok.returncode == 0, ok.stderr
    finally:
        stop_server(server)
    closed = subprocess.run(argv, env={**os.environ, "MLRT_PORT": str(free_port())}, capture_output=True)
    assert closed.returncode != 0


@pytest.mark.slow
@pytest.mark.integration
def test_the_dockerfile_install_steps_serve_from_a_fresh_virtualenv() -> None:
    """deploy/docker/check_install.py: the wheel built from what the builder copies,
    installed alone in a fresh virtualenv, serving the ENTRYPOINT + CMD until the
    HEALTHCHECK passes (about 70 s: the wheel's build and its dependencies' install)."""
    proc = subprocess.run(
        [sys.executable, str(DOCKER / "check_install.py")], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    steps = (
        "1. context",
        "2. builder",
        "3. runtime",
        "4. volume",
        "6. HEALTHCHECK passed",
        "6. SIGTERM: exit 0",
    )
    for step in steps:
        assert f"check_install: {step}" in proc.stdout, proc.stdout
