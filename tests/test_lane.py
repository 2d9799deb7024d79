"""The lean path of the image routes answers every request exactly as FastAPI alone does: the same status,
headers and bytes, for valid requests and for every kind of malformed one, with and without API keys."""
import json

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.settings import Settings
from tests.service_helpers import copy_store, wait_ready

pytestmark = pytest.mark.fast  # make check runs it on every commit

KEY = "lane-key-0123456789"
LATENT = [0.1] * 100
COMPARED_HEADERS = ("content-type", "content-length", "x-model", "x-model-version", "x-image-count", "retry-after",
                    "www-authenticate", "cache-control", "inference-header-content-length")

JSON = {"content-type": "application/json"}
REQUESTS = [
    # (path, body bytes or a JSON value, extra headers)
    ("/generate", {"model": "dcgan", "seed": 3, "count": 5, "nrow": 3, "scale": 2}, {}),
    ("/generate", {"model": "gan", "latent": LATENT}, {}),
    ("/generate", {"model": "gan", "latents": [LATENT, LATENT], "padding": 0}, {}),
    ("/generate", {"model": "gan", "version": 1, "count": 2}, {}),
    ("/sweep", {"model": "dcgan", "dims": [1, 2], "values": [-2, 2], "count": 3}, {}),
    ("/sweep", {"model": "dcgan", "directions": [0], "values": [-3, 3], "mode": "add", "count": 2, "labels": False}, {}),
    ("/sweep", {"model": "gan"}, {}),
    ("/interpolate", {"model": "gan", "start": {"seed": 1}, "end": {"seed": 2, "index": 3}, "steps": 5}, {}),
    ("/interpolate", {"model": "gan", "start": {"latent": LATENT}, "end": {"seed": 2}, "steps": 3, "format": "gif"}, {}),
    # malformed bodies and content types
    ("/generate", b"", {}),
    ("/generate", b'{"model": "gan", "seed": 1}', {"content-type": ""}),
    ("/generate", b'{"model": "gan", "seed": 1}', {"content-type": "text/plain"}),
    ("/generate", b'{"model": "gan", "seed": 1}', {"content-type": "application/merge-patch+json"}),
    ("/generate", b'{"model": "gan", "seed": 1}', {"content-type": "application/json; charset=utf-8"}),
    ("/generate", b'{"model": "gan", "seed": 1', {}),
    ("/generate", b'{"model": "g\xe4n", "seed": 1}', {}),
    ("/generate", '{"model": "gan", "seed": 1}'.encode("utf-16"), {}),
    ("/generate", b'[1, 2]', {}),
    ("/generate", b'{"model": "gan", "latent": [NaN]}', {}),
    ("/generate", b'{"model": "gan", "latent": [1e999]}', {}),
    # invalid fields
    ("/generate", {"model": "gan", "seed": "2"}, {}),
    ("/generate", {"model": "gan", "seed": 2.0}, {}),
    ("/generate", {"model": "gan", "seed": 2.5}, {}),
    ("/generate", {"model": "gan", "seed": 1, "latent": LATENT}, {}),
    ("/generate", {"model": "gan", "seed": None}, {}),
    ("/generate", {"model": "gan", "seed": 1, "colour": "red"}, {}),
    ("/generate", {"model": "gan", "latent": [0.0] * 7}, {}),
    ("/generate", {"model": "gan", "seed": 1, "count": 300}, {}),
    ("/generate", {"model": "gan", "seed": 1, "scale": 99}, {}),
    ("/generate", {"model": "Bad Name", "seed": 1}, {}),
    ("/generate", {"model": "absent", "seed": 1}, {}),
    ("/generate", {"model": "gan", "version": 99, "seed": 1}, {}),
    ("/sweep", {"model": "gan", "dims": [100]}, {}),
    ("/sweep", {"model": "gan", "dims": [1], "directions": [0]}, {}),
    ("/interpolate", {"model": "gan", "start": {"seed": 1, "latent": LATENT}, "end": {"seed": 2}}, {}),
    # the Open Inference Protocol's infer routes: JSON and binary data, pinned versions, refusals
    ("/v2/models/dcgan/infer", {"inputs": [{"name": "seed", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}, {}),
    ("/v2/models/gan/versions/1/infer", {"id": "a", "inputs": [{"name": "latents", "shape": [1, 100],
                                                                 "datatype": "FP32", "data": LATENT}]}, {}),
    ("/v2/models/gan/infer", b'{"inputs":[{"name":"seed","shape":[1],"datatype":"INT64","parameters":'
                             b'{"binary_data_size":8}}],"outputs":[{"name":"png","parameters":{"binary_data":true}}]}'
                             + (7).to_bytes(8, "little"), {"inference-header-content-length": "156"}),
    ("/v2/models/gan/versions/0/infer", {"inputs": []}, {}),
    ("/v2/models/Bad Name/infer", {"inputs": []}, {}),
    ("/v2/models/absent/infer", {"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}]}, {}),
    ("/v2/models/gan/versions/99/infer", {"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64",
                                                       "data": [1]}]}, {}),
    ("/v2/models/gan/infer", {"inputs": [{"name": "seed", "shape": [3], "datatype": "INT64", "data": [1]}]}, {}),
    ("/v2/models/gan/infer", b"{broken", {}),
]
AUTH = [{}, {"authorization": f"Bearer {KEY}"}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {KEY}"},
        {"authorization": "Bearer"}, {"authorization": f"bearer {KEY}"}]


@pytest.fixture(scope="module")
def pairs(trained_store, tmp_path_factory):
    """(lean, FastAPI-only) clients, open and keyed, all on copies of one store."""
    clients = {}
    for keyed in (False, True):
        for lean in (True, False):
            root = copy_store(trained_store, tmp_path_factory.mktemp("lane") / "store")
            settings = Settings(model_dir=root, device="cpu", reload_interval=0.1, max_images=256,
                                api_keys=KEY if keyed else "")
            client = TestClient(create_app(settings, lean_routes=lean))
            client.__enter__()
            wait_ready(client)
            clients[(keyed, lean)] = client
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)


def answer(client, path, body, headers):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={**JSON, **headers})


