"""latentlab's models as Open Inference Protocol models: the input tensors they take (`latents` or `seed`, and `class`)
read into the operations' `Source`, the output tensors they give (`images`, `png`), and the metadata and OpenAPI
description that state both. What a tensor must be is the protocol's; what it means, the operations'.
(`inference_protocol.py` moves the tensors and knows nothing of models.)

Inputs: `latents` FP32 [-1, latent_dim], or `seed` INT64 [-1] (one image per seed: the image `POST /generate`
draws for that seed and count 1); for a class-conditional version `class`, one for all images or one each, as
INT64 indices or BYTES names; the request parameter `truncation`. Outputs: `images` UINT8 [-1, H, W, C] (the
pixels `/generate` puts in its PNG) and, when `outputs` asks for it, `png` BYTES [-1] (one PNG per image, as
binary data).
"""
from __future__ import annotations

import numpy as np
import torch

from service.api.inference_protocol import HEADER_LENGTH, InferRequest, ProtocolError, Tensor
from service.api.schemas import MAX_SEED
from service.engine.registry import LoadedModel
from service.operations.generation import Source
from shared.imaging.png import encode_png

INPUTS = ("latents", "seed", "class")
OUTPUTS = ("images", "png")


def metadata(model: LoadedModel, versions: list[int]) -> dict:
    c, h, w = model.image_shape
    inputs = [{"name": "latents", "datatype": "FP32", "shape": [-1, model.latent_dim]},
              {"name": "seed", "datatype": "INT64", "shape": [-1]}]
    if model.stored.manifest.class_names:  # a conditional version: the class it is given
        inputs.append({"name": "class", "datatype": "INT64", "shape": [-1],
                       "parameters": {"classes": model.stored.manifest.class_names, "also": "BYTES class names"}})
    return {"name": model.name, "versions": [str(v) for v in versions], "platform": "pytorch_torchscript",
            "inputs": inputs,
            "outputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, h, w, c]},
                        {"name": "png", "datatype": "BYTES", "shape": [-1]}]}


INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {
            "truncation": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "binary_data_output": {"type": "boolean"}}},
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string", "enum": list(INPUTS)},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": ["FP32", "INT64", "INT32", "BYTES"]},
                "parameters": {"type": "object", "properties": {
                    "binary_data_size": {"type": "integer", "minimum": 0}}},
                "data": {"type": "array", "items": {}, "description": "the elements, flat or nested, row-major"}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "enum": list(OUTPUTS)}, "parameters": {"type": "object", "properties": {
                "binary_data": {"type": "boolean"}}}}}}}},
        "example": {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [2], "data": [0, 1]}],
                    "outputs": [{"name": "images"}]}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": f"the binary tensor extension: {HEADER_LENGTH} bytes of JSON, then "
                                                "the inputs' binary data"}}}}


def source_of(body: InferRequest, model: LoadedModel, max_images: int) -> Source:
    """The request's tensors as a latent source: latents given, or one drawn per seed as /generate draws them, with
    their classes, truncated. What the tensors must be is the protocol's; what they mean, the operations'."""
    unknown = body.inputs.keys() - set(INPUTS)
    if unknown:
        raise ProtocolError(f"{model.name} has no input {sorted(unknown)[0]!r}; it takes latents or seed (and class)")
    given = [n for n in ("latents", "seed") if n in body.inputs]
    if len(given) != 1:
        raise ProtocolError("give exactly one of the inputs `latents` and `seed`")
    psi = body.parameters.get("truncation")
    if "truncation" in body.parameters and (isinstance(psi, bool) or not isinstance(psi, (int, float))
                                            or not 0 < psi <= 1):
        raise ProtocolError("the parameter `truncation` must be a number in (0, 1]")
    if given == ["latents"]:
        tensor = body.inputs["latents"]
        if tensor.datatype != "FP32" or len(tensor.shape) != 2 or tensor.shape[1] != model.latent_dim:
            raise ProtocolError(f"input `latents` must be FP32 of shape [N, {model.latent_dim}] for {model.name} "
                                f"v{model.version}, not {tensor.datatype} {list(tensor.shape)}")
        if not np.isfinite(tensor.data).all():
            raise ProtocolError("input `latents` holds NaN or infinity")
        count = tensor.shape[0]
    else:
        tensor = body.inputs["seed"]
        if tensor.datatype not in ("INT64", "INT32") or len(tensor.shape) != 1:
            raise ProtocolError(f"input `seed` must be INT64 of shape [N], not {tensor.datatype} {list(tensor.shape)}")
        if tensor.data.size and not (0 <= tensor.data.min() and tensor.data.max() <= MAX_SEED):
            raise ProtocolError(f"every seed must be in 0..{MAX_SEED}")
        count = tensor.shape[0]
    if not 0 < count <= max_images:
        raise ProtocolError(f"{count} images asked for: give 1 to {max_images} (MAX_IMAGES)")
    psi = None if psi is None else float(psi)
    classes = classes_of(body, count)
    if given == ["latents"]:
        return Source(latents=torch.from_numpy(tensor.data.reshape(count, -1).copy()), cls=classes, truncation=psi,
                      field=("class",))
    return Source(seeds=[int(s) for s in tensor.data], cls=classes, truncation=psi)


def classes_of(body: InferRequest, count: int) -> list[str | int] | None:
    """The `class` input: one class (a name or an index) per image, or one for all; None without it."""
    tensor = body.inputs.get("class")
    if tensor is None:
        return None
    if len(tensor.shape) != 1 or tensor.shape[0] not in (1, count):
        raise ProtocolError(f"input `class` must have shape [1] or [{count}], not {list(tensor.shape)}")
    if tensor.datatype == "BYTES":
        try:
            refs: list[str | int] = [value.decode() for value in tensor.data]
        except UnicodeDecodeError:
            raise ProtocolError("input `class`: a class name is not UTF-8") from None
    elif tensor.datatype in ("INT64", "INT32"):
        refs = [int(value) for value in tensor.data]
    else:
        raise ProtocolError(f"input `class` must be INT64 (indices) or BYTES (names), not {tensor.datatype}")
    return refs


def wanted_outputs(body: InferRequest, name: str) -> list[str]:
    """The outputs the request asks for (`images` when it names none: `png` only when asked for), refused before any
    work when the model has no such output or `png` is not asked for as binary data."""
    wanted = list(body.outputs) if body.outputs is not None else ["images"]
    for requested in wanted:
        if requested not in OUTPUTS:
            raise ProtocolError(f"{name} has no output {requested!r}; it has {', '.join(OUTPUTS)}")
    if "png" in wanted and not body.binary("png"):
        raise ProtocolError('output `png` holds binary values: ask for it with `"parameters": {"binary_data": true}`')
    return wanted


def output_tensors(images: torch.Tensor, wanted: list[str]) -> list[Tensor]:
    """uint8 (N, C, H, W) images as the outputs asked for: `images` (N, H, W, C), the pixels `/generate` puts in its
    PNG, and `png`, one PNG per image."""
    pixels = images.permute(0, 2, 3, 1).numpy()
    outputs = []
    if "images" in wanted:
        outputs.append(Tensor("images", "UINT8", pixels.shape, pixels))
    if "png" in wanted:
        pngs = np.array([encode_png(image) for image in pixels], dtype=object)
        outputs.append(Tensor("png", "BYTES", (len(pngs),), pngs))
    return outputs
