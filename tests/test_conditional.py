"""Class-conditional GANs: G(z, class) and a projection D for both architectures, what a conditional version
publishes, and every route on it (the class fed in, style x class sweeps, class-to-class paths, projection and
scoring with a class), beside unconditional versions answering as before."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from shared.imaging import torchscript
from shared.imaging.latents import LatentLayout, seeded_latents, with_classes
from shared.store import DISCRIMINATOR, Store
from tests.conftest import assert_user_error, run_cli
from tests.service_helpers import copy_model, copy_store, grid_images, make_client, wait_ready
from trainer.evaluation.fashion_classifier import CLASSES as NAMES
from trainer.evaluation.fashion_classifier import embed, load_classifier
from trainer.training.architectures import get_architecture
from trainer.training.config import TrainConfig
from trainer.training.nets import Nets
from trainer.training.networks.study import CNNDiscriminator, MLPDiscriminator
from trainer.training.recipe import build_recipe
from trainer.training.settings import recipe_settings
from trainer.training.step import train_step


# ----------------------------------------------------------------------------- the networks
@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_a_conditional_generator_takes_z_then_the_class(arch):
    spec = get_architecture(arch).conditional(10)
    assert spec.layout == LatentLayout(100, 10) and spec.layout.width == 110
    G = spec.generator().eval()
    z = seeded_latents(0, 4, 100)
    with torch.no_grad():
        as_trouser, as_dress = G(with_classes(z, 1, 10)), G(with_classes(z, 3, 10))
    assert as_trouser.shape == (4, *spec.image_shape)
    assert not torch.allclose(as_trouser, as_dress)  # the class is an input, not decoration


@pytest.mark.parametrize("D_class, x", [(MLPDiscriminator, torch.randn(3, 1, 28, 28)),
                                        (CNNDiscriminator, torch.randn(3, 1, 32, 32))])
def test_the_projection_head_adds_the_class_embedding_dot_the_last_features(D_class, x):
    torch.manual_seed(0)
    D = D_class(classes=10).eval()
    y = torch.nn.functional.one_hot(torch.tensor([0, 4, 9]), 10).float()
    with torch.no_grad():
        if D_class is MLPDiscriminator:
            h = D.nonlin1(D.fc1(x.flatten(1)))
            plain, pooled = D.fc2(h).view(-1), h
        else:
            h = D.main[:-1](x)
            plain, pooled = D.main[-1](h).view(-1), h.sum((2, 3))
        expected = plain + (pooled * D.embed.weight.T[[0, 4, 9]]).sum(1)
        assert torch.allclose(D(x, y), expected, atol=1e-5)
        assert torch.allclose(D(x), plain, atol=1e-6)  # without a class: the unconditional head alone
        logits, scores = D(x, y, class_scores=True)  # what --class-loss trains: every class's projection score
        assert torch.allclose(scores, pooled @ D.embed.weight, atol=1e-5) and torch.equal(logits, D(x, y))


def class_loss_after_steps(weight: float, steps: int = 40) -> float:
    """D's cross-entropy, by its class scores, on a fixed batch of 16 labelled pictures after `steps` steps."""
    torch.manual_seed(0)
    cfg = TrainConfig(arch="gan", batch_size=16, conditional=True, class_names=list(NAMES), class_loss=weight)
    nets = Nets.build(get_architecture("gan").conditional(10), build_recipe(cfg), torch.device("cpu"))
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    labels = torch.nn.functional.one_hot(torch.arange(16) % 10, 10).float()
    for _ in range(steps):
        train_step(nets, build_recipe(cfg), real, torch.randn(16, 100), labels=labels)
    with torch.no_grad():
        _, scores = nets.D(real, labels, class_scores=True)
    return float(torch.nn.functional.cross_entropy(scores, labels))


def test_the_class_loss_teaches_d_to_classify_by_its_projection_scores():
    with_loss, without = class_loss_after_steps(1.0), class_loss_after_steps(0.0)
    assert with_loss < 0.5 * without, (with_loss, without)


def test_the_class_loss_needs_a_conditional_run(tmp_path, fashion_dir):
    result = run_cli("trainer", "--arch", "gan", "--epochs", "1", "--limit", "64", "--class-loss", "1",
                     "--data-dir", str(fashion_dir), "--out", str(tmp_path / "s"), "--no-evaluate", "--no-progress")
    assert_user_error(result, "--conditional")


