"""Where a picture lives in latent space: the encoder published with a version, POST /project (known answers,
determinism, the 422s, the lane rule by the engine's own timestamps), `python -m trainer.project`, and an
encoder run interrupted and resumed."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from shared.imaging import torchscript
from shared.imaging.pixels import fit_image, to_model_range
from shared.store import ENCODER, MANIFEST, Store
from tests.conftest import ROOT, assert_user_error, run_cli
from tests.service_helpers import copy_store, make_client, png, publish_trained, wait_for, wait_ready

SERVED_STORE = "semantic_store"  # the conftest `client` serves it, with room for long projections
SERVICE_SETTINGS = {"max_project_steps": 400}

def generated_png(client, seed: int) -> bytes:
    return client.post("/generate", json={"model": "gan", "seed": seed, "count": 1, "padding": 0}).content


def project(client, picture: bytes, **form):
    r = client.post("/project", data={"model": "gan", **{k: str(v) for k, v in form.items()}},
                    files={"file": ("picture.png", picture, "image/png")})
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------- the encoder in the store
def test_the_encoder_is_published_hashed_and_verified(semantic_store, tmp_path):
    version = Store(semantic_store).get("gan")
    assert ENCODER in version.manifest.files and version.manifest.encoder["steps"] == 200
    encoder = torchscript.load(version.path / ENCODER)
    assert encoder(torch.zeros(3, 1, 28, 28)).shape == (3, 100)
    copy = copy_store(semantic_store, tmp_path / "store")
    (copy / "gan" / "v1" / ENCODER).write_bytes(b"tampered")
    assert Store(copy).versions("gan") == []  # verified like every other file of the version


# ---------------------------------------------------------------------- POST /project
def test_projecting_a_generated_image_finds_a_latent_that_makes_it(client):
    found = project(client, generated_png(client, 7), steps=200, seed=1)
    assert found["start"] == "encoder" and found["steps"] == 200 and len(found["latent"]) == 100
    start, final = found["losses"]["start"], found["losses"]["final"]
    assert final["total"] < start["total"] and final["pixel"] < 0.02  # about 23 dB or better
    rebuilt = client.post("/generate", json={"model": "gan", "latent": found["latent"], "padding": 0}).content
    a = np.asarray(png_image(rebuilt), dtype=int)
    b = np.asarray(png_image(generated_png(client, 7)), dtype=int)
    assert np.abs(a - b).mean() < 12  # grey levels: the same picture, near enough


def png_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("L")


def test_zero_steps_is_the_encoders_guess(client, semantic_store):
    picture = generated_png(client, 3)
    found = project(client, picture, steps=0)
    version = Store(semantic_store).get("gan")
    pixels = fit_image(png_image(picture), 28, 1).copy()
    with torch.no_grad():
        guess = torchscript.load(version.path / ENCODER)(to_model_range(torch.from_numpy(pixels).permute(2, 0, 1)[None]))
    assert np.allclose(found["latent"], guess[0].numpy(), atol=1e-5)
    assert found["losses"]["start"] == found["losses"]["final"]


def test_the_same_picture_and_seed_give_the_same_answer(client):
    picture = generated_png(client, 4)
    first, again = (project(client, picture, steps=60, seed=5) for _ in range(2))
    assert first["latent"] == again["latent"] and first["losses"] == again["losses"]
    assert project(client, picture, steps=60, seed=6)["latent"] != first["latent"]


def test_the_png_shows_the_picture_beside_its_reconstruction(client):
    r = client.post("/project", data={"model": "gan", "steps": "10", "format": "png", "scale": "2"},
                    files={"file": ("p.png", generated_png(client, 2), "image/png")})
    assert png(r).size == ((2 * 30 + 2) * 2, 32 * 2) and r.headers["x-image-count"] == "2"


@pytest.mark.parametrize("data,form,kind", [
    (b"not a picture", {}, "invalid_image"),
    (None, {"steps": "401"}, "limit_exceeded"),
])
def test_bad_uploads_get_the_same_422s_as_score(client, data, form, kind):
    picture = data if data is not None else generated_png(client, 1)
    r = client.post("/project", data={"model": "gan", **form}, files={"file": ("x.png", picture, "image/png")})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == kind
    if data is not None:  # the very answer /score gives the same bytes
        scored = client.post("/score", data={"model": "gan"}, files={"files": ("x.png", picture, "image/png")})
        assert scored.status_code == 422 and scored.json()["detail"][0]["type"] == kind


def test_too_many_pixels_are_refused_before_decoding(semantic_store):
    with make_client(semantic_store, max_pixels=32 * 32) as c:
        wait_ready(c)
        buffer = io.BytesIO()
        Image.new("L", (64, 64)).save(buffer, "PNG")
        r = c.post("/project", data={"model": "gan"}, files={"file": ("big.png", buffer.getvalue(), "image/png")})
        assert r.status_code == 422 and "MAX_PIXELS" in r.json()["detail"][0]["msg"]


def test_a_version_without_an_encoder_starts_from_the_mean_latent(tmp_path, fashion_dir):
    root = tmp_path / "store"
    publish_trained(root, fashion_dir, arch="gan")  # no encoder: the helper publishes without one
    with make_client(root) as c:
        wait_ready(c)
        r = c.post("/project", data={"model": "gan", "steps": "5"},
                   files={"file": ("p.png", c.post("/generate", json={"model": "gan", "seed": 1, "count": 1}).content,
                                   "image/png")})
        assert r.status_code == 200 and r.json()["start"] == "mean latent"


# ---------------------------------------------------------------------- it must not stall the service
def test_a_one_image_request_completes_while_a_long_projection_runs(client):
    """By the engine's own timestamps: the request was done before the projection, and it waited no longer
    than one of the projection's steps (the worker takes a step, then the waiting batches, then a step)."""
    services = client.app.state.services
    loaded = services.registry.get("gan")
    picture = torch.zeros(1, 28, 28, dtype=torch.uint8)
    task = services.engine.project(loaded.started, loaded.layout, picture, steps=400, seed=0)
    wait_for(lambda: len(task.step_seconds) >= 5, timeout=30)  # the projection is under way
    job = loaded.batcher.submit(torch.zeros(1, 100))
    job.future.result(30)
    task.future.result(120)
    assert job.finished_at < task.finished_at
    waited = job.started_at - job.enqueued_at
    assert waited <= 2 * max(task.step_seconds), (waited, max(task.step_seconds))


