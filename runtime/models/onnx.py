"""ONNX Runtime backend. The session releases the GIL inside run(), so executor
threads overlap model math with the event loop's I/O."""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Sequence

import numpy as np

from ..config import ModelConfig
from ..datatypes import to_text_array
from ..errors import ModelLoadError
from .base import Tensors, TensorSpec, specs

log = logging.getLogger("mlrt.models")

_ORT_TO_V2 = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg: object) -> TensorSpec | None:
    datatype = _ORT_TO_V2.get(arg.type)  # type: ignore[attr-defined]
    if datatype is None:
        return None
    # Symbolic ("batch") and unknown (None) dims are both variable.
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)  # type: ignore[attr-defined]
    return TensorSpec(arg.name, datatype, shape)  # type: ignore[attr-defined]


def _check_declared(
    model: str, kind: str, declared: Sequence[TensorSpec], graph: Sequence[TensorSpec]
) -> None:
    """A signature declared in the config may narrow the graph's (a fixed width where the
    graph leaves it free) but not contradict it: a name the graph does not have, another
    datatype or another fixed size would load and then fail every request in onnxruntime."""
    have = {g.name: g for g in graph}
    for d in declared:
        g = have.get(d.name)
        if g is None:
            raise ModelLoadError(
                f"model '{model}': declared {kind} '{d.name}' is not one of the graph's {kind}s "
                f"{list(have)}"
            )
        fits = len(d.shape) == len(g.shape) and all(
            b == -1 or a == b for a, b in zip(d.shape, g.shape, strict=True)
        )
        if d.datatype != g.datatype or not fits:
            raise ModelLoadError(
                f"model '{model}': declared {kind} '{d.name}' {d.datatype}{list(d.shape)} does not "
                f"fit the graph's {g.datatype}{list(g.shape)}"
            )


def _class_labels(path: str) -> tuple[object, ...] | None:
    """The class labels of the model's classifier, in the column order of its scores: the
    `classlabels_*` of its ai.onnx.ml nodes (LinearClassifier, TreeEnsembleClassifier,
    SVMClassifier, ZipMap), as skl2onnx writes scikit-learn's `classes_`, read with the
    `onnx` package (a dependency: onnxruntime does not show a graph's attributes). None for a
    model without them or with two different lists; feedback and gates then take labels as
    column indices unless told the classes. Parsing the file again costs about a millisecond per 250 kB and
    its size in memory, so a file whose bytes never name a class-label attribute (a neural
    network, a regressor) is not parsed: one scan of the mapped file decides."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data.find(b"classlabels_") < 0:
                return None
    except (OSError, ValueError):  # an empty file cannot be mapped; onnxruntime loaded it, though
        return None
    try:
        graph = onnx.load(path, load_external_data=False).graph
    except Exception:  # onnxruntime loaded it; a parser that disagrees is not worth a failure
        return None
    found = set()
    for node in graph.node:
        if node.domain != "ai.onnx.ml":
            continue
        for attr in node.attribute:
            if attr.name == "classlabels_strings" and attr.strings:
                found.add(tuple(v.decode("utf-8", "replace") for v in attr.strings))
            elif attr.name in ("classlabels_int64s", "classlabels_ints") and attr.ints:
                found.add(tuple(int(v) for v in attr.ints))
    return found.pop() if len(found) == 1 else None


class OnnxModel:
    platform = "onnxruntime_onnx"

    def __init__(self, config: ModelConfig) -> None:
        import onnxruntime as ort

        if not os.path.isfile(config.source):
            raise ModelLoadError(f"model '{config.name}': no such file {config.source!r}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = config.intra_op_threads
        opts.inter_op_num_threads = config.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads burn the cores the event loop needs between batches.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                config.source, sess_options=opts, providers=list(config.providers)
            )
        except Exception as exc:  # onnxruntime raises several unrelated types
            hint = ""
            if not str(config.source).lower().endswith((".onnx", ".ort")):
                # `mlrt serve train.csv` reads any other file as ONNX: say why it was tried.
                hint = (
                    " (a file not named .onnx is read as ONNX; a model is an .onnx file, a pickled "
                    "model (.pkl, .joblib), an MLflow model directory or package.module:object)"
                )
            raise ModelLoadError(
                f"model '{config.name}': cannot load {config.source!r}: {exc}{hint}"
            ) from exc
        # One RunOptions for every call: without it, each run builds a default one (about
        # a microsecond, more with cold caches). Run only reads it, so threads may share it.
        self._run_options = ort.RunOptions()
        # session.run's Python wrapper re-checks on every call what check_inputs has checked
        # already (every input present) and guards feeds mlrt never sends (OrtValues, WebGPU
        # capture) and a GPU provider's fallback; on CPU alone the binding it calls does the
        # same work in fewer steps (~2 µs a call with cold caches). Other providers keep it.
        binding = getattr(self._session, "_sess", None)
        if self._session.get_providers() == ["CPUExecutionProvider"] and hasattr(binding, "run"):
            self._run = binding.run  # type: ignore[union-attr]
        else:
            self._run = self._session.run
        self.name = config.name
        self.version = config.version
        self.source = config.source
        ins = [_spec(a) for a in self._session.get_inputs()]
        if any(s is None for s in ins):
            raise ModelLoadError(
                f"model '{config.name}': inputs of non-tensor types are not supported"
            )
        self.inputs: tuple[TensorSpec, ...] = specs(config.inputs) if config.inputs else tuple(ins)  # type: ignore[arg-type]
        if config.inputs:
            _check_declared(config.name, "input", self.inputs, ins)  # type: ignore[arg-type]
        outs = []
        for arg in self._session.get_outputs():
            spec = _spec(arg)
            if spec is None:
                # e.g. skl2onnx's ZipMap (seq(map)) probabilities; export with zipmap=False.
                log.warning("model '%s': skipping output '%s' of type %s", self.name, arg.name, arg.type)
            else:
                outs.append(spec)
        if not outs:
            raise ModelLoadError(f"model '{config.name}': no tensor outputs")
        self.outputs: tuple[TensorSpec, ...] = specs(config.outputs) if config.outputs else tuple(outs)
        if config.outputs:
            _check_declared(config.name, "output", self.outputs, outs)
        self._output_names = [o.name for o in self.outputs]
        self._string_inputs = {s.name for s in self.inputs if s.datatype == "BYTES"}
        # check_inputs() checks these are UTF-8: onnxruntime's string tensors hold str.
        self.text_inputs = frozenset(self._string_inputs)
        self._string_outputs = {s.name for s in self.outputs if s.datatype == "BYTES"}
        # Which column of its scores is which class (runtime/quality/labels.py).
        self.classes = _class_labels(config.source)

    def predict(self, inputs: Tensors) -> Tensors:
        feeds = inputs
        if self._string_inputs:
            feeds = dict(inputs)
            for name in self._string_inputs:
                # onnxruntime wants str elements; V2 BYTES arrive as bytes.
                feeds[name] = to_text_array(inputs[name])
        results = self._run(self._output_names, feeds, self._run_options)
        out = dict(zip(self._output_names, results, strict=True))
        for name in self._string_outputs:
            out[name] = np.vectorize(
                lambda s: s.encode("utf-8") if isinstance(s, str) else s, otypes=[object]
            )(out[name])
        return out

    def close(self) -> None:
        # The bound run holds the session too: both go, so its memory goes with the model.
        self._session = None  # type: ignore[assignment]
        self._run = None  # type: ignore[assignment]
