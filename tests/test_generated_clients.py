"""The OpenAPI document makes working clients: openapi-python-client and openapi-typescript generate from the
served /openapi.json without a warning, with method names that read as the operations (generate, sweep,
list_models...), typed request bodies and binary image responses; the generated Python client gets the same PNG
bytes as a raw request. (`make test` installs openapi-typescript from tests/clients/package-lock.json.)"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.service_helpers import make_client, wait_ready

PYTHON_CONFIG = ROOT / "docs" / "clients" / "openapi-python-client.yaml"
NODE_BIN = ROOT / "tests" / "clients" / "node_modules" / ".bin"
OPERATIONS = {"generate", "sweep", "interpolate", "list_models", "get_model", "get_history", "get_directions",
              "get_classes", "get_class_latents", "version_file", "seeded_latent", "score", "project", "healthz", "readyz", "metrics",
              # the Open Inference Protocol's routes (/v2)
              "server_metadata", "server_live", "server_ready", "model_metadata", "model_version_metadata",
              "model_ready", "model_version_ready", "infer", "infer_version"}


@pytest.fixture(scope="module")
def service(trained_store):
    with make_client(trained_store) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def schema_file(service, tmp_path_factory):
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(service.get("/openapi.json").text)
    return path


def test_operation_ids_read_as_method_names(service):
    paths = service.get("/openapi.json").json()["paths"]
    assert {op["operationId"] for route in paths.values() for op in route.values()} == OPERATIONS


def test_image_responses_are_binary_with_a_schema(service):
    paths = service.get("/openapi.json").json()["paths"]
    for route in ("/generate", "/sweep", "/interpolate"):
        content = paths[route]["post"]["responses"]["200"]["content"]
        for media_type, body in content.items():
            assert body["schema"] == {"type": "string", "format": "binary", "contentMediaType": media_type}


@pytest.mark.slow
def test_openapi_python_client_generates_a_typed_client_that_works(service, schema_file, tmp_path):
    out = tmp_path / "latentlab_client"
    bin_dir = Path(sys.executable).parent  # the generator formats its output with the ruff beside it
    done = subprocess.run([str(bin_dir / "openapi-python-client"), "generate", "--path", str(schema_file),
                           "--config", str(PYTHON_CONFIG), "--meta", "none", "--output-path", str(out)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "warning" not in said.lower() and "unsupported" not in said.lower(), said

    sys.path.insert(0, str(tmp_path))
    try:
        generate = importlib.import_module("latentlab_client.api.images.generate")
        sweep = importlib.import_module("latentlab_client.api.images.sweep")
        list_models = importlib.import_module("latentlab_client.api.models.list_models")
        models = importlib.import_module("latentlab_client.models")
        from latentlab_client import Client
    finally:
        sys.path.remove(str(tmp_path))
    client = Client(base_url="http://testserver")
    client.set_httpx_client(service)  # the TestClient is an httpx.Client over the app

    # typed bodies: every field a keyword, not a dict of Any
    body = models.GenerateRequest(model="dcgan", seed=3, count=4, scale=2)
    got = generate.sync_detailed(client=client, body=body)
    raw = service.post("/generate", json={"model": "dcgan", "seed": 3, "count": 4, "scale": 2})
    assert got.status_code == 200 and got.content == raw.content
    assert got.parsed.payload.read() == raw.content  # the parsed response is the PNG's bytes (a File)

    body = models.SweepRequest(model="dcgan", dims=[0, 5], values=[-2.0, 0.0, 2.0], seed=1, count=3)
    got = sweep.sync_detailed(client=client, body=body)
    raw = service.post("/sweep", json={"model": "dcgan", "dims": [0, 5], "values": [-2.0, 0.0, 2.0], "seed": 1,
                                       "count": 3})
    assert got.status_code == 200 and got.content == raw.content

    listing = list_models.sync(client=client)
    assert {m.name for m in listing.models} == {"gan", "dcgan"}

    refused = generate.sync_detailed(client=client, body=models.GenerateRequest(model="dcgan", seed=1, latent=[0.0]))
    assert refused.status_code == 422  # the service's own validation stands behind the typed body


@pytest.mark.slow
def test_openapi_typescript_generates_types_that_compile(schema_file, tmp_path):
    if not (NODE_BIN / "openapi-typescript").exists():
        pytest.fail("openapi-typescript is not installed: run `npm ci --prefix tests/clients` (make test does)")
    types = tmp_path / "latentlab.d.ts"
    # fields with a default are optional in a request: the generator's documented switch for request bodies
    done = subprocess.run([str(NODE_BIN / "openapi-typescript"), str(schema_file), "--default-non-nullable=false",
                           "-o", str(types)],
                          capture_output=True, text=True, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "warn" not in said.lower() and "error" not in said.lower(), said

    # a program typed by them: a right body compiles, a wrong one does not
    use = tmp_path / "use.ts"
    use.write_text('import type { paths, operations } from "./latentlab";\n'
                   'type Body = paths["/generate"]["post"]["requestBody"]["content"]["application/json"];\n'
                   'type Png = operations["generate"]["responses"][200]["content"]["image/png"];\n'
                   'export const body: Body = { model: "dcgan", seed: 0, count: 8, scale: 4 };\n'
                   'export const png: Png = "";\n')
    tsc = [str(NODE_BIN / "tsc"), "--noEmit", "--strict", str(use)]
    compiled = subprocess.run(tsc, capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    use.write_text(use.read_text().replace('seed: 0', 'seed: "zero"'))
    wrong = subprocess.run(tsc, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "use.ts(4," in wrong.stdout and "not assignable" in wrong.stdout, wrong.stdout
    assert json.loads(schema_file.read_text())["paths"]["/generate"]["post"]["operationId"] == "generate"