def test_stable_conditional_runs_train_the_class_loss_and_the_study_stays_the_study():
    for arch in ("gan", "dcgan"):
        assert recipe_settings("stable", arch, conditional=True)["class_loss"] == 1.0  # conditions by default
        assert recipe_settings("stable", arch)["class_loss"] == 0.0  # no class scores to train unconditionally
        assert recipe_settings("seed", arch, conditional=True)["class_loss"] == 0.0  # seed: the alias of the study's recipe, exactly
        assert recipe_settings("stable", arch, conditional=True, class_loss=0.3)["class_loss"] == 0.3  # the flag wins


def test_unconditional_networks_keep_the_studys_parameters():
    for arch in ("gan", "dcgan"):
        spec = get_architecture(arch)
        assert not any("embed" in k for k in spec.discriminator().state_dict())
        assert spec.layout.width == spec.latent_dim == 100


def test_a_conditional_step_trains_d_on_the_real_classes(fashion_dir):
    """G makes each fake in the class of a real image of the batch, and D is told both: a step runs and changes
    D's class embedding."""
    cfg = TrainConfig(arch="dcgan", batch_size=8, conditional=True, class_names=list(NAMES))
    spec = get_architecture("dcgan").conditional(10)
    nets = Nets.build(spec, build_recipe(cfg), torch.device("cpu"))
    before = nets.D.embed.weight.clone()
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    labels = torch.nn.functional.one_hot(torch.arange(8) % 10, 10).float()
    stats = train_step(nets, build_recipe(cfg), real, torch.randn(8, 100), labels=labels)
    assert torch.isfinite(stats).all()
    assert not torch.equal(before, nets.D.embed.weight)
    drawn = LatentLayout(100, 10).random(5, "cpu", torch.Generator().manual_seed(0))
    assert drawn.shape == (5, 110) and torch.equal(drawn[:, 100:].sum(1), torch.ones(5))


def test_seeded_conditional_latents_keep_the_seeds_z_and_draw_classes_from_it():
    plain = seeded_latents(7, 20, 100)
    cond = seeded_latents(7, 20, 110, classes=10)
    assert torch.equal(cond[:, :100], plain)
    assert torch.equal(cond[:, 100:].sum(1), torch.ones(20))
    assert len(set(cond[:, 100:].argmax(1).tolist())) > 3  # classes drawn, not one for all
    assert torch.equal(seeded_latents(7, 5, 110, classes=10), cond[:5])  # more images keep the first ones


# ----------------------------------------------------------------------------- what gets published
def test_the_cli_trains_and_publishes_a_conditional_version(tmp_path, fashion_dir):
    out = tmp_path / "store"
    result = run_cli("trainer", "--arch", "dcgan", "--epochs", "1", "--limit", "128", "--batch-size", "64",
                     "--conditional", "--data-dir", str(fashion_dir), "--out", str(out), "--no-evaluate",
                     "--no-encoder", "--class-samples", "500", "--no-progress")
    assert result.returncode == 0, result.stderr
    version = Store(out).get("dcgan")
    m = version.manifest
    assert m.conditional and m.class_names == list(NAMES) and m.style_dim == 100 and m.latent_dim == 110
    assert m.generator_io["input"] == ["N", 110] and m.config["conditional"]
    assert (version.path / "report" / "classes.png").is_file()
    D = torchscript.load(version.path / DISCRIMINATOR)
    images, y = torch.zeros(2, 1, 32, 32), torch.eye(10)[[1, 7]]
    assert D(images, y).shape == (2,)  # a conditional D takes the class too


