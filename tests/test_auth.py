"""API keys: every route but the probes and the docs needs one when keys are set; none leaks anywhere."""
from __future__ import annotations

import logging

import pytest

from service.api.auth import ApiKeys, read_keys
from tests.conftest import assert_user_error, run_cli
from tests.service_helpers import make_client, png, wait_for

pytestmark = pytest.mark.fast  # make check runs it on every commit

KEYS = ("k-first-8f2c9a", "k-second-1b7e44")
GENERATE = {"model": "gan", "seed": 0, "count": 2}
PROTECTED = [("GET", "/models", None), ("GET", "/models/gan", None), ("POST", "/generate", GENERATE),
             ("POST", "/sweep", {"model": "gan", "dims": [1], "values": [0.0], "count": 1}), ("GET", "/metrics", None)]
OPEN = ["/healthz", "/readyz", "/docs", "/openapi.json", "/static/swagger/swagger-ui.css"]


@pytest.fixture(scope="module")
def keyed(trained_store):
    with make_client(trained_store, api_keys=",".join(KEYS)) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200)
        yield client


def call(client, method, path, body, headers=None):
    return client.request(method, path, json=body, headers=headers or {})


@pytest.mark.parametrize("method,path,body", PROTECTED)
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Bearer ", "Basic " + KEYS[0], KEYS[0],
                                    "Bearer " + KEYS[0] + "x", "Bearer " + KEYS[0][:-1]])
def test_a_missing_wrong_or_malformed_key_gets_401(keyed, method, path, body, header):
    r = call(keyed, method, path, body, {"Authorization": header} if header else {})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "detail" in r.json() and KEYS[0] not in r.text


@pytest.mark.parametrize("method,path,body", PROTECTED)
@pytest.mark.parametrize("key", KEYS)
def test_each_key_opens_every_protected_route(keyed, method, path, body, key):
    r = call(keyed, method, path, body, {"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    if path in ("/generate", "/sweep"):
        png(r)


@pytest.mark.parametrize("path", OPEN)
def test_probes_docs_and_static_files_need_no_key(keyed, path):
    assert keyed.get(path).status_code == 200


def test_the_schema_documents_the_scheme_so_authorize_works(keyed):
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "API key",
        "description": schema["components"]["securitySchemes"]["apiKey"]["description"]}
    for path, op in [("/generate", "post"), ("/models", "get"), ("/metrics", "get")]:
        assert schema["paths"][path][op]["security"] == [{"apiKey": []}]
        assert "401" in schema["paths"][path][op]["responses"]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_metrics_public_opens_only_metrics(trained_store):
    with make_client(trained_store, api_keys=KEYS[0], metrics_public=True) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/models").status_code == 401


def test_without_keys_the_service_is_open_and_warns_when_reachable(trained_store, caplog):
    with caplog.at_level(logging.WARNING, logger="latentlab.service"):
        with make_client(trained_store, host="0.0.0.0") as client:
            assert client.get("/models").status_code == 200
    assert any("no API keys" in r.getMessage() and "0.0.0.0" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="latentlab.service"):
        with make_client(trained_store, host="127.0.0.1") as client:
            client.get("/healthz")
    assert not [r for r in caplog.records if "no API keys" in r.getMessage()]


def test_keys_never_reach_logs_or_metrics(trained_store, caplog):
    with caplog.at_level(logging.DEBUG):
        with make_client(trained_store, api_keys=",".join(KEYS)) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200)
            for key in (*KEYS, "Bearer-guess"):
                call(client, "POST", "/generate", GENERATE, {"Authorization": f"Bearer {key}"})
                call(client, "POST", "/generate", {"model": "gan", "seed": "x"}, {"Authorization": f"Bearer {key}"})
            exposition = client.get("/metrics", headers={"Authorization": f"Bearer {KEYS[1]}"}).text
            assert repr(client.app.state.services.api_keys) == "ApiKeys(2 keys)"
            assert KEYS[0] not in repr(client.app.state.services.settings)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "generate" in exposition and logged  # both were produced ...
    for key in KEYS:
        assert key not in logged and key not in exposition  # ... and neither holds a key


def test_keys_file_lines_comments_and_the_inline_list(tmp_path):
    file = tmp_path / "keys"
    file.write_text("# rotated 2026-11\n\n  file-key-1  \nfile-key-2\n")
    keys = ApiKeys(read_keys(" inline-1 , ,inline-2", file))
    assert all(keys.accepts(k) for k in ("inline-1", "inline-2", "file-key-1", "file-key-2"))
    assert not any(keys.accepts(k) for k in ("", "# rotated 2026-11", "file-key", "inline-1 "))
    assert not ApiKeys(read_keys("", None)).enabled


@pytest.mark.parametrize("content,needle", [(None, "cannot be read"), ("# only a comment\n", "holds no key")])
def test_a_bad_keys_file_stops_the_service_with_one_line(tmp_path, content, needle):
    file = tmp_path / "keys"
    if content is not None:
        file.write_text(content)
    result = run_cli("service", env={"MODEL_DIR": str(tmp_path), "DEVICE": "cpu", "API_KEYS_FILE": str(file)},
                     timeout=60)
    assert_user_error(result, needle, one_line=True)
