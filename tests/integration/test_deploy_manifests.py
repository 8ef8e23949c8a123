"""The Kubernetes and KServe manifests (deploy/kubernetes/, deploy/kserve/): each checked
against its schema, and against mlrt itself.

Schemas: the core kinds with kubernetes-validate's copies of the Kubernetes API schemas (strict:
an unknown field is an error, as `kubectl apply --validate=strict` makes it); KServe's kinds
with the OpenAPI schemas of KServe's CRDs, vendored in tests/data/kserve/ (where they came from
is written at their top), made strict the same way. Each validator is shown to reject a
misspelled field, so that a pass means something.

mlrt: the containers' commands parse with mlrt's own argparse; the Deployment's and the KServe
runtime's containers are run as they are written (the image's ENTRYPOINT, the manifests' args,
command and env; /models and /mnt/models mapped to folders here; 127.0.0.1 and a free port)
and every probe path and the Prometheus path must answer; grace periods outlast mlrt's drain;
workers match the requested cores.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from bench import models as bench_models
from runtime import __version__
from runtime.cli import build_parser
from runtime.config import ServerConfig, parse_workers
from tests.integration.deploy_files import stages
from tests.integration.launch import environ, mlrt
from tests.integration.serving import REPO_ROOT, free_port

K8S = REPO_ROOT / "deploy" / "kubernetes"
KSERVE = REPO_ROOT / "deploy" / "kserve"
SCHEMAS = REPO_ROOT / "tests" / "data" / "kserve"
IMAGE = f"registry.example.com/mlrt:{__version__}"
# The oldest Kubernetes these manifests are written for, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
READY_TIMEOUT_S = 60.0


def documents(folder: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def the(kind: str, folder: Path = K8S) -> dict[str, Any]:
    (doc,) = [d for d in documents(folder) if d["kind"] == kind]
    return doc


def pod_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {k: container[k]["httpGet"] for k in kinds if k in container}


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's port (a number, or a port's name) as a number."""
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(found)


# --- schemas ---------------------------------------------------------------------------------


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema with unknown fields refused where the API server would
    refuse them under strict field validation (everywhere but preserve-unknown-fields)."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = strict(out["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [strict(s) for s in out[key]]
    return out


KSERVE_SCHEMAS = {
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "clusterservingruntime.v1alpha1.schema.yaml",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice.v1beta1.schema.yaml",
}


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    schema = yaml.safe_load((SCHEMAS / KSERVE_SCHEMAS[doc["apiVersion"], doc["kind"]]).read_text())
    validator = jsonschema.Draft7Validator(strict(schema))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    name = doc["metadata"]["name"]
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
        errors.append(f"metadata/name: {name!r} is not a DNS-1035 label")
    return sorted(errors)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_kubernetes_manifests_match_the_kubernetes_api_schemas(version: str) -> None:
    docs = documents(K8S)
    assert sorted(d["kind"] for d in docs) == ["Deployment", "HorizontalPodAutoscaler", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)

    # A misspelled field is caught: the check is strict.
    bad = copy.deepcopy(the("Deployment"))
    pod_container(bad)["readinesProbe"] = pod_container(bad).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(bad, version, strict=True)


def test_the_kserve_manifests_match_kserves_crd_schemas() -> None:
    docs = documents(KSERVE)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterServingRuntime", "InferenceService", "InferenceService"]
    for doc in docs:
        assert kserve_errors(doc) == [], doc["metadata"]["name"]

    # Misspelled fields and wrong types are caught.
    runtime = copy.deepcopy(the("ClusterServingRuntime", KSERVE))
    runtime["spec"]["protocolVersion"] = runtime["spec"].pop("protocolVersions")
    runtime["spec"]["containers"][0]["readinesProbe"] = {}
    runtime["spec"]["supportedModelFormats"][0]["autoSelect"] = "no"
    errors = " ".join(kserve_errors(runtime))
    assert "'protocolVersion' was unexpected" in errors and "'readinesProbe' was unexpected" in errors
    assert "'no' is not of type 'boolean'" in errors
    isvc = copy.deepcopy([d for d in docs if d["kind"] == "InferenceService"][0])
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    assert any("'storageURI' was unexpected" in e for e in kserve_errors(isvc))


# --- the manifests against mlrt, without running it ------------------------------------------


