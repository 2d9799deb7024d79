"""The Open Inference Protocol's wire format (KServe v2, Triton's HTTP/REST API): an inference request's tensors in,
a response's tensors out, as JSON `data` or with the binary tensor data extension.

With the extension, a body is a JSON header of `Inference-Header-Content-Length` bytes, then the raw bytes of every
tensor whose `parameters` say `binary_data_size`, in the order they are listed: little-endian numbers, row-major;
BYTES elements each as a 4-byte little-endian length and its bytes. Without it, the whole body is JSON and every
tensor carries `data` (flat or nested, row-major). Nothing here knows about models: it only moves tensors.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
NUMERIC = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
           "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
           "FP32": np.float32, "FP64": np.float64}
DATATYPES = (*NUMERIC, "BYTES")
MAX_ELEMENTS = 1 << 26  # far beyond any body the service takes (MAX_BODY_BYTES): a shape is refused before any work


class ProtocolError(ValueError):
    """A request the protocol cannot read, or that asks for what the model does not have: a 400 with the reason."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray  # numeric: flat, of the datatype's dtype; BYTES: a flat object array of bytes



@dataclass
class InferRequest:
    inputs: dict[str, Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, bool] | None = None  # requested output -> as binary data; None: every output

    def binary(self, name: str) -> bool:
        """Whether output `name` goes back as binary data (its own `binary_data`, else the request's
        `binary_data_output`, else JSON)."""
        if self.outputs is not None and name in self.outputs:
            return self.outputs[name]
        return bool(self.parameters.get("binary_data_output", False))


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _flag(parameters: dict, key: str) -> bool | None:
    value = parameters.get(key)
    if key in parameters and not isinstance(value, bool):
        raise ProtocolError(f"the parameter `{key}` must be true or false")
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise ProtocolError(f"input {name!r}: `shape` must be a list of non-negative integers")
    return tuple(value)


