"""R3GAN (`--arch r3gan`): its networks (no normalisation, fix-up initialisation: every block starts as the
identity; grouped convolutions; the [1,2,1] resampling), its loss (RpGAN with R1 and R2), its size flags, and a
tiny one of each shape (grey and colour, 32 and 64 pixels, plain and class-conditional) trained, published in every
form and served end to end as the DCGAN is: the trainer's pixels exactly, sweeps, semantic directions, projection,
class requests."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.imaging.networks import load_network
from shared.store import FORMS, Store, form_file
from tests.conftest import assert_user_error, run_cli, run_main, train_and_publish
from tests.service_helpers import grid_images, make_client, wait_ready
from trainer.cli import main as trainer_main
from trainer.tinted import tint, write_folder
from trainer.training.architectures import count_parameters, get_architecture
from trainer.training.config import ConfigError, TrainConfig
from trainer.training.data import load_idx_split
from trainer.training.losses import Objective, RelativisticPairing
from trainer.training.networks import r3gan
from trainer.training.settings import recipe_settings

pytestmark = pytest.mark.fast  # make check runs it on every commit (the tiny ones end to end are slow as well)


@pytest.mark.parametrize("channels, size, classes", [(1, 32, 0), (3, 32, 0), (1, 64, 0), (3, 64, 10), (1, 32, 10)])
def test_shapes_grey_and_colour_at_32_and_64_conditional_or_not(channels, size, classes):
    arch = get_architecture("r3gan").at(channels, size).conditional(classes)
    G, D = arch.generator().eval(), arch.discriminator().eval()
    latents = arch.layout.labelled(torch.randn(3, 100), torch.tensor([0, 1, 2]) if classes else None)
    with torch.no_grad():
        images = G(latents)
        logits = D(images, *((arch.layout.class_weights(latents),) if classes else ()))
    assert images.shape == (3, channels, size, size) and logits.shape == (3,)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in [*G.modules(), *D.modules()])
    if classes:  # the class changes the picture (the first layer reads it) and D's judgement (the projection)
        other = arch.layout.labelled(latents[:, :100], torch.tensor([3, 4, 5]))
        with torch.no_grad():
            assert not torch.allclose(G(latents), G(other))
            assert not torch.allclose(D(images, arch.layout.class_weights(latents)),
                                      D(images, arch.layout.class_weights(other)))


def test_every_block_starts_as_the_identity_and_its_convolution_is_grouped():
    G = get_architecture("r3gan").at(features=32, depth=2, groups=8).generator()
    blocks = [m for m in G.modules() if isinstance(m, r3gan.Block)]
    assert len(blocks) == 2 * 4  # two at each of 4x4, 8, 16 and 32
    x = torch.randn(2, 32, 8, 8)
    for block in blocks:
        assert torch.equal(block(x), x)  # fix-up: the last convolution starts at zero
        assert block.mix.groups == 8 and block.mix.in_channels == 32 * r3gan.EXPANSION
    before = [b.expand.weight.std().item() for b in blocks]
    deeper = [b.expand.weight.std().item() for b in get_architecture("r3gan").at(features=32, depth=4).generator()
              .modules() if isinstance(b, r3gan.Block)]
    assert np.mean(deeper) < np.mean(before)  # scaled by L^(-1/4): more blocks, smaller branches


def test_the_resampling_is_the_low_pass_filter():
    """[1, 2, 1] with the 2x step's box folded in: [1, 3, 3, 1], as StyleGAN2's upfirdn2d applies it."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = (taps[:, None] * taps[None, :] / 64).view(1, 1, 4, 4)
    x = torch.randn(2, 3, 8, 8)
    c = x.shape[1]
    zero_inserted = torch.nn.functional.conv_transpose2d(x, 4 * kernel.expand(c, 1, 4, 4), stride=2, padding=1,
                                                         groups=c)
    filtered = torch.nn.functional.conv2d(x, kernel.expand(c, 1, 4, 4), stride=2, padding=1, groups=c)
    assert torch.allclose(r3gan.upsample(x)[..., 1:-1, 1:-1], zero_inserted[..., 1:-1, 1:-1], atol=1e-6)  # edges
    assert torch.allclose(r3gan.downsample(x), filtered, atol=1e-6)                      # repeated, not zero, going up
    checker = torch.tensor([[1.0, -1.0] * 4, [-1.0, 1.0] * 4] * 4).view(1, 1, 8, 8)
    assert r3gan.downsample(checker)[..., 1:-1, 1:-1].abs().max() < 1e-6  # the highest frequency does not alias


def test_the_size_flags_set_the_cost_and_are_refused_where_they_do_not_apply():
    narrow, wide = (get_architecture("r3gan").at(features=f) for f in (32, 96))
    assert count_parameters(wide.generator()) > 6 * count_parameters(narrow.generator())
    deep = get_architecture("r3gan").at(depth=3)
    assert count_parameters(deep.generator()) > 2 * count_parameters(get_architecture("r3gan").generator())
    for flag, kwargs in (("--depth", {"depth": 2}), ("--groups", {"groups": 4})):
        with pytest.raises(ConfigError, match=f"{flag}: the dcgan architecture has no"):
            get_architecture("dcgan").at(**kwargs)


