"""The explorer's endpoints against known cases: paths between latents, semantic directions, sweeps along
them, seeded latents, animations, and the discriminator's scores."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageChops

from service.engine.directions import semantic_directions
from service.operations.interpolation import interpolate
from shared.imaging import torchscript
from shared.imaging.latents import seeded_latents
from shared.store import Store
from tests.service_helpers import png
from trainer.training.architectures import get_architecture
from trainer.training.data import load_idx_split

pytestmark = pytest.mark.fast  # make check runs it on every commit


# ---------------------------------------------------------------------- interpolation, the maths
@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_paths_start_and_end_at_the_inputs(method):
    a, b = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32)
    path = interpolate(a, b, 9, method)
    assert path.shape == (9, 100) and path.dtype == np.float32
    assert np.allclose(path[0], a, atol=1e-6) and np.allclose(path[-1], b, atol=1e-6)


def test_slerp_keeps_norms_between_the_endpoints_and_lerp_does_not():
    a, b = np.random.default_rng(1).standard_normal((2, 100))
    b *= 1.3
    norms = np.linalg.norm(interpolate(a, b, 17, "slerp"), axis=1)
    lo, hi = sorted((np.linalg.norm(a), np.linalg.norm(b)))
    assert np.all(norms >= lo - 1e-4) and np.all(norms <= hi + 1e-4)
    assert np.all(np.diff(norms) > 0)  # the length changes linearly, here growing
    middle = np.linalg.norm(interpolate(a, b, 17, "lerp")[8])
    assert middle < lo * 0.95  # the straight line dips towards the origin: why slerp is the default


@pytest.mark.parametrize("end", ["same", "scaled", "opposite", "zero"])
def test_slerp_handles_parallel_antipodal_and_zero_ends(end):
    a = np.random.default_rng(2).standard_normal(100)
    b = {"same": a, "scaled": 2.5 * a, "opposite": -a, "zero": np.zeros(100)}[end]
    path = interpolate(a, b, 11, "slerp")
    assert np.isfinite(path).all()
    assert np.allclose(path[0], a, atol=1e-5) and np.allclose(path[-1], b, atol=1e-5)
    if end == "opposite":  # half a great circle: every point keeps the norm, none passes through zero
        assert np.allclose(np.linalg.norm(path, axis=1), np.linalg.norm(a), rtol=1e-5)


# ---------------------------------------------------------------------- directions
@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_directions_are_orthonormal_descending_and_match_the_weights(client, trained_store, arch):
    r = client.get(f"/models/{arch}/directions", params={"k": 100})
    assert r.status_code == 200, r.text
    found = r.json()
    vectors, eigenvalues = np.array(found["directions"]), np.array(found["eigenvalues"])
    assert vectors.shape == (100, 100)
    assert np.allclose(vectors @ vectors.T, np.eye(100), atol=1e-5)
    assert np.all(np.diff(eigenvalues) <= 1e-9) and eigenvalues[-1] >= -1e-9

    # the same from the eager module's own first layer, computed here by hand
    version = Store(trained_store).get(arch)
    spec = get_architecture(arch)
    eager = spec.generator()
    scripted = torchscript.load(version.generator_path)
    eager.load_state_dict({k: v for k, v in scripted.state_dict().items()})
    first = next(m for m in eager.modules() if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d)))
    w = first.weight.detach().double().numpy()
    a = w if isinstance(first, torch.nn.Linear) else w.reshape(100, -1).T  # (out, latent)
    expected_values, expected_vectors = np.linalg.eigh(a.T @ a)
    assert np.allclose(eigenvalues, expected_values[::-1], rtol=1e-6, atol=1e-9)
    top = expected_vectors[:, ::-1][:, :5].T
    assert np.allclose(np.abs((vectors[:5] * top).sum(1)), 1, atol=1e-4)  # the same up to sign


def test_batchnorm_after_the_first_layer_is_folded_in():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3, 4))
        net[1].weight.copy_(torch.tensor([1.0, 5.0, 2.0]))
        net[1].running_var.copy_(torch.tensor([1.0, 1.0, 16.0]))
    with torchscript.quiet_jit():
        traced = torch.jit.trace(net, torch.randn(2, 4))
    found = semantic_directions(traced, 4)
    # z1 is scaled by 5, z2 by 2/4 after folding: z1 is the strongest direction, then z0, then z2
    assert np.allclose(np.abs(found.vectors[:3]), np.eye(4)[[1, 0, 2]], atol=1e-6)
    assert np.allclose(found.eigenvalues[:3], [25, 1, 0.25], rtol=1e-3)


def test_sweeping_along_directions_labels_rows_and_moves_as_asked(client):
    found = client.get("/models/dcgan/directions", params={"k": 3}).json()
    r = client.post("/sweep", json={"model": "dcgan", "directions": [2], "values": [0.0], "mode": "add", "count": 4,
                                    "labels": False})
    same_as_base = client.post("/generate", json={"model": "dcgan", "seed": 0, "count": 4, "nrow": 4})
    assert png(r).size == png(same_as_base).size
    assert ImageChops.difference(png(r), png(same_as_base)).getbbox() is None  # moving by 0 changes nothing
    labelled = client.post("/sweep", json={"model": "dcgan", "directions": [0, 1], "values": [-3, 3], "count": 2})
    assert png(labelled).width > png(client.post("/sweep", json={"model": "dcgan", "directions": [0, 1],
                                                                 "values": [-3, 3], "count": 2, "labels": False})).width
    u = np.array(found["directions"][1], dtype=np.float32)
    z = seeded_latents(0, 1, 100)[0].numpy()
    moved = client.post("/generate", json={"model": "dcgan", "latent": (z + 3 * u).tolist(), "padding": 0})
    swept = client.post("/sweep", json={"model": "dcgan", "directions": [1], "values": [3], "mode": "add",
                                        "count": 1, "labels": False, "padding": 0})
    assert np.abs(np.asarray(png(moved), float) - np.asarray(png(swept), float)).max() <= 1  # float rounding only


@pytest.mark.parametrize("body,status,needle", [
    ({"model": "dcgan", "directions": [100]}, 422, "out of range"),
    ({"model": "dcgan", "directions": [0], "dims": [1]}, 422, "not dims and directions"),
    ({"model": "dcgan", "directions": []}, 422, "at least 1"),
])
def test_bad_direction_sweeps_get_422(client, body, status, needle):
    r = client.post("/sweep", json=body)
    assert r.status_code == status and needle in r.text


# ---------------------------------------------------------------------- seeded latents and /interpolate
def test_a_seeded_latent_is_the_one_behind_that_image_of_the_grid(client):
    r = client.get("/latents", params={"seed": 7, "index": 5, "dim": 100})
    latent = r.json()["latent"]
    assert np.array_equal(np.float32(latent), seeded_latents(7, 6, 100)[5].numpy())
    alone = png(client.post("/generate", json={"model": "gan", "latent": latent, "padding": 0}))
    grid = png(client.post("/generate", json={"model": "gan", "seed": 7, "count": 8, "nrow": 8, "padding": 0}))
    assert ImageChops.difference(alone, grid.crop((5 * 28, 0, 6 * 28, 28))).getbbox() is None


def test_interpolate_png_has_the_ends_it_was_given(client):
    body = {"model": "gan", "start": {"seed": 3, "index": 1}, "end": {"seed": 4}, "steps": 5, "padding": 0}
    strip = png(client.post("/interpolate", json=body))
    assert strip.size == (5 * 28, 28)
    ends = png(client.post("/generate", json={"model": "gan", "latents": [
        seeded_latents(3, 2, 100)[1].tolist(), seeded_latents(4, 1, 100)[0].tolist()], "padding": 0}))
    assert ImageChops.difference(strip.crop((0, 0, 28, 28)), ends.crop((0, 0, 28, 28))).getbbox() is None
    assert ImageChops.difference(strip.crop((4 * 28, 0, 5 * 28, 28)), ends.crop((28, 0, 56, 28))).getbbox() is None


@pytest.mark.parametrize("fmt,mime", [("gif", "image/gif"), ("webp", "image/webp")])
def test_animations_decode_with_one_frame_per_step_and_loop(client, fmt, mime):
    r = client.post("/interpolate", json={"model": "dcgan", "start": {"seed": 0}, "end": {"seed": 0, "index": 1},
                                          "steps": 12, "format": fmt, "frame_ms": 80, "scale": 2})
    assert r.status_code == 200 and r.headers["content-type"] == mime
    animation = Image.open(io.BytesIO(r.content))
    assert animation.format == fmt.upper() and animation.n_frames == 12 and animation.size == (64, 64)
    animation.seek(5)
    animation.load()
    assert animation.info.get("loop") == 0 and animation.info.get("duration") == 80
    frames = []
    for i in range(12):
        animation.seek(i)
        frames.append(np.asarray(animation.convert("L"), dtype=float))
    assert np.abs(frames[0] - frames[-1]).max() > 0  # the path moves


@pytest.mark.parametrize("body,needle", [
    ({"start": {"seed": 0, "latent": [0.0] * 100}, "end": {"seed": 1}}, "not both"),
    ({"start": {"latent": [0.0] * 7}, "end": {"seed": 1}}, "takes 100 numbers"),
    ({"start": {"seed": 0}, "end": {"seed": 1}, "steps": 1}, "greater than or equal to 2"),
    ({"start": {"seed": 0}, "end": {"seed": 1}, "format": "mp4"}, "format"),
    ({"start": {"seed": 0}, "end": {"seed": 1}, "steps": 300}, "MAX_IMAGES"),
])
def test_bad_interpolations_get_422(client, body, needle):
    r = client.post("/interpolate", json={"model": "gan", **body})
    assert r.status_code == 422 and needle in r.text, r.text


# ---------------------------------------------------------------------- /score
def upload(*arrays: np.ndarray, kind: str = "PNG") -> list:
    files = []
    for i, array in enumerate(arrays):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, kind)
        files.append(("files", (f"image{i}.{kind.lower()}", buffer.getvalue(), f"image/{kind.lower()}")))
    return files


@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_real_training_images_score_higher_than_noise(client, fashion_dir, arch):
    images, _ = load_idx_split(fashion_dir, "train")
    real = [images[i, 0].numpy() for i in range(32)]
    noise = [np.random.default_rng(i).integers(0, 256, (28, 28), dtype=np.uint8) for i in range(32)]
    scored = {name: client.post("/score", data={"model": arch}, files=upload(*arrays)).json()
              for name, arrays in (("real", real), ("noise", noise))}
    mean = {name: np.mean([s["logit"] for s in body["scores"]]) for name, body in scored.items()}
    assert mean["real"] > mean["noise"], mean
    s = scored["real"]["scores"][0]
    assert s["filename"] == "image0.png" and abs(s["probability"] - 1 / (1 + np.exp(-s["logit"]))) < 1e-9
    assert scored["real"]["image_shape"] == [1, 32, 32] if arch == "dcgan" else [1, 28, 28]


def test_score_takes_any_size_and_format_as_the_trainer_converts_it(client):
    colour = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    r = client.post("/score", data={"model": "dcgan"}, files=upload(colour, kind="JPEG"))
    assert r.status_code == 200 and len(r.json()["scores"]) == 1


@pytest.mark.parametrize("files,needle", [
    ([("files", ("notes.txt", b"hello", "text/plain"))], "not an image"),
    ([("files", ("huge.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 10, "image/png"))], "not an image"),
])
def test_files_that_are_not_images_get_422(client, files, needle):
    r = client.post("/score", data={"model": "gan"}, files=files)
    assert r.status_code == 422 and needle in r.text and r.json()["detail"][0]["type"] == "invalid_image"


def test_score_limits_and_unknown_models(client):
    big = np.zeros((5000, 5000), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "PNG")  # small file (zeros compress), many pixels
    r = client.post("/score", data={"model": "gan"}, files=[("files", ("big.png", buffer.getvalue(), "image/png"))])
    assert r.status_code == 422 and "MAX_PIXELS" in r.text
    assert client.post("/score", data={"model": "nope"}, files=upload(np.zeros((28, 28), np.uint8))).status_code == 404
    assert client.post("/score", data={"model": "gan"}).status_code == 422  # no files


def test_the_explorer_page_and_its_favicon_are_served(client):
    page = client.get("/explore")
    assert page.status_code == 200 and 'rel="icon" href="/favicon.ico"' in page.text
    icon = client.get("/favicon.ico")  # every browser asks for it, on /docs too: a 404 was the first thing they met
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