def test_the_deployment_runs_the_image_as_built() -> None:
    _, (_, final) = stages()
    deployment, service, hpa = the("Deployment"), the("Service"), the("HorizontalPodAutoscaler")
    container = pod_container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert container["image"] == IMAGE

    # The image's user, its models folder, and its port.
    uid, _, gid = final.last("USER").args.partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert mount["mountPath"] == final.last("WORKDIR").args and mount["readOnly"] is True
    # The image's ENTRYPOINT with the manifest's args: what the container runs.
    parsed = build_parser().parse_args(final.last("ENTRYPOINT").exec_form()[1:] + container["args"])
    assert parsed.command == "serve" and parsed.host == "0.0.0.0"
    assert parsed.models and all(
        m.partition("=")[2].startswith(mount["mountPath"] + "/") for m in [*parsed.models, *parsed.profile]
    )
    # Each model is served with its reference profile: without one it has no drift to watch.
    names = sorted(m.partition("=")[0] for m in parsed.models)
    assert sorted(p.partition("=")[0] for p in parsed.profile) == names
    # Workers (MLRT_WORKERS) keep their sockets under TMPDIR: writable, although the root is not.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(m["mountPath"] == env_values(container)["TMPDIR"] for m in container["volumeMounts"])

    env = env_values(container)
    (http,) = container["ports"]
    assert http["name"] == "http" and http["containerPort"] == int(env["MLRT_PORT"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == http["containerPort"]
    (token,) = [e for e in container["env"] if e["name"] == "MLRT_ADMIN_TOKEN"]
    assert "value" not in token and token["valueFrom"]["secretKeyRef"]["name"]

    # The Service and the autoscaler find the Deployment and its port.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        deployment["kind"],
        deployment["metadata"]["name"],
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_one_worker_per_requested_core() -> None:
    container = pod_container(the("Deployment"))
    workers = parse_workers(env_values(container)["MLRT_WORKERS"])
    resources = container["resources"]
    assert workers == cores(resources["requests"]["cpu"]) == cores(resources["limits"]["cpu"])
    for kserve_container, _ in kserve_containers():
        workers = parse_workers(env_values(kserve_container)["MLRT_WORKERS"])
        assert workers == cores(kserve_container["resources"]["requests"]["cpu"])


def test_grace_periods_outlast_mlrts_drain() -> None:
    deployment = the("Deployment")
    container = pod_container(deployment)
    drain = float(env_values(container).get("MLRT_GRACEFUL_TIMEOUT", ServerConfig.graceful_timeout_s))
    assert drain == ServerConfig.graceful_timeout_s == 30
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert (
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain
    )
    for kserve_container, isvc in kserve_containers():
        drain = float(
            env_values(kserve_container).get("MLRT_GRACEFUL_TIMEOUT", ServerConfig.graceful_timeout_s)
        )
        assert isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] > drain


# --- KServe: what the controller makes of the runtime and an InferenceService ----------------


def render(container: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The runtime's container after KServe's placeholders: KServe runs the container, as
    JSON, through a Go template with the InferenceService's metadata. Only the fields of
    metadata ({{.Name}}, {{.Namespace}}, {{.Labels.k}}, {{.Annotations.k}}) are expected."""
    fields = {"Name": meta["name"], "Namespace": meta.get("namespace", "default")}

    def field(m: re.Match[str]) -> str:
        path = m[1].split(".")
        if len(path) == 1 and path[0] in fields:
            return fields[path[0]]
        if len(path) == 2 and path[0] in ("Labels", "Annotations"):
            return meta.get(path[0].lower(), {})[path[1]]
        raise AssertionError(f"placeholder {m[0]} is not one of the InferenceService's metadata")

    text = re.sub(r"\{\{\s*\.([A-Za-z.]+)\s*\}\}", field, json.dumps(container))
    assert "{{" not in text, text
    return json.loads(text)


def kserve_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """For each InferenceService, the kserve-container KServe would run: the runtime's,
    chosen as KServe chooses, with the InferenceService's model fields merged in (env by name,
    resources replaced) and its placeholders filled."""
    runtime = the("ClusterServingRuntime", KSERVE)
    out = []
    for isvc in [d for d in documents(KSERVE) if d["kind"] == "InferenceService"]:
        model = isvc["spec"]["predictor"]["model"]
        fmt = model["modelFormat"]["name"]
        (supported,) = [f for f in runtime["spec"]["supportedModelFormats"] if f["name"] == fmt]
        if "runtime" in model:
            assert model["runtime"] == runtime["metadata"]["name"]
        else:  # auto-selected: the format's entry must allow it
            assert supported.get("autoSelect") is True, f"{fmt} is not auto-selected: name the runtime"
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] == ["v2"]
        (container,) = runtime["spec"]["containers"]
        merged = copy.deepcopy(container)
        merged["env"] = list({e["name"]: e for e in [*container["env"], *model.get("env", [])]}.values())
        merged["resources"] = model.get("resources", container["resources"])
        out.append((render(merged, isvc["metadata"]), isvc))
    return out


def test_the_kserve_runtime_listens_where_kserve_sends_traffic() -> None:
    runtime = the("ClusterServingRuntime", KSERVE)
    _, (_, final) = stages()
    uid = int(final.last("USER").args.split(":")[0])
    for container, isvc in kserve_containers():
        assert container["name"] == "kserve-container" and container["image"] == IMAGE
        env = env_values(container)
        # KServe's default port is 8080; its Service and probes target containers[0].ports[0].
        (port,) = container["ports"]
        assert port["containerPort"] == int(env["MLRT_PORT"]) == 8080 and env["MLRT_HOST"] == "0.0.0.0"
        assert all(p["port"] == port["containerPort"] for p in probes(container).values())
        annotations = runtime["spec"]["annotations"]
        assert int(annotations["prometheus.kserve.io/port"]) == port["containerPort"]
        assert container["securityContext"]["runAsUser"] == uid
        # The exec line parses with mlrt's parser and serves the model under the
        # InferenceService's name.
        (line,) = [ln.split() for ln in container["args"][0].splitlines() if ln.strip().startswith("exec ")]
        assert line[:3] == ["exec", "mlrt", "serve"]
        name = isvc["metadata"]["name"]
        words = [f"{name}=/mnt/models/model.onnx" if w == '"$spec"' else w for w in line[2:]]
        parsed = build_parser().parse_args(words)
        assert parsed.command == "serve" and [m.partition("=")[0] for m in parsed.models] == [name]
        assert "/mnt/models" in container["args"][0], "where KServe's storage initializer puts the model"


# --- running them ------------------------------------------------------------------------------


@contextmanager
def running(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before ready:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"not ready at {url} within {READY_TIMEOUT_S:.0f} s:\n{log.read_text(errors='replace')}")


def sigterm(proc: subprocess.Popen[bytes], within_s: float, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=within_s) == 0, log.read_text(errors="replace")


@pytest.mark.integration
def test_the_deployments_container_answers_its_probes_and_scrapes(tmp_path: Path) -> None:
    _, (_, final) = stages()
    deployment = the("Deployment")
    container = pod_container(deployment)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
    models = tmp_path / "models"
    models.mkdir()

    def mapped(arg: str) -> str:  # the volume at mount["mountPath"] is this folder
        return arg.replace(mount["mountPath"] + "/", f"{models}/")

    from runtime.monitor.profile import Profile

    served = build_parser().parse_args(["serve", *container["args"]])
    for spec in served.models:
        bench_models.mlp(mapped(spec.partition("=")[2]))
    import numpy as np

    rows = np.random.default_rng(0).standard_normal((500, 20)).astype(np.float32)
    for spec in served.profile:  # profiles of the bench MLP's 20 float32 inputs
        Profile.fit({f"x{i}": rows[:, i] for i in range(20)}).save(mapped(spec.partition("=")[2]))
    port = free_port()
    token = "test-admin-token"
    env = environ({**final.env(), **env_values(container), "MLRT_ADMIN_TOKEN": token, "MLRT_PORT": str(port)})
    env["MLRT_LOG_LEVEL"] = "warning"
    env["TMPDIR"] = str(tmp_path)  # the scratch volume is this folder
    argv = mlrt(
        *final.last("ENTRYPOINT").exec_form()[1:], *map(mapped, container["args"]), "--host", "127.0.0.1"
    )
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with running(argv, models, env, log) as proc:
        wait_ready(proc, base + container["readinessProbe"]["httpGet"]["path"], log)
        for kind, get in probes(container).items():
            assert container_port(container, get["port"]) == int(env_values(container)["MLRT_PORT"])
            assert httpx.get(base + get["path"]).status_code == 200, kind
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        scrape = httpx.get(base + annotations["prometheus.io/path"])
        assert scrape.status_code == 200 and "# TYPE mlrt_" in scrape.text
        for spec in served.models:  # monitored: the profile the manifest names was loaded
            assert httpx.get(f"{base}/v2/models/{spec.partition('=')[0]}/drift").status_code == 200
        # MLRT_ADMIN_TOKEN from the Secret is in force, on every worker.
        for _ in range(4):
            assert httpx.get(base + "/v2/repository/index").status_code == 401
            headers = {"Authorization": f"Bearer {token}"}
            assert httpx.get(base + "/v2/repository/index", headers=headers).status_code == 200
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        sigterm(proc, grace, log)


PYTHON_MODEL = """\
import numpy as np


def model(x: np.ndarray) -> np.ndarray:
    return (x.sum(axis=1, keepdims=True) > 1.0).astype(np.int64)


model.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
model.outputs = [{"name": "flag", "datatype": "INT64", "shape": [-1, 1]}]
"""


def storage(fmt: str, folder: Path) -> dict[str, Any]:
    """What the storage initializer would leave in /mnt/models for a model of `fmt`, and an
    inference request for it."""
    folder.mkdir()
    if fmt == "onnx":
        bench_models.mlp(folder / "churn-v3.onnx")
        return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.0] * 20}]}
    assert fmt == "mlrt-python"
    (folder / "model.py").write_text(PYTHON_MODEL)
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 0.5, 0.0]}]}


def kserve_argv(container: dict[str, Any], mnt: Path) -> list[str]:
    return [a.replace("/mnt/models", str(mnt)) for a in [*container["command"], *container["args"]]]


def kserve_env(container: dict[str, Any], port: int) -> dict[str, str]:
    scripts = Path(sys.executable).parent
    if not (scripts / "mlrt").exists():
        pytest.fail(f"no `mlrt` console script beside {sys.executable}: pip install -e . first")
    env = environ({**env_values(container), "MLRT_HOST": "127.0.0.1", "MLRT_PORT": str(port)})
    env["PATH"] = f"{scripts}{os.pathsep}{env.get('PATH', '')}"
    env["MLRT_LOG_LEVEL"] = "warning"
    return env


@pytest.mark.integration
def test_the_kserve_runtime_serves_each_inferenceservices_model_under_its_name(tmp_path: Path) -> None:
    formats = set()
    for container, isvc in kserve_containers():
        name, fmt = isvc["metadata"]["name"], isvc["spec"]["predictor"]["model"]["modelFormat"]["name"]
        formats.add(fmt)
        mnt = tmp_path / name
        request = storage(fmt, mnt)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / f"{name}.log"
        with running(kserve_argv(container, mnt), tmp_path, kserve_env(container, port), log) as proc:
            wait_ready(proc, base + container["readinessProbe"]["httpGet"]["path"], log)
            for kind, get in probes(container).items():
                assert httpx.get(base + get["path"]).status_code == 200, kind
            assert httpx.get(f"{base}/v2/models/{name}/ready").status_code == 200
            answer = httpx.post(f"{base}/v2/models/{name}/infer", json=request, timeout=30)
            assert answer.status_code == 200, answer.text
            if fmt == "mlrt-python":
                assert answer.json()["outputs"][0]["data"] == [1]
            scrape = httpx.get(
                base
                + the("ClusterServingRuntime", KSERVE)["spec"]["annotations"]["prometheus.kserve.io/path"]
            )
            assert scrape.status_code == 200 and "# TYPE mlrt_" in scrape.text
            sigterm(proc, isvc["spec"]["predictor"]["terminationGracePeriodSeconds"], log)
    assert formats == {
        f["name"] for f in the("ClusterServingRuntime", KSERVE)["spec"]["supportedModelFormats"]
    }


@pytest.mark.integration
def test_the_kserve_runtime_says_what_it_needs_in_an_empty_model_folder(tmp_path: Path) -> None:
    container, _ = kserve_containers()[0]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "notes.txt").write_text("no model here\n")
    proc = subprocess.run(
        kserve_argv(container, mnt), env=kserve_env(container, free_port()), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert (
        "needs model.py (mlrt-python) or one .onnx file (onnx)" in proc.stderr and "notes.txt" in proc.stderr
    )
