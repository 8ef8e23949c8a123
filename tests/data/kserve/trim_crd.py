"""Write the OpenAPI schema of a KServe CRD, trimmed, as tests/data/kserve/*.schema.yaml.

    python tests/data/kserve/trim_crd.py KSERVE_CHECKOUT TAG

KSERVE_CHECKOUT is a clone of the KServe repository at TAG. Its CRDs are generated from
KServe's Go types (config/crd/full/); what is kept is the openAPIV3Schema of the served
version, with `status` left unchecked. The ClusterServingRuntime's spec is kept whole. The
InferenceService's is trimmed: the transformer, the explainer, the canary, the predictor's
worker spec and its per-framework fields (sklearn, onnx, triton, ...) become objects left
unchecked, since the examples use none of them; the predictor's `model` and pod fields are
kept whole.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OPAQUE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
FRAMEWORKS = (
    "huggingface", "lightgbm", "onnx", "paddle", "pmml", "pytorch", "sklearn", "tensorflow", "triton",
    "xgboost",
)  # fmt: skip
CRDS = {
    "clusterservingruntime": "config/crd/full/serving.kserve.io_clusterservingruntimes.yaml",
    "inferenceservice": "config/crd/full/serving.kserve.io_inferenceservices.yaml",
}


def trim_inferenceservice(schema: dict) -> dict:
    spec = schema["properties"]["spec"]["properties"]
    for key in ("transformer", "explainer", "canary"):
        spec[key] = dict(OPAQUE)
    predictor = spec["predictor"]["properties"]
    for key in (*FRAMEWORKS, "workerSpec"):
        predictor[key] = dict(OPAQUE)
    schema["properties"]["status"] = dict(OPAQUE)
    return schema


def main(checkout: str, tag: str) -> None:
    root = Path(checkout)
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", f"{tag}^{{commit}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for kind, path in CRDS.items():
        crd = yaml.safe_load((root / path).read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
        schema = version["schema"]["openAPIV3Schema"]
        if kind == "inferenceservice":
            schema = trim_inferenceservice(schema)
        else:
            schema["properties"]["status"] = dict(OPAQUE)
        header = (
            f"# The OpenAPI schema of KServe's {crd['spec']['names']['kind']} "
            f"({crd['spec']['group']}/{version['name']}),\n"
            f"# from https://github.com/kserve/kserve, {path}\n"
            f"# at {tag} (commit {commit}).\n"
            "# Copyright The KServe Authors; Apache License 2.0\n"
            "# (https://www.apache.org/licenses/LICENSE-2.0). Trimmed by tests/data/kserve/trim_crd.py:\n"
            "# see its docstring for what was left out. Not edited by hand.\n"
        )
        out = HERE / f"{kind}.{version['name']}.schema.yaml"
        out.write_text(header + yaml.safe_dump(schema, sort_keys=True, width=100))
        print(f"{out.name}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
