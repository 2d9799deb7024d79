"""What the latent space means: class directions found when a version is made, `class` requests, class sweeps
and truncation, through the service, on a plain GAN whose samples cover every FashionMNIST class."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from shared.imaging import torchscript
from shared.imaging.latents import LatentLayout, seeded_latents
from shared.store import CLASSES, CLASSIFIER, ClassSemantics, Store
from tests.conftest import run_cli
from tests.service_helpers import grid_images, make_client, png, publish_trained, wait_ready
from trainer.evaluation.class_boundaries import balanced_accuracy, label_samples
from trainer.evaluation.fashion_classifier import CLASSES as NAMES
from trainer.evaluation.fashion_classifier import embed, load_classifier

SERVED_STORE = "semantic_store"  # the conftest `client` serves it

def classified(images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)
    _, probs = embed(load_classifier(), [x])
    return probs.argmax(1).numpy()


def semantics(store) -> ClassSemantics:
    version = Store(store).get("gan")
    return ClassSemantics.model_validate_json((version.path / CLASSES).read_bytes())


# ---------------------------------------------------------------------- found when the version is made
def test_directions_are_unit_vectors_that_separate_their_classes_on_fresh_latents(semantic_store):
    found = semantics(semantic_store)
    assert [c.name for c in found.classes] == list(NAMES)
    assert sum(c.share for c in found.classes) == pytest.approx(1, abs=1e-6)
    version = Store(semantic_store).get("gan")
    # latents the boundaries were not fitted on, labelled afresh by the classifier
    z, labels = label_samples(torchscript.load(version.generator_path), LatentLayout(100), 3000, seed=4242, device="cpu")
    for c in found.classes:
        assert np.linalg.norm(c.direction) == pytest.approx(1, abs=1e-5)
        mine = labels == c.index
        if c.share > 0.03:  # common enough to measure on 3,000 latents
            accuracy = balanced_accuracy(z @ torch.tensor(c.direction) + c.offset, mine)
            assert accuracy > 0.65, (c.name, accuracy)
    assert CLASSIFIER in version.manifest.files  # shipped, hashed and verified with the version


def test_the_classes_route_lists_names_shares_and_accuracies(client):
    r = client.get("/models/gan/classes")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "gan" and body["version"] == 1 and len(body["classes"]) == 10
    assert body["classes"][1]["name"] == "Trouser" and 0 < body["latent_accuracy"] <= 1
    assert all(len(c["direction"]) == 100 for c in body["classes"])


# ---------------------------------------------------------------------- class requests
@pytest.mark.parametrize("cls", ["Trouser", "Dress", 7])
def test_a_class_request_gives_that_class(client, cls):
    r = client.post("/generate", json={"model": "gan", "class": cls, "seed": 5, "count": 16})
    index = NAMES.index(cls) if isinstance(cls, str) else cls
    assert r.headers["x-class"] == NAMES[index] and r.headers["x-class-verified"] == "16/16"
    images = grid_images(r)
    assert (classified(images) == index).mean() >= 0.75  # a loose bound; the benchmark holds the tight one
    distinct = {image.tobytes() for image in images}
    assert len(distinct) == 16  # diverse within the class: sixteen different images


def test_a_class_request_is_the_same_every_time_even_under_load(client):
    body = {"model": "gan", "class": "Sneaker", "seed": 11, "count": 8}
    alone = client.post("/generate", json=body).content
    noise = [{"model": "gan", "seed": s, "count": n} for s, n in zip(range(40), [1, 3, 7, 16] * 10)]
    with ThreadPoolExecutor(8) as pool:  # other requests batched around its forwards
        others = [pool.submit(client.post, "/generate", json=b) for b in noise]
        busy = [pool.submit(client.post, "/generate", json=body) for _ in range(4)]
        assert all(f.result().status_code == 200 for f in others)
        assert all(f.result().content == alone for f in busy)


def test_the_class_is_named_or_refused_with_the_list(client):
    r = client.post("/generate", json={"model": "gan", "class": "Hat", "seed": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "model_mismatch"
    assert "Trouser" in r.json()["detail"][0]["msg"]
    assert client.post("/generate", json={"model": "gan", "class": "trouser", "count": 2}).status_code == 200  # any case
    assert client.post("/generate", json={"model": "gan", "class": 3, "latent": [0.0] * 100}).status_code == 422


# ---------------------------------------------------------------------- truncation
def test_truncation_one_changes_nothing_and_near_zero_gives_the_mean_image(client):
    plain = client.post("/generate", json={"model": "gan", "seed": 3, "count": 4})
    assert client.post("/generate", json={"model": "gan", "seed": 3, "count": 4, "truncation": 1}).content == plain.content
    tiny = grid_images(client.post("/generate", json={"model": "gan", "seed": 3, "count": 4, "truncation": 1e-6}))
    mean = grid_images(client.post("/generate", json={"model": "gan", "latents": [[0.0] * 100] * 4}))
    assert np.abs(tiny.astype(int) - mean.astype(int)).max() <= 1
    half = grid_images(client.post("/generate", json={"model": "gan", "seed": 3, "count": 4, "truncation": 0.5}))
    assert not np.array_equal(half, grid_images(plain)) and not np.array_equal(half, tiny)


def test_truncation_with_a_class_goes_to_the_classs_mean(client, semantic_store):
    trouser = semantics(semantic_store).classes[1]
    tiny = grid_images(client.post("/generate", json={"model": "gan", "class": 1, "count": 2, "truncation": 1e-6}))
    mean = grid_images(client.post("/generate", json={"model": "gan", "latents": [trouser.mean] * 2}))
    assert np.abs(tiny.astype(int) - mean.astype(int)).max() <= 1


def test_truncation_applies_to_sweeps_and_paths(client):
    for path, body in (("/sweep", {"model": "gan", "dims": [3], "values": [0], "count": 2}),
                       ("/interpolate", {"model": "gan", "start": {"seed": 1}, "end": {"seed": 2}, "steps": 3})):
        plain = client.post(path, json=body).content
        assert client.post(path, json={**body, "truncation": 1}).content == plain
        assert client.post(path, json={**body, "truncation": 0.3}).content != plain


# ---------------------------------------------------------------------- class sweeps
def test_a_class_sweep_moves_towards_the_class_and_labels_its_rows(client, semantic_store):
    body = {"model": "gan", "classes": ["Trouser", 9], "values": [0, 4, 8], "mode": "add", "count": 8}
    r = client.post("/sweep", json=body)
    assert png(r).size[1] == 6 * 30 + 2 and r.headers["x-image-count"] == "48"
    unlabelled = client.post("/sweep", json={**body, "labels": False})
    rows = grid_images(unlabelled)
    base = grid_images(client.post("/generate", json={"model": "gan", "seed": 0, "count": 8}))
    assert np.array_equal(rows[:8], base)  # moved by 0: the base images
    assert (classified(rows[16:24]) == 1).mean() > (classified(base) == 1).mean()  # further along: more trousers


# ---------------------------------------------------------------------- versions without classes
def test_a_version_without_classes_says_why(tmp_path, fashion_dir):
    root = tmp_path / "store"
    publish_trained(root, fashion_dir, arch="gan", class_samples=0)
    with make_client(root) as c:
        wait_ready(c)
        r = c.get("/models/gan/classes")
        assert r.status_code == 404 and "knows no classes" in r.json()["detail"]
        for path, body in (("/generate", {"model": "gan", "class": 1}), ("/sweep", {"model": "gan", "classes": [1]})):
            r = c.post(path, json=body)
            assert r.status_code == 422 and "python -m trainer.evaluate" in r.json()["detail"][0]["msg"]
        assert c.post("/generate", json={"model": "gan", "seed": 1}).status_code == 200  # the rest still serves


@pytest.mark.slow
def test_evaluate_adds_classes_to_an_older_version_and_the_service_picks_them_up(tmp_path, fashion_dir):
    root = tmp_path / "store"
    publish_trained(root, fashion_dir, arch="gan", class_samples=0)
    with make_client(root) as c:
        wait_ready(c)
        assert c.get("/models/gan/classes").status_code == 404
        result = run_cli("trainer.evaluate", "--store", str(root), "--model", "gan", "--samples", "500",
                         "--class-samples", "2000", "--device", "cpu", "--data-dir", str(fashion_dir))
        assert result.returncode == 0, result.stderr
        assert "classes.json and classifier.pt added" in result.stderr + result.stdout
        version = Store(root).get("gan")
        assert {CLASSES, CLASSIFIER} <= version.manifest.files.keys() and version.version == 1
        from tests.service_helpers import wait_for

        wait_for(lambda: c.get("/models/gan/classes").status_code == 200)  # reloaded with them, same version
        assert json.loads(c.get("/models/gan").text)["serving"] == 1


def test_a_folder_dataset_gets_no_classes(tmp_path):
    from PIL import Image

    data = tmp_path / "pictures"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "models"
    result = run_cli("trainer", "--arch", "gan", "--epochs", "1", "--dataset", "folder", "--data-dir", str(data),
                     "--out", str(out), "--no-evaluate", "--no-encoder", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert CLASSES not in Store(out).get("gan").manifest.files


def test_the_seeds_latents_are_the_candidates_order(semantic_store):
    """Class candidates come from the seed's own stream, in order: the same latents /latents and /generate use."""
    from service.operations.found_classes import BLOCK, class_candidates

    found = semantics(semantic_store)
    blocks = list(class_candidates(found, found.classes[1], seed=9, psi=None, limit=2 * BLOCK))
    stream = seeded_latents(9, 2 * BLOCK, 100)
    weights, bias = torch.tensor(found.latent_classifier.weights), torch.tensor(found.latent_classifier.bias)
    expected = stream[(stream @ weights.T + bias).argmax(1) == 1]
    assert torch.equal(torch.cat(blocks), expected)