def test_the_relativistic_loss_pairs_real_and_fake_and_the_penalties_are_zero_centred():
    loss = RelativisticPairing()
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    assert torch.isclose(loss.discriminator(real, fake), torch.nn.functional.softplus(-torch.tensor([2.0, 0.0])).mean())
    assert loss.generator(fake, real) > loss.generator(real, fake)  # G gains by making its fakes look more real
    # R1 on real, R2 on fake: the squared gradient of D at each, gamma/2 each
    D = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        D.weight.fill_(0.5)
    images = (torch.randn(3, 4), torch.randn(3, 4))
    judged = lambda x, *_: D(x).view(-1)  # noqa: E731
    base = Objective(loss)
    for r1, r2, expected in ((2.0, 0.0, 1.0), (0.0, 2.0, 1.0), (2.0, 2.0, 2.0)):
        with_penalties, _, _ = Objective(loss, r1=r1, r2=r2).discriminator(judged, judged, *images, None,
                                                                           lambda x: x, torch.zeros(2))
        without, _, _ = base.discriminator(judged, judged, *images, None, lambda x: x, torch.zeros(2))
        # |grad|^2 = 4 x 0.5^2 = 1 for every image: gamma/2 x 1 per penalty
        assert torch.isclose(with_penalties - without, torch.tensor(expected)), (r1, r2)
    # lazy: only on the steps told to penalise, as many times as strong as they are rare
    lazy = Objective(loss, r1=2.0, r2=2.0, penalty_every=4)
    for penalise, expected in ((False, 0.0), (True, 8.0)):
        with_penalties, _, _ = lazy.discriminator(judged, judged, *images, None, lambda x: x, torch.zeros(2), penalise)
        without, _, _ = base.discriminator(judged, judged, *images, None, lambda x: x, torch.zeros(2))
        assert torch.isclose(with_penalties - without, torch.tensor(expected)), penalise


def test_the_cli_offers_it_with_its_size_flags_and_its_own_recipe(tmp_path, capsys):
    result = run_cli("trainer", "--help")
    assert "r3gan" in result.stdout and "--depth BLOCKS" in result.stdout and "--groups N" in result.stdout
    assert "--r2 GAMMA" in result.stdout and "rpgan" in result.stdout
    refused = run_main(trainer_main, "--arch", "dcgan", "--depth", "2", "--epochs", "1", "--out", str(tmp_path),
                       capsys=capsys)
    assert_user_error(refused, "--depth: the dcgan architecture has no depth")


# ---------------------------------------------------------------------- tiny ones, end to end
SHAPES = {  # every value of each of grey/colour, 32/64 and plain/conditional, every pair of them once
    "grey32": (1, 32, False), "grey64c": (1, 64, True), "rgb32c": (3, 32, True), "rgb64": (3, 64, False)}


@pytest.fixture(scope="module")
def tinted(tmp_path_factory, fashion_dir) -> Path:
    """64 FashionMNIST images tinted by class, a folder of class subfolders: the colour shapes' data."""
    root = tmp_path_factory.mktemp("tinted")
    images, labels = load_idx_split(fashion_dir, "train")
    write_folder(root, tint(images[:64], labels[:64]), labels[:64])
    return root


def tiny_r3gan(root: Path, name: str, fashion_dir: Path, tinted: Path) -> Path:
    """A store holding one tiny r3gan of shape `name` (8 wide, 64 images, one epoch), with its encoder and, for
    FashionMNIST in grey, its classes."""
    channels, size, conditional = SHAPES[name]
    data = {"dataset": "fashion-mnist", "data_dir": str(fashion_dir)} if channels == 1 else \
        {"dataset": "folder", "data_dir": str(tinted)}
    cfg = TrainConfig(arch="r3gan", name=name, epochs=1, limit=64, features=8, groups=4, image_size=size,
                      conditional=conditional, device="cpu", encoder_steps=5, eval_samples=None,
                      class_samples=200 if channels == 1 else 0, **data,
                      **recipe_settings("stable", "r3gan", conditional, batch_size=32))
    train_and_publish(root, cfg, encoder=True)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHAPES))
def test_a_tiny_r3gan_of_each_shape_is_published_in_every_form_and_served(tmp_path, fashion_dir, tinted, name):
    channels, size, conditional = SHAPES[name]
    r3gan_store = tiny_r3gan(tmp_path / "models", name, fashion_dir, tinted)
    version = Store(r3gan_store).get(name)
    for network in ("generator", "discriminator", "encoder"):
        assert {form_file(network, form) for form in FORMS} <= version.manifest.files.keys()
    assert version.manifest.recipe["loss"] == "rpgan" and version.manifest.recipe["r2"] > 0
    layout = LatentLayout.of(version.manifest)
    assert layout.conditional == conditional and tuple(version.manifest.image_shape) == (channels, size, size)
    with make_client(r3gan_store) as client:
        wait_ready(client)
        served = grid_images(client.post("/generate", json={"model": name, "seed": 3, "count": 4}))
        generator = load_network(version.path, version.manifest.files, "generator")
        with torch.no_grad():
            expected = to_uint8(generator(layout.seeded(3, 4))).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(served.reshape(expected.shape), expected)  # the trainer's file's pixels, exactly
        assert client.post("/sweep", json={"model": name, "seed": 1, "dims": [0, 1],
                                           "values": [-2, 0, 2]}).status_code == 200
        directions = client.get(f"/models/{name}/directions").json()
        assert directions["layer"].startswith("fc") and len(directions["directions"]) > 0  # SeFa on its first layer
        picture = io.BytesIO()
        Image.fromarray(served[0]).save(picture, "PNG")
        found = client.post("/project", data={"model": name, "steps": "3"},
                            files={"file": ("p.png", picture.getvalue(), "image/png")})
        assert found.status_code == 200, found.text
        assert len(found.json()["latent"]) == layout.width
        asked = client.post("/generate", json={"model": name, "seed": 0, "count": 2, "class": 1})
        if conditional:  # the class is given to the generator
            assert asked.status_code == 200, asked.text
        elif channels == 1:  # found in the latent space (classes.json): a model this tiny may draw none of it
            assert asked.status_code == 200 or asked.json()["detail"][0]["type"] == "model_mismatch", asked.text
