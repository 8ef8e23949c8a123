"""ONNX Runtime backend. The session releases the GIL inside run(), so executor
threads overlap model math with the event loop's I/O."""

from __future__ import annotations

import logging
import os

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
            raise ModelLoadError(f"model '{config.name}': cannot load {config.source!r}: {exc}") from exc
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
        self._output_names = [o.name for o in self.outputs]
        self._string_inputs = {s.name for s in self.inputs if s.datatype == "BYTES"}
        # check_inputs() checks these are UTF-8: onnxruntime's string tensors hold str.
        self.text_inputs = frozenset(self._string_inputs)
        self._string_outputs = {s.name for s in self.outputs if s.datatype == "BYTES"}

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
