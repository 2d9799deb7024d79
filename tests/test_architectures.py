import pytest
import torch

from trainer.training.architectures import ARCHITECTURES, count_parameters, get_architecture
from trainer.training.networks.study import CNNGenerator

pytestmark = pytest.mark.fast  # make check runs it on every commit

# the seed's printed parameter counts: (discriminator, generator)
SEED_COUNTS = {"gan": (100_609, 114_064), "dcgan": (661_697, 3_444_353)}


@pytest.mark.parametrize("name", sorted(SEED_COUNTS))
def test_parameter_counts_match_the_seed(name):
    arch = get_architecture(name)
    assert (count_parameters(arch.discriminator()), count_parameters(arch.generator())) == SEED_COUNTS[name]


@pytest.mark.parametrize("name,size", [("gan", 28), ("dcgan", 32)])
def test_shapes_and_ranges(name, size):
    arch = get_architecture(name)
    G, D = arch.generator().eval(), arch.discriminator().eval()
    with torch.no_grad():
        images = G(torch.randn(5, arch.latent_dim))
        logits = D(images)
    assert images.shape == (5, 1, size, size) == (5, *arch.image_shape)
    assert images.min() >= -1 and images.max() <= 1
    assert logits.shape == (5,)  # logits: not squashed into [0, 1]


def test_dcgan_layers_are_the_seeds():
    arch = get_architecture("dcgan")
    G, D = arch.generator(), arch.discriminator()
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 64, (4, 4), (2, 2), (1, 1)), (64, 128, (4, 4), (2, 2), (1, 1)),
        (128, 256, (4, 4), (2, 2), (1, 1)), (256, 1, (4, 4), (2, 2), (0, 0))]
    tconvs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in tconvs] == [
        (100, 512, (1, 1)), (512, 256, (2, 2)), (256, 128, (2, 2)), (128, 1, (2, 2))]


def test_latent_dim_and_features_are_parameters_of_the_nets():
    G = CNNGenerator(latent_dim=16, channels=1, features=8)
    assert G(torch.randn(2, 16)).shape == (2, 1, 32, 32)
    assert count_parameters(G) < count_parameters(get_architecture("dcgan").generator())


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match="gan, dcgan"):
        get_architecture("stylegan")
    assert set(ARCHITECTURES) >= {"gan", "dcgan"}