def test_projections_beyond_max_projections_get_503(semantic_store):
    with make_client(semantic_store, max_projections=1, max_project_steps=5000) as c:
        wait_ready(c)
        services = c.app.state.services
        loaded = services.registry.get("gan")
        running = services.engine.project(loaded.started, loaded.layout, torch.zeros(1, 28, 28, dtype=torch.uint8), 3000, 0)
        try:
            r = c.post("/project", data={"model": "gan", "steps": "5"},
                       files={"file": ("p.png", generated_png(c, 1), "image/png")})
            assert r.status_code == 503 and "MAX_PROJECTIONS" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1
        finally:
            services.engine.worker.cancel_task(running)


# ---------------------------------------------------------------------- without a server
def test_trainer_project_writes_reconstructions_and_latents(semantic_store, tmp_path):
    pictures = []
    for i in range(2):
        path = tmp_path / f"shirt{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 30), dtype=np.uint8)).save(path)
        pictures.append(str(path))
    out = tmp_path / "projected"
    result = run_cli("trainer.project", "--store", str(semantic_store), "--model", "gan", *pictures, "--steps", "20",
                     "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "latents.json").read_text())
    assert record["start"] == "encoder" and set(record["pictures"]) == set(pictures)
    assert all(len(p["latent"]) == 100 for p in record["pictures"].values())
    assert Image.open(out / "shirt0.png").size == ((2 * 30 + 2) * 4, 32 * 4)
    missing = run_cli("trainer.project", "--store", str(semantic_store), "--model", "gan", str(tmp_path / "none.png"))
    assert_user_error(missing, "does not exist")


# ---------------------------------------------------------------------- the encoder step resumes
ENCODER_RUN = ("--arch", "gan", "--epochs", "1", "--limit", "512", "--no-evaluate", "--no-classes",
               "--encoder-steps", "40", "--device", "cpu")  # a checkpoint every 10 steps


def encoder_of(store) -> torch.Tensor:
    version = Store(store).get("gan")
    with torch.no_grad():
        return torchscript.load(version.path / ENCODER)(torch.linspace(-1, 1, 2 * 28 * 28).view(2, 1, 28, 28))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_dir):
    straight = tmp_path_factory.mktemp("straight")
    assert run_cli("trainer", *ENCODER_RUN, "--out", str(straight), "--data-dir", str(fashion_dir)).returncode == 0
    return encoder_of(straight)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_an_encoder_step_interrupted_resumes_there_and_ends_the_same(tmp_path, fashion_dir, uninterrupted, how):
    resumed = tmp_path / "resumed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *ENCODER_RUN, "--out", str(resumed), "--data-dir",
                             str(fashion_dir)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    for line in proc.stderr:  # past the first checkpoint, in the middle of the encoder's steps
        if "encoder step 20/40" in line:
            time.sleep(0.3)
            break
    os.killpg(proc.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode == (130 if how == "ctrl-c" else -signal.SIGKILL)
    assert not (resumed / "gan").exists() or not Store(resumed).versions("gan")  # nothing published yet
    again = run_cli("trainer", *ENCODER_RUN, "--out", str(resumed), "--data-dir", str(fashion_dir), "--resume")
    assert again.returncode == 0, again.stderr
    assert "resuming the encoder at step" in again.stderr
    assert torch.equal(uninterrupted, encoder_of(resumed))  # bit for bit
    assert json.loads((Store(resumed).get("gan").path / MANIFEST).read_text())["encoder"]["steps"] == 40


def test_the_search_works_whatever_grad_mode_the_caller_is_in(semantic_store):
    from shared.imaging.projection import Projection, mean_latent

    version = Store(semantic_store).get("gan")
    G = torchscript.load(version.generator_path)
    with torch.no_grad():
        target = G(torch.ones(1, 100))
    answers = []
    for mode in (torch.enable_grad, torch.no_grad, torch.inference_mode):
        with mode():
            search = Projection(G, target, mean_latent(1, 100), 30, seed=0)
            search.run()
            answers.append(search.losses().pixel.item())
    assert answers[0] < 0.5 * search.start_losses.pixel.item()
    assert answers[0] == answers[1] == answers[2]
