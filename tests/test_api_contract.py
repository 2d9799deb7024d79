"""The API contract, fuzzed: Schemathesis generates requests from /openapi.json (valid ones, invalid ones,
malformed ones) and runs every check it has against the answers: no 5xx, only documented status codes,
content types and headers, bodies that match their schemas, schema-valid requests accepted, invalid ones
refused, and with API keys set, 401 for requests without one.

One check is adapted, not dropped: the schema cannot say that a latent's length must be the named model's
latent_dim, nor that dims x values x count must stay within MAX_IMAGES. The service refuses those with a
422 whose error `type` is `model_mismatch` or `limit_exceeded` (documented on every route that can), and
only that 422 counts as accepting valid data. Likewise the Open Inference Protocol's routes (/v2): their schema is
the protocol's, for tensors of any name, shape and type, and the protocol answers a request the model cannot take,
or a readiness that is false, with a 400 in its own shape (`{"error": ...}`, `{"ready": false}`); that 400 counts
too. Any other refusal of a valid request still fails.

The run is bounded and seeded (derandomised), so it is the same on every machine and takes seconds."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.api.app import create_app
from service.api.settings import Settings
from service.operations.rejections import BEYOND_SCHEMA
from tests.service_helpers import copy_store, wait_ready

KEY = "fuzz-key-0123456789"
EXAMPLES = 60  # per operation and phase; the whole file runs in well under a minute here

# Schemathesis reads the schema at import, so the apps exist before the store is filled (by `serving`)
STORES = {kind: Path(tempfile.mkdtemp(prefix=f"latentlab-fuzz-{kind}-")) for kind in ("open", "keyed")}
APPS = {
    "open": create_app(Settings(model_dir=STORES["open"], device="cpu", reload_interval=0.1)),
    "keyed": create_app(Settings(model_dir=STORES["keyed"], device="cpu", reload_interval=0.1, api_keys=KEY)),
}
open_api = schemathesis.openapi.from_asgi("/openapi.json", APPS["open"])
keyed_api = schemathesis.openapi.from_asgi("/openapi.json", APPS["keyed"])


@pytest.fixture(scope="module", autouse=True)
def serving(trained_store, conditional_store):
    """The unconditional dcgan and the class-conditional gan: the fuzzer's requests reach both kinds."""
    with contextlib.ExitStack() as running:
        for kind, root in STORES.items():
            shutil.rmtree(root)
            copy_store(trained_store / "dcgan", root / "dcgan")
            copy_store(conditional_store / "gan", root / "gan")
            client = running.enter_context(TestClient(APPS[kind], headers={"Authorization": f"Bearer {KEY}"}))
            wait_ready(client)  # the lifespan runs (store polling, the inference thread) until the module ends
        yield
    for root in STORES.values():
        shutil.rmtree(root, ignore_errors=True)


def accepts_valid_data(ctx, response, case):
    """Schemathesis' positive_data_acceptance, except for the 422s that name what no schema can state."""
    if response.status_code == 422 and {e["type"] for e in response.json()["detail"]} <= BEYOND_SCHEMA:
        return None
    if case.path.startswith("/v2") and response.status_code == 400 and (
            set(response.json()) == {"error"} or response.json().get("ready") is False):
        return None
    return positive_data_acceptance(ctx, response, case)


FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


@open_api.parametrize()
@FUZZ
def test_open_service_keeps_its_contract(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance], additional_checks=[accepts_valid_data])


@keyed_api.parametrize()
@FUZZ
def test_keyed_service_keeps_its_contract(case):
    # the generated key is replaced by a valid one; a case that leaves the header out (a negative case: the key is
    # required) is sent without one, so it must be refused, not authorised behind its back
    keyed = {"Authorization": f"Bearer {KEY}"} if "Authorization" in (case.headers or {}) else None
    case.call_and_validate(headers=keyed, excluded_checks=[positive_data_acceptance],
                           additional_checks=[accepts_valid_data])