def same(lean, reference, what):
    assert lean.status_code == reference.status_code, (what, lean.text[:300], reference.text[:300])
    for name in COMPARED_HEADERS:
        assert lean.headers.get(name) == reference.headers.get(name), (what, name)
    if reference.headers.get("content-type", "").startswith("application/json"):
        assert lean.json() == reference.json(), what
    else:
        assert lean.content == reference.content, what


@pytest.mark.parametrize("path,body,headers", REQUESTS, ids=[f"{i}{r[0]}" for i, r in enumerate(REQUESTS)])
def test_the_lane_answers_as_fastapi_does(pairs, path, body, headers):
    same(answer(pairs[(False, True)], path, body, headers), answer(pairs[(False, False)], path, body, headers),
         (path, body))


@pytest.mark.parametrize("auth", AUTH, ids=["none", "valid", "wrong", "basic", "empty", "lowercase"])
@pytest.mark.parametrize("path,body", [("/generate", {"model": "gan", "seed": 1}), ("/generate", b"{broken"),
                                       ("/sweep", {"model": "gan", "dims": [1]}),
                                       ("/v2/models/gan/infer", {"inputs": [{"name": "seed", "shape": [1],
                                                                             "datatype": "INT64", "data": [1]}]})])
def test_the_lane_checks_keys_as_fastapi_does(pairs, auth, path, body):
    same(answer(pairs[(True, True)], path, body, auth), answer(pairs[(True, False)], path, body, auth), (auth, body))


@pytest.mark.parametrize("method,path", [("GET", "/generate"), ("PUT", "/sweep"), ("POST", "/generate/"),
                                         ("POST", "/generate/x"), ("POST", "/models")])
def test_other_methods_and_paths_fall_through_to_fastapi(pairs, method, path):
    lean, reference = (pairs[(False, lean)].request(method, path, json={"model": "gan", "seed": 1},
                                                    follow_redirects=False) for lean in (True, False))
    same(lean, reference, (method, path))


def test_the_lane_is_measured_under_the_route_template(pairs):
    client = pairs[(False, True)]
    client.post("/generate", json={"model": "gan", "seed": 1})
    assert 'latentlab_requests_total{method="POST",route="/generate",status="200"}' in client.get("/metrics").text
    client.post("/v2/models/gan/versions/1/infer", json={"inputs": [{"name": "seed", "shape": [1],
                                                                   "datatype": "INT64", "data": [1]}]})
    assert ('latentlab_requests_total{method="POST",route="/v2/models/{name}/versions/{version}/infer",status="200"}'
            in client.get("/metrics").text)
