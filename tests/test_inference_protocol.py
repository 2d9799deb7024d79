"""The Open Inference Protocol, called by Triton's own client (tritonclient.http) on a real `python -m service`:
health and metadata, images from seeds and from latents with binary data on and off, pinned versions, a
class-conditional version by class index and by name, PNGs, truncation, and refusals in the protocol's shape. The
pixels are those of `POST /generate` for the same request, byte for byte."""
from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.service_helpers import copy_model, copy_store, publish_trained, start_service, wait_for, wait_serving

pytestmark = pytest.mark.fast  # make check runs it on every commit


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_store, conditional_store, fashion_dir):
    root = tmp_path_factory.mktemp("v2-store")
    copy_store(trained_store / "gan", root / "gan")
    publish_trained(root, fashion_dir, seed=2)  # gan v2: a second version to pin
    copy_store(trained_store / "dcgan", root / "dcgan")
    copy_model(conditional_store / "gan", root, "cond")
    proc, url = start_service({"MODEL_DIR": str(root), "DEVICE": "cpu", "LOG_LEVEL": "warning"})
    try:
        wait_serving(url, proc)
        wait_for(lambda: set(httpx.get(f"{url}/readyz", timeout=5).json()["serving"]) == {"gan", "dcgan", "cond"})
        yield url, triton.InferenceServerClient(url.removeprefix("http://"))
    finally:
        proc.kill()
        proc.wait()


def generated(url: str, **body) -> np.ndarray:
    """(N, H, W, C) pixels of POST /generate, its grid cut back into the images."""
    count = len(body["latents"]) if "latents" in body else body.setdefault("count", 1)
    png = httpx.post(f"{url}/generate", json={"padding": 0, "nrow": count, **body}, timeout=30)
    assert png.status_code == 200, png.text
    grid = np.asarray(Image.open(io.BytesIO(png.content)))
    grid = grid[:, :, None] if grid.ndim == 2 else grid
    return np.stack(np.split(grid, count, axis=1))


def tensor(name: str, values: np.ndarray, datatype: str, binary: bool = True) -> triton.InferInput:
    t = triton.InferInput(name, list(values.shape), datatype)
    t.set_data_from_numpy(values, binary_data=binary)
    return t


def test_health_and_metadata(served):
    url, client = served
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("dcgan") and client.is_model_ready("gan", "1") and not client.is_model_ready("nope")
    meta = client.get_model_metadata("dcgan")
    assert meta["inputs"][:2] == [{"name": "latents", "datatype": "FP32", "shape": [-1, 100]},
                                  {"name": "seed", "datatype": "INT64", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 32, 32, 1]},
                               {"name": "png", "datatype": "BYTES", "shape": [-1]}]
    assert client.get_model_metadata("gan")["versions"] == ["1", "2"]
    assert client.get_model_metadata("gan", "1")["versions"] == ["1"]
    assert [i["name"] for i in client.get_model_metadata("cond")["inputs"]] == ["latents", "seed", "class"]
    missing = httpx.get(f"{url}/v2/models/nope", timeout=10)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert httpx.get(f"{url}/v2/health/live", timeout=10).status_code == 200


@pytest.mark.parametrize("binary", [True, False])
def test_seeds_and_latents_give_the_pixels_of_generate(served, binary):
    url, client = served
    seeds = np.array([0, 5, 11], dtype=np.int64)
    result = client.infer("dcgan", [tensor("seed", seeds, "INT64", binary)],
                          outputs=[triton.InferRequestedOutput("images", binary_data=binary)])
    images = result.as_numpy("images")
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32, 1)
    for i, seed in enumerate(seeds):
        assert np.array_equal(images[i], generated(url, model="dcgan", seed=int(seed))[0])

    latents = np.random.default_rng(3).standard_normal((4, 100)).astype(np.float32)
    result = client.infer("dcgan", [tensor("latents", latents, "FP32", binary)],
                          outputs=[triton.InferRequestedOutput("images", binary_data=binary)])
    assert np.array_equal(result.as_numpy("images"), generated(url, model="dcgan", latents=latents.tolist()))


