"""A damaged file never takes a healthy model down: a version loaded before its file went bad keeps being served
from memory and is named everywhere (/models, /metrics, the log); a damaged version never loaded is not loaded,
and says so; a deleted version is still withdrawn; a mended one is whole again."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil

import pytest

from tests.service_helpers import copy_store, make_client, wait_for, wait_ready

pytestmark = pytest.mark.fast  # make check runs it on every commit


def flip_a_byte(path, offset: int = 5000) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 1]))


def damaged_of(client, name: str) -> list[dict]:
    return client.get(f"/models/{name}").json()["damaged"]


def test_a_loaded_version_damaged_on_disk_keeps_serving_from_memory(tmp_path, trained_store, caplog):
    root = copy_store(trained_store, tmp_path / "store")
    body = {"model": "gan", "seed": 4, "count": 4}
    generator = root / "gan" / "v1" / "generator.pt"
    published = json.loads((root / "gan" / "v1" / "manifest.json").read_text())["files"]["generator.pt"]["sha256"]
    with caplog.at_level(logging.INFO, logger="latentlab.registry"), make_client(root) as client:
        wait_ready(client)
        before = client.post("/generate", json=body).content

        flip_a_byte(generator)
        wait_for(lambda: 'latentlab_damaged_versions{model="gan"} 1.0' in client.get("/metrics").text)  # polled
        damaged = damaged_of(client, "gan")
        assert damaged == [{"version": 1, "file": "generator.pt", "problem": "sha256", "expected": published,
                            "found": hashlib.sha256(generator.read_bytes()).hexdigest(), "served_from_memory": True,
                            "detail": damaged[0]["detail"]}]
        assert "still served from the copy loaded before the damage" in damaged[0]["detail"]
        answer = client.post("/generate", json=body)
        assert answer.status_code == 200 and answer.content == before  # the copy in memory, bit for bit
        assert client.get("/readyz").json()["serving"]["gan"] == 1
        assert client.get("/models/gan").json()["serving"] == 1
        metrics = client.get("/metrics").text
        assert 'latentlab_damaged_versions{model="gan"} 1.0' in metrics
        assert 'latentlab_damaged_versions{model="dcgan"} 0.0' in metrics
        assert 'latentlab_model_loaded{model="gan",precision="fp32",role="latest",version="1"} 1.0' in metrics
        said = [r.getMessage() for r in caplog.records if "damaged on disk" in r.getMessage()]
        assert len(said) == 1 and "gan v1" in said[0] and "generator.pt" in said[0] and "publish" in said[0]
        assert "still served from memory" in said[0]

        flip_a_byte(generator)  # mended: whole again
        wait_for(lambda: 'latentlab_damaged_versions{model="gan"} 0.0' in client.get("/metrics").text)
        assert not damaged_of(client, "gan")
        assert client.post("/generate", json=body).content == before

        shutil.rmtree(root / "gan" / "v1")  # deleting a version still withdraws it
        wait_for(lambda: client.post("/generate", json=body).status_code != 200)
        assert client.post("/generate", json={**body, "model": "dcgan"}).status_code == 200


def test_a_damaged_version_never_loaded_is_not_loaded_and_says_why(tmp_path, trained_store):
    root = copy_store(trained_store, tmp_path / "store")
    (root / "dcgan" / "v1" / "report" / "losses.png").unlink()
    with make_client(root) as client:
        wait_ready(client)
        info = client.get("/models/dcgan").json()
        assert info["versions"] == [] and info["loaded"] == [] and info["latest"] is None
        assert [(d["file"], d["problem"], d["served_from_memory"]) for d in info["damaged"]] == [
            ("report/losses.png", "missing", False)]
        refused = client.post("/generate", json={"model": "dcgan", "version": 1, "seed": 0})
        assert refused.status_code == 404 and "damaged (report/losses.png: missing)" in refused.json()["detail"]
        for path in ("/models/dcgan/versions/1/files/generator.onnx", "/models/dcgan/history?version=1"):
            answer = client.get(path)  # its files and curves: the same 404, saying why
            assert answer.status_code == 404 and "damaged (report/losses.png: missing)" in answer.json()["detail"]
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert listed["dcgan"]["damaged"] and not listed["gan"]["damaged"]
        assert client.post("/generate", json={"model": "gan", "seed": 0}).status_code == 200


def test_a_store_of_only_damaged_versions_says_which_when_not_ready(tmp_path, trained_store):
    root = copy_store(trained_store / "gan", tmp_path / "store" / "gan")
    flip_a_byte(root / "v1" / "generator.pt")
    with make_client(root.parent) as client:
        detail = wait_for(lambda: (r := client.get("/readyz")).status_code == 503 and "damaged" in r.text and r.json())
        assert "gan v1: generator.pt: sha256" in detail["detail"] and "python -m shared verify" in detail["detail"]
