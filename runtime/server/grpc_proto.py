"""The Open Inference Protocol's gRPC messages (package `inference`, service
`GRPCInferenceService`), built in code from the protocol's published field numbers.

No generated stubs and no protoc at build time: the messages are described here as
descriptors, added to a private descriptor pool (so a process that also imports
tritonclient's generated module has no clash), and turned into message classes by
protobuf. Only the wire format matters to a client, and it depends on the field
numbers and types below, which tests/integration/test_grpc.py checks against
tritonclient's own descriptors.

Needs `protobuf` (`pip install grpcio protobuf`, the grpc extra).
"""

from __future__ import annotations

from typing import Any

SERVICE = "inference.GRPCInferenceService"
PACKAGE = "inference"

# (name, number, type, repeated, message type) per field; types as protobuf names them.
_Field = tuple[str, int, str, bool, str | None]


def _f(name: str, number: int, type_: str, repeated: bool = False, message: str | None = None) -> _Field:
    return (name, number, type_, repeated, message)


_PARAMETERS_ENTRY = (
    "ParametersEntry",
    [_f("key", 1, "string"), _f("value", 2, "message", message="InferParameter")],
)


def _params(number: int, owner: str) -> _Field:
    """A `map<string, InferParameter> parameters` field of message `owner`."""
    return _f("parameters", number, "message", True, f"{owner}.ParametersEntry")


_CONTENTS = "InferTensorContents"


def _head(owner: str) -> list[_Field]:
    """The first fields of a request and of a response: which model, which request."""
    return [
        _f("model_name", 1, "string"),
        _f("model_version", 2, "string"),
        _f("id", 3, "string"),
        _params(4, owner),
    ]


def _tensor(owner: str) -> list[_Field]:
    """An input tensor of a request and an output tensor of a response: the same fields."""
    return [
        _f("name", 1, "string"),
        _f("datatype", 2, "string"),
        _f("shape", 3, "int64", True),
        _params(4, owner),
        _f("contents", 5, "message", message=_CONTENTS),
    ]

# message name -> (fields, nested messages, oneof of every field)
MESSAGES: dict[str, tuple[list[_Field], list[tuple[str, list[_Field]]], str | None]] = {
    "ServerLiveRequest": ([], [], None),
    "ServerLiveResponse": ([_f("live", 1, "bool")], [], None),
    "ServerReadyRequest": ([], [], None),
    "ServerReadyResponse": ([_f("ready", 1, "bool")], [], None),
    "ModelReadyRequest": ([_f("name", 1, "string"), _f("version", 2, "string")], [], None),
    "ModelReadyResponse": ([_f("ready", 1, "bool")], [], None),
    "ServerMetadataRequest": ([], [], None),
    "ServerMetadataResponse": (
        [_f("name", 1, "string"), _f("version", 2, "string"), _f("extensions", 3, "string", True)],
        [],
        None,
    ),
    "ModelMetadataRequest": ([_f("name", 1, "string"), _f("version", 2, "string")], [], None),
    "ModelMetadataResponse": (
        [
            _f("name", 1, "string"),
            _f("versions", 2, "string", True),
            _f("platform", 3, "string"),
            _f("inputs", 4, "message", True, "ModelMetadataResponse.TensorMetadata"),
            _f("outputs", 5, "message", True, "ModelMetadataResponse.TensorMetadata"),
        ],
        [
            (
                "TensorMetadata",
                [_f("name", 1, "string"), _f("datatype", 2, "string"), _f("shape", 3, "int64", True)],
            )
        ],
        None,
    ),
    "InferParameter": (
        [
            _f("bool_param", 1, "bool"),
            _f("int64_param", 2, "int64"),
            _f("string_param", 3, "string"),
            _f("double_param", 4, "double"),
            _f("uint64_param", 5, "uint64"),
        ],
        [],
        "parameter_choice",
    ),
    _CONTENTS: (
        [
            _f("bool_contents", 1, "bool", True),
            _f("int_contents", 2, "int32", True),
            _f("int64_contents", 3, "int64", True),
            _f("uint_contents", 4, "uint32", True),
            _f("uint64_contents", 5, "uint64", True),
            _f("fp32_contents", 6, "float", True),
            _f("fp64_contents", 7, "double", True),
            _f("bytes_contents", 8, "bytes", True),
        ],
        [],
        None,
    ),
    "ModelInferRequest": (
        [
            *_head("ModelInferRequest"),
            _f("inputs", 5, "message", True, "ModelInferRequest.InferInputTensor"),
            _f("outputs", 6, "message", True, "ModelInferRequest.InferRequestedOutputTensor"),
            _f("raw_input_contents", 7, "bytes", True),
        ],
        [
            ("InferInputTensor", _tensor("ModelInferRequest.InferInputTensor")),
            (
                "InferRequestedOutputTensor",
                [_f("name", 1, "string"), _params(2, "ModelInferRequest.InferRequestedOutputTensor")],
            ),
            _PARAMETERS_ENTRY,
        ],
        None,
    ),
    "ModelInferResponse": (
        [
            *_head("ModelInferResponse"),
            _f("outputs", 5, "message", True, "ModelInferResponse.InferOutputTensor"),
            _f("raw_output_contents", 6, "bytes", True),
        ],
        [("InferOutputTensor", _tensor("ModelInferResponse.InferOutputTensor")), _PARAMETERS_ENTRY],
        None,
    ),
}