def test_pinned_versions_pngs_and_truncation(served):
    url, client = served
    seeds = tensor("seed", np.array([1, 2], dtype=np.int64), "INT64")
    for version in ("1", "2"):
        images = client.infer("gan", [seeds], model_version=version).as_numpy("images")
        assert np.array_equal(images, np.concatenate([generated(url, model="gan", version=int(version), seed=s)
                                                      for s in (1, 2)]))
    assert not np.array_equal(client.infer("gan", [seeds], model_version="1").as_numpy("images"),
                              client.infer("gan", [seeds], model_version="2").as_numpy("images"))

    assert client.infer("gan", [seeds]).get_output("png") is None  # no outputs named: the images alone
    result = client.infer("gan", [seeds], outputs=[triton.InferRequestedOutput("images"),
                                                   triton.InferRequestedOutput("png")])
    pngs = result.as_numpy("png")
    assert [np.asarray(Image.open(io.BytesIO(p)))[:, :, None].tolist() for p in pngs] == \
        result.as_numpy("images").tolist()
    assert result.get_response()["model_version"] == "2"

    truncated = client.infer("gan", [seeds], parameters={"truncation": 0.5}).as_numpy("images")
    assert np.array_equal(truncated[1], generated(url, model="gan", seed=2, truncation=0.5)[0])


def test_a_conditional_version_takes_its_class_by_index_or_by_name(served):
    url, client = served
    seeds = tensor("seed", np.array([3, 4], dtype=np.int64), "INT64")
    by_index = client.infer("cond", [seeds, tensor("class", np.array([1], dtype=np.int64), "INT64")])
    by_name = client.infer("cond", [seeds, tensor("class", np.array([b"Trouser"], dtype=np.object_), "BYTES")])
    expected = np.concatenate([generated(url, model="cond", seed=s, **{"class": "Trouser"}) for s in (3, 4)])
    assert np.array_equal(by_index.as_numpy("images"), expected)
    assert np.array_equal(by_name.as_numpy("images"), expected)
    each = client.infer("cond", [seeds, tensor("class", np.array([1, 7], dtype=np.int64), "INT64")])
    assert np.array_equal(each.as_numpy("images")[0], expected[0])
    assert np.array_equal(each.as_numpy("images")[1], generated(url, model="cond", seed=4, **{"class": 7})[0])


@pytest.mark.parametrize("inputs, message", [
    ([("nope", np.array([1], dtype=np.int64), "INT64")], "has no input 'nope'"),
    ([("seed", np.arange(300, dtype=np.int64), "INT64")], "MAX_IMAGES"),
    ([("seed", np.array([-1], dtype=np.int64), "INT64")], "every seed must be in"),
    ([("latents", np.zeros((1, 7), dtype=np.float32), "FP32")], "shape [N, 100]"),
    ([("seed", np.array([1], dtype=np.int64), "INT64"), ("class", np.array([1], dtype=np.int64), "INT64")],
     "not class-conditional"),
    ([("seed", np.array([1], dtype=np.int64), "INT64"), ("latents", np.zeros((1, 100), np.float32), "FP32")],
     "exactly one of"),
])
def test_refusals_are_400s_that_say_why(served, inputs, message):
    url, client = served
    with pytest.raises(InferenceServerException) as refused:
        client.infer("dcgan", [tensor(*spec) for spec in inputs])
    assert refused.value.status() == "400" and message in refused.value.message()


def test_errors_have_the_protocol_shape_and_bad_bodies_are_refused_cheaply(served):
    url, _ = served
    for body, headers in [(b"{not json", {}), (b'{"inputs": []}', {}),
                          (b'{"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", '
                           b'"parameters": {"binary_data_size": 8}}]}', {"Inference-Header-Content-Length": "90"}),
                          (b'{"inputs": [{"name": "seed", "shape": [2], "datatype": "INT64", "data": [1]}]}', {})]:
        r = httpx.post(f"{url}/v2/models/dcgan/infer", content=body, headers=headers, timeout=10)
        assert r.status_code == 400 and set(r.json()) == {"error"}, (body, r.text)
    r = httpx.post(f"{url}/v2/models/dcgan/versions/9/infer",
                   json={"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}]}, timeout=10)
    assert r.status_code == 404 and "version 9" in r.json()["error"]
    r = httpx.post(f"{url}/v2/models/dcgan/infer", timeout=10, json={
        "id": "req-7", "inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}],
        "outputs": [{"name": "png"}]})
    assert r.status_code == 400 and "binary_data" in r.json()["error"]  # a PNG cannot travel as JSON text
    r = httpx.post(f"{url}/v2/models/dcgan/infer", timeout=10, json={
        "id": "req-7", "inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [[1]]}],
        "outputs": [{"name": "images"}]})
    assert r.status_code == 200 and r.json()["id"] == "req-7" and len(r.json()["outputs"][0]["data"]) == 32 * 32