def _split_bytes(raw: bytes, count: int, name: str) -> np.ndarray:
    """BYTES elements from their binary form: each a 4-byte little-endian length, then that many bytes."""
    out, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise ProtocolError(f"input {name!r}: its binary data ends before element {len(out)}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ProtocolError(f"input {name!r}: element {len(out)} runs past its binary data")
        out.append(raw[offset:offset + length])
        offset += length
    if offset != len(raw):
        raise ProtocolError(f"input {name!r}: {len(raw) - offset} bytes of binary data left over its shape")
    return np.array(out, dtype=object)


def _from_json(data: Any, datatype: str, count: int, name: str) -> np.ndarray:
    """A tensor's JSON `data` (flat or nested, row-major) as a flat array of its datatype."""
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: `data` must be a (flat or nested) list")
    flat = np.array(data, dtype=object).reshape(-1)
    if datatype == "BYTES":
        kinds, wanted = (str,), "strings"
    elif datatype == "BOOL":
        kinds, wanted = (bool,), "booleans"
    elif datatype.startswith("FP"):
        kinds, wanted = (int, float), "numbers"
    else:
        kinds, wanted = (int,), "integers"
    if not all(isinstance(x, kinds) and (datatype == "BOOL" or not isinstance(x, bool)) for x in flat):
        raise ProtocolError(f"input {name!r}: `data` must be a (flat or nested) list of {wanted} ({datatype})")
    if flat.size != count:
        raise ProtocolError(f"input {name!r}: `data` has {flat.size} elements, its shape says {count}")
    if datatype == "BYTES":
        return np.array([x.encode() for x in flat], dtype=object)
    try:
        return flat.astype(NUMERIC[datatype])
    except OverflowError:
        raise ProtocolError(f"input {name!r}: a value does not fit {datatype}") from None


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request from its body and its Inference-Header-Content-Length header (None: all JSON)."""
    header, binary = _split_body(body, header_length)
    try:
        doc = _object(json.loads(header), "the request")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"the request header is not JSON: {e}") from None
    request_id = doc.get("id")
    if "id" in doc and not isinstance(request_id, str):
        raise ProtocolError("`id` must be a string")
    parameters = _object(doc.get("parameters", {}), "`parameters`")
    _flag(parameters, "binary_data_output")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("`inputs` must be a non-empty list of tensors")
    inputs: dict[str, Tensor] = {}
    offset = 0
    for raw in raw_inputs:
        tensor, offset = _input(_object(raw, "an input"), binary, offset)
        if tensor.name in inputs:
            raise ProtocolError(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = tensor
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return InferRequest(inputs, request_id, parameters, _requested_outputs(doc, parameters))


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary data after it."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise ProtocolError(f"{HEADER_LENGTH} must be an integer, not {header_length!r}") from None
    if not 0 < n <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} ({n}) must be within the body ({len(body)} bytes)")
    return body[:n], body[n:]


def _input(raw: dict, binary: bytes, offset: int) -> tuple[Tensor, int]:
    """One input tensor, its data from JSON or from `binary` at `offset`; and the offset after it."""
    name = raw.get("name")
    if not isinstance(name, str):
        raise ProtocolError("every input needs a `name` string")
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: `datatype` must be one of {', '.join(DATATYPES)}")
    shape = _shape(raw.get("shape"), name)
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ProtocolError(f"input {name!r}: shape {list(shape)} holds more than {MAX_ELEMENTS} elements")
    size = _object(raw.get("parameters", {}), f"input {name!r}'s `parameters`").get("binary_data_size")
    if size is None:
        if "data" not in raw:
            raise ProtocolError(f"input {name!r} has neither `data` nor binary data")
        return Tensor(name, datatype, shape, _from_json(raw["data"], datatype, count, name)), offset
    if not isinstance(size, int) or size < 0 or offset + size > len(binary):
        raise ProtocolError(f"input {name!r}: binary_data_size {size!r} does not fit the binary data "
                            f"({len(binary) - offset} bytes left)")
    chunk = binary[offset:offset + size]
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, _split_bytes(chunk, count, name)), offset + size
    dtype = np.dtype(NUMERIC[datatype]).newbyteorder("<")
    if size != count * dtype.itemsize:
        raise ProtocolError(f"input {name!r}: {size} bytes of binary data, its shape and datatype "
                            f"need {count * dtype.itemsize}")
    return Tensor(name, datatype, shape, np.frombuffer(chunk, dtype=dtype).astype(NUMERIC[datatype])), offset + size


def _requested_outputs(doc: dict, parameters: dict) -> dict[str, bool] | None:
    """The outputs asked for by name, each binary or not; None: all, as `binary_data_output` says."""
    if "outputs" not in doc:
        return None
    if not isinstance(doc["outputs"], list):
        raise ProtocolError("`outputs` must be a list")
    outputs = {}
    for raw in doc["outputs"]:
        raw = _object(raw, "a requested output")
        if not isinstance(raw.get("name"), str):
            raise ProtocolError("every requested output needs a `name` string")
        wanted = _flag(_object(raw.get("parameters", {}), "an output's `parameters`"), "binary_data")
        outputs[raw["name"]] = wanted if wanted is not None else parameters.get("binary_data_output", False)
    return outputs


def _binary_form(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(x)) + x for x in tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=np.dtype(NUMERIC[tensor.datatype]).newbyteorder("<")).tobytes()


def encode_response(model: str, version: int, request: InferRequest, outputs: list[Tensor]
                    ) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: the outputs as JSON `data`, or as binary data where asked for."""
    described, blobs = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if request.binary(tensor.name):
            blob = _binary_form(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif tensor.datatype == "BYTES":
            raise ProtocolError(f"output {tensor.name!r} holds binary values: ask for it with "
                                '`"parameters": {"binary_data": true}`')
        else:
            entry["data"] = tensor.data.reshape(-1).tolist()
        described.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": described}
    if request.id is not None:
        doc["id"] = request.id
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}
