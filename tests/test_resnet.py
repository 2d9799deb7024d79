"""The residual GAN (`--arch resnet`): its shapes grey and colour, 32 and 64 pixels, conditional or not; its width
flag; and a tiny one of each shape trained, published in every form and served end to end as the DCGAN is:
grids, sweeps, semantic directions, projection, the pixels of the trainer's own file."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.imaging.networks import load_network
from shared.store import FORMS, Store, form_file
from tests.conftest import run_cli, train_and_publish
from tests.service_helpers import grid_images, make_client, wait_ready
from trainer.training.architectures import count_parameters, get_architecture
from trainer.training.config import TrainConfig
from trainer.training.settings import recipe_settings


@pytest.mark.parametrize("channels, size, classes", [(1, 32, 0), (3, 32, 0), (1, 64, 0), (3, 64, 0), (1, 32, 10)])
def test_shapes_grey_and_colour_at_32_and_64_conditional_or_not(channels, size, classes):
    arch = get_architecture("resnet").at(channels, size).conditional(classes)
    G, D = arch.generator().eval(), arch.discriminator().eval()
    latents = arch.layout.labelled(torch.randn(3, 100), torch.tensor([0, 1, 2]) if classes else None)
    with torch.no_grad():
        images = G(latents)
        logits = D(images, *((arch.layout.class_weights(latents),) if classes else ()))
    assert images.shape == (3, channels, size, size) and images.abs().max() <= 1
    assert logits.shape == (3,)
    if classes:  # the class changes the picture: class-conditional BatchNorm and the first layer both read it
        G.blocks[0].bn1.class_gain.weight.data.normal_()
        with torch.no_grad():
            other = G(arch.layout.labelled(latents[:, :100], torch.tensor([3, 4, 5])))
        assert not torch.allclose(G(latents), other)


def test_the_width_flag_sets_the_cost():
    narrow, wide = (get_architecture("resnet").at(features=f) for f in (16, 64))
    assert count_parameters(wide.generator()) > 8 * count_parameters(narrow.generator())  # convolutions: ~width²
    plain, wider = (get_architecture("gan").at(features=f) for f in (128, 512))
    assert count_parameters(wider.generator()) == 4 * count_parameters(plain.generator()) - 3 * 784  # one bias
    assert count_parameters(plain.discriminator()) == 100_609  # the study's MLP, its width by default
    with pytest.raises(ValueError, match="--depth: the gan architecture has no depth"):
        get_architecture("gan").at(depth=2)


def picture_upload(image: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return {"file": ("p.png", buffer.getvalue(), "image/png")}


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True])
def test_a_tiny_resnet_trains_publishes_and_serves_end_to_end(fashion_dir, tmp_path, conditional):
    cfg = TrainConfig(arch="resnet", epochs=1, limit=128, features=16, data_dir=str(fashion_dir), device="cpu",
                      conditional=conditional, class_samples=300, encoder_steps=10,
                      **recipe_settings("stable", "resnet", conditional, batch_size=32))
    number = train_and_publish(tmp_path, cfg, encoder=True)
    version = Store(tmp_path).get("resnet", number)
    for network in ("generator", "discriminator", "encoder"):
        assert {form_file(network, form) for form in FORMS} <= version.manifest.files.keys()
    layout = LatentLayout.of(version.manifest)
    with make_client(tmp_path) as client:
        wait_ready(client)
        served = grid_images(client.post("/generate", json={"model": "resnet", "seed": 3, "count": 4}))
        generator = load_network(version.path, version.manifest.files, "generator")
        with torch.no_grad():
            expected = to_uint8(generator(layout.seeded(3, 4)))[:, 0].numpy()
        assert np.array_equal(served, expected)  # the trainer's file's pixels, exactly
        assert client.post("/sweep", json={"model": "resnet", "seed": 1, "dims": [0, 1],
                                           "values": [-2, 0, 2]}).status_code == 200
        directions = client.get("/models/resnet/directions").json()
        assert directions["layer"].startswith("fc") and len(directions["directions"]) > 0  # SeFa on its first layer
        found = client.post("/project", data={"model": "resnet", "steps": "3"}, files=picture_upload(served[0]))
        assert found.status_code == 200, found.text
        assert len(found.json()["latent"]) == layout.width


def test_the_cli_offers_it_with_its_width(tmp_path):
    result = run_cli("trainer", "--help")
    assert "resnet" in result.stdout and "--features WIDTH" in result.stdout
