#!/usr/bin/env bash
# The CI and CD steps of docs/gates.md, with mlrt commands, on breast-cancer data:
#   CI: validate the data, train, gate against the champion, register with the gate's report
#   CD: promote through staging to champion, refusing a version without a passing gate
#
#   examples/ci/pipeline.sh WORKDIR
#
# It first registers a weak model (a one-split tree) as the champion, then trains a better
# candidate (logistic regression) and takes it through the gates, then shows a worse
# candidate stopped by the gate. tests/integration/test_ci_example.py runs it end to end.
set -euo pipefail

work=${1:?usage: pipeline.sh WORKDIR}
here=$(cd "$(dirname "$0")" && pwd)
export MLRT_REGISTRY="$work/registry"
mkdir -p "$work"

# -- the champion to beat: trained, profiled and promoted once ---------------------------
python "$here/train.py" "$work" --kind tree
mlrt profile "$work/train.parquet" -o "$work/reference.json" --model "$work/tree.onnx" --exclude malignant
mlrt registry register "$work/tree.onnx" --name cancer --profile "$work/reference.json" \
    --description "one-split tree: the first model"
mlrt registry promote cancer 1 --alias champion --reason "first model"

# -- CI: data, candidate, gate, register ---------------------------------------------------
# The data gate: the evaluation split must look like the data the champion was profiled on,
# and fit the champion's inputs (columns, types, the profile's dtype).
mlrt validate "$work/test.parquet" --profile "$work/reference.json" --ignore malignant \
    --model cancer@champion --format markdown -o "$work/validate.md"

python "$here/train.py" "$work" --kind logistic
# The metric gate: not worse than the champion on AUC, and not more than 5x slower per
# batch (a scaler and a regression cost about 2.7x a single split, measured on this data).
mlrt gate --candidate "$work/logistic.onnx" --baseline cancer@champion \
    --data "$work/test.parquet" --target malignant --metric auc \
    --max-latency-ratio 5 -o "$work/gate.json"
# Registered with a profile of its own: the inputs are the champion's reference again, but
# the outputs are this model's. With the champion's profile, the new champion's own scores
# would be prediction drift from its first request on.
mlrt profile "$work/train.parquet" -o "$work/candidate.json" --model "$work/logistic.onnx" --exclude malignant
mlrt registry register "$work/logistic.onnx" --name cancer --profile "$work/candidate.json" \
    --gate "$work/gate.json" --parent 1 --description "logistic regression"

# -- CD: staging, then champion; only with a passing gate on the card ----------------------
mlrt registry promote cancer 2 --alias staging --require-gate --reason "gate passed"
# (here a real pipeline serves staging beside the champion as a shadow, then as a canary:
#  docs/traffic.md; then promotes)
mlrt registry promote cancer 2 --alias champion --require-gate --reason "won shadow and canary"

# -- a worse candidate never gets through ---------------------------------------------------
if mlrt gate --candidate "$work/tree.onnx" --baseline cancer@champion \
    --data "$work/test.parquet" --target malignant --metric auc -o "$work/gate-worse.json"; then
    echo "the worse candidate passed its gate" >&2
    exit 1
fi
mlrt registry register "$work/tree.onnx" --name cancer --gate "$work/gate-worse.json" --parent 2 \
    --description "the tree again: failed its gate"
if mlrt registry promote cancer 3 --alias champion --require-gate; then
    echo "a version that failed its gate was promoted" >&2
    exit 1
fi
mlrt registry card cancer 2
echo "pipeline done: cancer@champion is version $(mlrt registry aliases cancer --format json | python -c 'import json,sys; print(json.load(sys.stdin)["champion"])')"