def test_a_class_requests_latents_make_its_images(client):
    r = client.get("/models/gan/classes/Trouser/latents", params={"seed": 5, "count": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["class"] == "Trouser" and body["verified"] == 6 and len(body["latents"]) == 6
    grid = client.post("/generate", json={"model": "gan", "class": "Trouser", "seed": 5, "count": 6})
    again = client.post("/generate", json={"model": "gan", "latents": body["latents"]})
    assert np.abs(grid_images(grid).astype(int) - grid_images(again).astype(int)).max() <= 1  # the same images
    assert client.get("/models/gan/classes/1/latents", params={"seed": 5, "count": 6}).json() == body  # by index
    assert client.get("/models/gan/classes/Hat/latents").status_code == 422


def test_a_class_the_latent_space_rarely_holds_still_gets_every_image_asked_for(semantic_store, monkeypatch):
    """When even the latent softmax's candidates run out, the rest are the stream's likeliest others, verified by
    the classifier like the rest: `count` images, the same every time."""
    import service.operations.generation
    from service.operations.found_classes import likeliest_others

    found = semantics(semantic_store)
    others = likeliest_others(found, found.classes[1], seed=2, psi=None, limit=64, n=10)
    weights, bias = torch.tensor(found.latent_classifier.weights), torch.tensor(found.latent_classifier.bias)
    scores = (others @ weights.T + bias).log_softmax(1)
    assert len(others) == 10 and (scores.argmax(1) != 1).all() and (scores[:-1, 1] >= scores[1:, 1]).all()

    monkeypatch.setattr(service.operations.generation, "MAX_CANDIDATES", 2)  # 32 latents looked at: 3 Trouser candidates
    with make_client(semantic_store) as c:
        wait_ready(c)
        first = c.post("/generate", json={"model": "gan", "class": "Trouser", "seed": 2, "count": 16})
        assert first.status_code == 200 and first.headers["x-image-count"] == "16", first.headers
        assert 1 <= int(first.headers["x-class-verified"].split("/")[0]) <= 3
        assert c.post("/generate", json={"model": "gan", "class": "Trouser", "seed": 2, "count": 16}).content \
            == first.content