def test_conditional_needs_labels_of_two_classes_at_least(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("L", (28, 28), 40 * i).save(flat / f"{i}.png")
    result = run_cli("trainer", "--arch", "gan", "--epochs", "1", "--dataset", "folder", "--data-dir", str(flat),
                     "--conditional", "--out", str(tmp_path / "s"), "--no-evaluate", "--no-progress")
    assert_user_error(result, "one subfolder per class")


# ----------------------------------------------------------------------------- serving
@pytest.fixture(scope="module")
def client(conditional_store, trained_store, tmp_path_factory):
    """A service on the conditional gan and dcgan, and the unconditional ones as `plain-gan`, `plain-dcgan`."""
    root = copy_store(conditional_store, tmp_path_factory.mktemp("served") / "store")
    for arch in ("gan", "dcgan"):
        copy_model(trained_store / arch, root, f"plain-{arch}")
    with make_client(root) as c:
        wait_ready(c)
        yield c


def classified(images: np.ndarray) -> np.ndarray:
    _, probs = embed(load_classifier("cpu"), [torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1])
    return probs.argmax(1).numpy()


def test_a_class_request_feeds_the_label_in_and_gets_the_class(client):
    """On the conditional GAN every class is made (the unconditional seed GAN hardly makes trousers), the same as
    posting the seed's z with the class's one-hot, and the classifier finds most of each class's images in it."""
    hits = []
    for index, name in enumerate(NAMES):
        r = client.post("/generate", json={"model": "gan", "class": name, "seed": 1, "count": 64})
        assert r.headers["x-class"] == name and r.headers["x-class-verified"] == "64/64"
        images = grid_images(r)
        hits.append((classified(images) == index).mean())
        if index == 1:
            posted = with_classes(seeded_latents(1, 64, 100), 1, 10)
            same = client.post("/generate", json={"model": "gan", "latents": posted.tolist()})
            assert np.array_equal(grid_images(same), images)
    assert min(hits) > 0.15 and np.mean(hits) > 0.5, hits  # chance is 0.1


def test_the_style_by_class_grid_has_one_row_per_class_over_the_same_styles(client):
    r = client.post("/sweep", json={"model": "dcgan", "classes": ["Shirt", "Dress", 8], "seed": 0, "count": 6,
                                    "labels": False})
    images = grid_images(r)
    assert images.shape[0] == 18
    dress = grid_images(client.post("/generate", json={"model": "dcgan", "class": "Dress", "seed": 0, "count": 6}))
    assert np.array_equal(images[6:12], dress)  # row 2: the same six styles, as dresses
    assert not np.array_equal(images[:6], images[6:12])


def test_sweeps_with_values_and_directions_still_move_through_the_latent_space(client):
    towards = client.post("/sweep", json={"model": "gan", "classes": ["Trouser"], "values": [0, 4], "seed": 0,
                                          "count": 4, "mode": "add"})
    assert grid_images(towards).shape[0] == 8
    directions = client.get("/models/gan/directions").json()["directions"]
    assert all(np.allclose(d[100:], 0) for d in directions)  # SeFa in z: the class is held
    assert grid_images(client.post("/sweep", json={"model": "gan", "directions": [0, 1], "seed": 0, "count": 4})).shape[0] \
        == 4 * 2 * 3  # the study's three values
    r = client.post("/sweep", json={"model": "gan", "directions": [100], "seed": 0, "count": 4})
    assert r.status_code == 422 and "out of range" in r.text


def test_a_path_from_one_class_to_another_keeps_the_style(client):
    r = client.post("/interpolate", json={"model": "gan", "start": {"seed": 0, "index": 2, "class": "Sneaker"},
                                          "end": {"seed": 0, "index": 2, "class": "Ankle boot"}, "steps": 5})
    path = grid_images(r)
    sneaker = grid_images(client.post("/generate", json={"model": "gan", "class": "Sneaker", "seed": 0, "count": 3}))[2]
    boot = grid_images(client.post("/generate", json={"model": "gan", "class": "Ankle boot", "seed": 0, "count": 3}))[2]
    assert np.array_equal(path[0], sneaker) and np.array_equal(path[-1], boot)
    refused = client.post("/interpolate", json={"model": "plain-gan", "start": {"seed": 0, "class": "Bag"},
                                                "end": {"seed": 1}})
    assert refused.status_code == 422 and "not class-conditional" in refused.text


def test_truncation_pulls_z_and_keeps_the_class(client):
    latents = client.get("/models/gan/classes/Coat/latents", params={"count": 3, "truncation": 0.5}).json()
    v = np.asarray(latents["latents"])
    assert latents["verified"] == 3 and np.array_equal(v[:, 100:], np.eye(10)[[4, 4, 4]])
    assert np.allclose(v[:, :100], 0.5 * seeded_latents(0, 3, 100).numpy(), atol=1e-6)
    seeded = client.get("/latents", params={"seed": 0, "index": 1, "dim": 110, "classes": 10}).json()["latent"]
    assert np.allclose(seeded, seeded_latents(0, 2, 110, classes=10)[1].numpy())


def picture(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


def test_projection_holds_the_class_given_or_the_one_it_sees(client):
    trouser = grid_images(client.post("/generate", json={"model": "gan", "class": "Trouser", "seed": 4, "count": 1}))[0]
    given = client.post("/project", data={"model": "gan", "steps": "20", "class": "Dress"},
                        files={"file": ("t.png", picture(trouser), "image/png")}).json()
    assert given["class"] == "Dress" and np.array_equal(given["latent"][100:], np.eye(10)[3])
    seen = client.post("/project", data={"model": "gan", "steps": "20"},
                       files={"file": ("t.png", picture(trouser), "image/png")}).json()
    assert seen["class"] == NAMES[int(classified(trouser[None])[0])]
    assert seen["losses"]["final"]["total"] <= seen["losses"]["start"]["total"]
    plain = client.post("/project", data={"model": "plain-gan", "steps": "5"},
                        files={"file": ("t.png", picture(trouser), "image/png")})
    assert plain.status_code == 200 and "class" not in plain.json()  # as before


def test_scores_use_the_label_when_it_is_known(client):
    trouser = grid_images(client.post("/generate", json={"model": "gan", "class": "Trouser", "seed": 4, "count": 1}))[0]
    upload = [("files", ("t.png", picture(trouser), "image/png"))]
    logits = {name: client.post("/score", data={"model": "gan", "class": name}, files=upload).json()["scores"][0]
              for name in ("Trouser", "Bag")}
    assert logits["Trouser"]["class"] == "Trouser" and logits["Trouser"]["logit"] != logits["Bag"]["logit"]
    seen = client.post("/score", data={"model": "gan"}, files=upload).json()["scores"][0]
    assert seen["class"] == NAMES[int(classified(trouser[None])[0])]
    plain = client.post("/score", data={"model": "plain-gan"}, files=upload)
    assert plain.status_code == 200 and "class" not in plain.json()["scores"][0]
    refused = client.post("/score", data={"model": "plain-gan", "class": "Bag"}, files=upload)
    assert refused.status_code == 422 and "not class-conditional" in refused.text


def test_unconditional_versions_answer_as_before(client):
    """An unconditional version's seed grid is the seed's 100-number latents, and its class requests still draw
    candidates and verify them."""
    seeded = grid_images(client.post("/generate", json={"model": "plain-dcgan", "seed": 0, "count": 4}))
    posted = client.post("/generate", json={"model": "plain-dcgan", "latents": seeded_latents(0, 4, 100).tolist()})
    assert np.array_equal(seeded, grid_images(posted))
    verified = client.post("/generate", json={"model": "plain-gan", "class": "Trouser", "seed": 0, "count": 2})
    assert verified.status_code in (200, 422)  # a 1-epoch GAN may make no trousers: then a 422 saying so
    if verified.status_code == 422:
        assert "makes no images its classifier takes for 'Trouser'" in verified.text
    unknown = client.post("/generate", json={"model": "gan", "class": "Nope"})
    assert unknown.status_code == 422 and "'Trouser'" in unknown.text


def test_the_client_reaches_the_conditional_routes(client):
    from latentlab import Client

    with Client("http://testserver", transport=client._transport) as api:
        assert api.sweep("dcgan", classes=["Bag", "Coat"], count=3).images.shape[0] == 6
        assert api.interpolate("gan", (0, 0, "Bag"), (0, 0, "Coat"), steps=3).images.shape[0] == 3
        assert api.project("gan", np.zeros((28, 28), np.uint8), steps=2, class_="Bag").class_ == "Bag"


def test_projection_without_a_server_holds_the_class_too(conditional_store, tmp_path):
    Image.new("L", (28, 28), 90).save(tmp_path / "grey.png")
    result = run_cli("trainer.project", str(tmp_path / "grey.png"), "--store", str(conditional_store), "--model",
                     "gan", "--steps", "3", "--class", "sandal", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    found = json.loads((tmp_path / "out" / "latents.json").read_text())["pictures"][str(tmp_path / "grey.png")]
    assert found["class"] == "Sandal" and found["latent"][100:] == np.eye(10)[5].tolist()
    unknown = run_cli("trainer.project", str(tmp_path / "grey.png"), "--store", str(conditional_store), "--model",
                      "gan", "--class", "Hat", "--out", str(tmp_path / "out"))
    assert_user_error(unknown, "the classes are 0 'T-shirt/top'")
