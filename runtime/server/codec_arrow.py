"""The Arrow IPC stream body format of `.../infer`: bytes in, bytes out, no HTTP here.

Request: an Arrow IPC stream (`application/vnd.apache.arrow.stream`) holding
exactly one record batch, one column per input, named like the input; rows are
the batch dimension.

- A 1-D input `[-1]` is a plain column. An input `[-1, k]` is a
  `fixed_size_list<k>` column, or a `list`/`large_list` column whose lists all
  have length k; deeper inputs nest fixed-size lists (rank up to 4). A plain
  column is also taken for an input of shape `[-1, 1]`.
- Numeric and boolean columns map to the V2 datatype of their Arrow type; a column
  in another datatype than the model's input is converted or refused afterwards by
  check_inputs, by the rule every format shares (runtime/convert.py).
- string, large_string, binary, large_binary (and their views, fixed_size_binary)
  columns are BYTES (strings as UTF-8).
- No nulls, at any level.
- Schema metadata (all optional): `mlrt.id` (the request id), `mlrt.outputs` (a
  JSON list of output names), `mlrt.parameters` (a JSON object, e.g.
  `{"timeout": 5000}`).

Response: an Arrow IPC stream with one record batch, one column per selected
output, mapped the same way, and schema metadata `mlrt.model_name`,
`mlrt.model_version` and, when the request had one, `mlrt.id`. Outputs must share
their first dimension to fit in one record batch.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput
from ..formats import (
    ARROW_CONTENT_TYPE,
    ARROW_ID,
    ARROW_MODEL_NAME,
    ARROW_MODEL_VERSION,
    ARROW_OUTPUTS,
    ARROW_PARAMETERS,
    arrow_dumps,
    arrow_loads,
    arrow_meta_json,
    arrow_meta_str,
    column_to_tensor,
    tensor_to_column,
)
from ..models.base import Model, Tensors
from .codec import InferRequest, InferResponse, output_names

# The same head as codec_msgpack's: one interface for every body format (http.py).
__all__ = ["CONTENT_TYPE", "decode", "encode"]

CONTENT_TYPE = ARROW_CONTENT_TYPE


def decode(body: bytes, model: Model) -> InferRequest:
    """Decode an Arrow infer request; datatypes are those of the columns' Arrow types."""
    batch, metadata = arrow_loads(body, "request")
    if batch.num_columns == 0:
        raise InvalidInput("the record batch has no columns; it needs one per input")
    specs = {spec.name: spec for spec in model.inputs}
    inputs: Tensors = {}
    datatypes: dict[str, str] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        where = f"column '{name}'"
        if name in inputs:
            raise InvalidInput(f"{where} is given twice")
        spec = specs.get(name)
        inner = spec.shape[1:] if spec is not None else ()
        arr, sent = column_to_tensor(where, column, inner)
        if spec is not None and arr.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] == 1:
            arr = arr.reshape(-1, 1)
        inputs[name] = arr
        datatypes[name] = sent
    outputs = output_names(arrow_meta_json(metadata, ARROW_OUTPUTS, list), "schema metadata 'mlrt.outputs'")
    params = arrow_meta_json(metadata, ARROW_PARAMETERS, dict) or {}
    return InferRequest(arrow_meta_str(metadata, ARROW_ID), params, inputs, datatypes, outputs)


def encode(resp: InferResponse) -> bytes:
    """Encode an infer response as a one-batch Arrow stream (binary flags ignored)."""
    columns = {
        name: tensor_to_column(name, np.asarray(arr), datatype) for name, arr, datatype, _ in resp.tensors()
    }
    metadata = {ARROW_MODEL_NAME: resp.model_name.encode(), ARROW_MODEL_VERSION: resp.model_version.encode()}
    if resp.request_id is not None:
        metadata[ARROW_ID] = resp.request_id.encode()
    return arrow_dumps(columns, metadata)
