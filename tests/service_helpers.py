"""Helpers for service tests: an app on a store, a `python -m service` process, waiting for versions, publishing
more versions, a store as code before the forms made it."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from latentlab.results import ImageResult
from service.api.app import create_app
from service.api.settings import Settings
from shared.store import GENERATOR, NETWORKS, Store, form_file
from tests.conftest import ROOT, built_once, train_and_publish
from trainer.training.config import TrainConfig

# Admission has its own tests (test_admission, test_serving_engine): elsewhere a slow or busy CI machine must not
# turn a request into a 503 because its predicted wait passed the default second.
PATIENT_QUEUE_DELAY_MS = 60_000


def make_client(model_dir: Path, **overrides) -> TestClient:
    settings = Settings(**{"model_dir": model_dir, "device": "cpu", "reload_interval": 0.1,
                           "max_queue_delay_ms": PATIENT_QUEUE_DELAY_MS, **overrides})
    return TestClient(create_app(settings))


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_ready(client: TestClient) -> None:
    wait_for(lambda: client.get("/readyz").status_code == 200)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(env: dict, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m service` with `env` on `port` (a free one), patient in admission; the process and its URL."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT,
                            env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port),
                                 "MAX_QUEUE_DELAY_MS": str(PATIENT_QUEUE_DELAY_MS), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_serving(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the `python -m service` process `proc` answers GET /readyz with 200 (a failure if it exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("service did not become ready")


def png(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def grid_images(response) -> np.ndarray:
    """The images of an image answer (a grid, split as its X-Grid header says; or an animation's frames), as the
    client splits them: (N, H, W) uint8, or (N, H, W, 3) in colour."""
    assert response.status_code == 200, response.text
    return ImageResult.from_response(response.content, dict(response.headers)).images


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".runs"))
    return dst


def copy_model(src: Path, root: Path, name: str) -> Path:
    """A model's versions (the folder `src`) copied into the store `root` under another name."""
    copy_store(src, root / name)
    for manifest in (root / name).glob("v*/manifest.json"):
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "name": name}, indent=2) + "\n")
    return root / name


def publish_trained(root: Path, fashion_dir: Path, arch: str = "gan", seed: int = 1, name: str | None = None,
                    class_samples: int = 1000) -> int:
    """One more version of `name` in the store `root`: a short run of `arch` with its own seed, trained once per test
    run (the first test to ask trains it) and published here by the store's own publishing, as a new version is."""
    cfg = TrainConfig(arch=arch, epochs=1, limit=128, batch_size=64, seed=seed, data_dir=str(fashion_dir),
                      device="cpu", class_samples=class_samples)
    trained = Store(built_once(f"{arch}-seed{seed}-classes{class_samples}",
                               lambda folder: train_and_publish(folder, cfg))).get(arch)
    store = Store(root)
    with store.staging(name or arch) as stage:
        for file in trained.manifest.files:
            (stage / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trained.path / file, stage / file)
        return store.publish(name or arch, stage, trained.manifest.model_dump(exclude_unset=True)).version


def publish_broken(root: Path, name: str = "gan") -> int:
    """A complete, correctly hashed version whose generator is not TorchScript at all."""
    store = Store(root)
    with store.staging(name) as stage:
        (stage / GENERATOR).write_bytes(b"this is not a TorchScript archive")
        return store.publish(name, stage, {"latent_dim": 100, "image_shape": [1, 28, 28], "architecture": "gan"}).version


def strip_forms(root, model: str = "*") -> None:
    """The store (or one model of it) as code before the forms made it: TorchScript only, manifests without
    `forms`."""
    for manifest_path in root.glob(f"{model}/v*/manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        for network in NETWORKS:
            for form in ("export", "onnx"):
                name = form_file(network, form)
                if manifest["files"].pop(name, None) is not None:
                    (manifest_path.parent / name).unlink()
        manifest.pop("forms", None)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


@contextmanager
def service(model_dir: Path | str, **env):
    """`python -m service` on `model_dir` on the CPU (and `env`), serving: its URL while the block runs, then stopped."""
    proc, url = start_service({"MODEL_DIR": str(model_dir), "DEVICE": "cpu", **env})
    try:
        wait_serving(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