# Messages nested inside a nested message (the tensors' own parameter maps).
_NESTED_MAPS = {
    "ModelInferRequest.InferInputTensor",
    "ModelInferRequest.InferRequestedOutputTensor",
    "ModelInferResponse.InferOutputTensor",
}

#: RPC name -> (request message, response message).
METHODS = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
}


def _file_descriptor() -> Any:
    from google.protobuf import descriptor_pb2

    F = descriptor_pb2.FieldDescriptorProto
    types = {
        "string": F.TYPE_STRING, "bool": F.TYPE_BOOL, "int32": F.TYPE_INT32, "int64": F.TYPE_INT64,
        "uint32": F.TYPE_UINT32, "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE,
        "bytes": F.TYPE_BYTES, "message": F.TYPE_MESSAGE,
    }  # fmt: skip

    def fill(msg: Any, fields: list[_Field], oneof: str | None) -> None:
        if oneof is not None:
            msg.oneof_decl.add(name=oneof)
        for name, number, type_, repeated, message in fields:
            f = msg.field.add(name=name, number=number, type=types[type_])
            f.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            if message is not None:
                f.type_name = f".{PACKAGE}.{message}"
            if oneof is not None:
                f.oneof_index = 0

    fd = descriptor_pb2.FileDescriptorProto(name="mlrt/inference.proto", package=PACKAGE, syntax="proto3")
    for name, (fields, nested, oneof) in MESSAGES.items():
        msg = fd.message_type.add(name=name)
        fill(msg, fields, oneof)
        for nested_name, nested_fields in nested:
            sub = msg.nested_type.add(name=nested_name)
            fill(sub, nested_fields, None)
            if nested_name == "ParametersEntry":
                sub.options.map_entry = True
            elif f"{name}.{nested_name}" in _NESTED_MAPS:
                entry = sub.nested_type.add(name="ParametersEntry")
                fill(entry, _PARAMETERS_ENTRY[1], None)
                entry.options.map_entry = True
    return fd


class Messages:
    """The message classes, by name: `Messages().ModelInferRequest`."""

    def __init__(self) -> None:
        from google.protobuf import descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        pool.Add(_file_descriptor())
        self._classes = {
            name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES
        }
        self.descriptors = {name: cls.DESCRIPTOR for name, cls in self._classes.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return self._classes[name]
        except KeyError:
            raise AttributeError(name) from None
