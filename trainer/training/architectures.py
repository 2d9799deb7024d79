"""The architectures: the study's two networks, exactly as it printed them (the reference presets), a residual GAN
after Miyato et al. 2018, and R3GAN's modern baseline; the networks themselves are in trainer.training.networks.

Each architecture is one `Architecture` entry in `ARCHITECTURES`; adding one is adding an entry.

Class-conditional (`Architecture.conditional`): G takes z then the class as one vector, z followed by a one-hot
(or any weights over the classes), so its first layer's class columns are the learned class embedding,
concatenated to z (the MLP, R3GAN) or fed into the first transposed convolution (the DCGAN): the same maths as an
`nn.Embedding` concatenated to z, folded into the layer. D gets a projection head (Miyato & Koyama 2018).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from torch import nn

from shared.imaging.latents import LatentLayout
from trainer.training.config import ConfigError
from trainer.training.networks import r3gan
from trainer.training.networks.resnet import ResNetDiscriminator, ResNetGenerator
from trainer.training.networks.study import CNNDiscriminator, CNNGenerator, MLPDiscriminator, MLPGenerator, dcgan_init
from trainer.training.settings import CHANNELS, Search


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Architecture:
    """One network family at one image shape. The registry holds each at the study's shape; `at` gives the same
    family at another (a run's `--channels` and `--image-size`)."""

    name: str
    description: str
    image_size: int  # square images; datasets are resized to this
    channels: int
    latent_dim: int
    features: int | None  # width of its layers (--features): a CNN's channels, the MLP's hidden units
    build_generator: Callable[["Architecture"], nn.Module]
    build_discriminator: Callable[["Architecture", bool], nn.Module]  # (this, with D's BatchNorm or not)
    sizes: tuple[int, ...] = ()  # the image sizes it takes; its own first
    init: Callable[[nn.Module], None] | None = None
    classes: int = 0  # class-conditional on this many classes; 0: unconditional (the study)
    depth: int | None = None  # residual blocks per resolution (--depth); None where it does not apply
    groups: int | None = None  # groups of a block's 3x3 convolution (--groups); None where it does not apply
    size_search: Mapping[str, Search] = field(default_factory=dict)  # where python -m trainer.tune looks for its size

    @property
    def layout(self) -> LatentLayout:
        """What G's input holds: z, then one weight per class when conditional."""
        return LatentLayout(self.latent_dim, self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def at(self, channels: int | None = None, image_size: int | None = None, features: int | None = None,
           depth: int | None = None, groups: int | None = None) -> "Architecture":
        """This architecture for images of `channels` (1 or 3) x `image_size`^2, of the size `features`, `depth`
        and `groups` give (None: its own)."""
        for flag, value, own, noun in (("--features", features, self.features, "width"),
                                        ("--depth", depth, self.depth, "depth"),
                                        ("--groups", groups, self.groups, "groups")):
            if value is not None and own is None:
                raise ConfigError(f"{flag}: the {self.name} architecture has no {noun} to set")
        channels, image_size = channels or self.channels, image_size or self.image_size
        if image_size not in self.sizes:
            raise ConfigError(f"--image-size {image_size}: the {self.name} architecture takes "
                              f"{', '.join(map(str, self.sizes))} pixels (its own: {self.image_size})")
        if channels not in CHANNELS:
            raise ConfigError(f"--channels {channels}: images are grey (1) or colour (3)")
        return replace(self, channels=channels, image_size=image_size, features=features or self.features,
                       depth=depth or self.depth, groups=groups or self.groups)

    def conditional(self, classes: int) -> "Architecture":
        """This architecture conditioned on `classes` classes (0: unconditional)."""
        if classes == 1:
            raise ConfigError("--conditional needs labelled data of at least two classes; this data has one "
                              "(a folder needs one subfolder per class)")
        return replace(self, classes=classes)

    def generator(self) -> nn.Module:
        net = self.build_generator(self)
        if self.init:
            net.apply(self.init)
        return net

    def discriminator(self, batch_norm: bool = True) -> nn.Module:
        """D; `batch_norm=False`: without its BatchNorm layers, where it has any (the MLP has none)."""
        net = self.build_discriminator(self, batch_norm)
        if self.init:
            net.apply(self.init)
        return net




ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            name="gan",
            description="the study's plain GAN: one hidden layer of 128 units in each net (features), 28x28 (or 32, "
                        "64)",
            image_size=28, channels=1, latent_dim=100, features=128, sizes=(28, 32, 64),
            size_search={"features": Search(choices=(128, 256, 512))},
            build_generator=lambda a: MLPGenerator(a.layout.width, a.image_shape, a.features),
            build_discriminator=lambda a, _bn: MLPDiscriminator(a.image_shape, a.features, a.classes),
        ),
        Architecture(
            name="dcgan",
            description="the study's DCGAN: 4 (transposed) convolutions each, features=64, 32x32 (or 64x64: 5 each)",
            image_size=32, channels=1, latent_dim=100, features=64, sizes=(32, 64),
            size_search={"features": Search(choices=(32, 48, 64, 96))},
            build_generator=lambda a: CNNGenerator(a.layout.width, a.channels, a.features, a.image_size),
            build_discriminator=lambda a, bn: CNNDiscriminator(a.channels, a.features, bn, a.image_size, a.classes),
            init=dcgan_init,
        ),
        Architecture(
            name="resnet",
            description="a residual GAN (Miyato et al. 2018): residual up blocks in G (class-conditional BatchNorm "
                        "when conditional), residual down blocks in D for spectral norm, features=32, 32x32 (or 64x64)",
            image_size=32, channels=1, latent_dim=100, features=32, sizes=(32, 64),
            size_search={"features": Search(choices=(32, 64))},
            build_generator=lambda a: ResNetGenerator(a.layout.width, a.channels, a.features, a.image_size,
                                                      a.classes),
            build_discriminator=lambda a, _bn: ResNetDiscriminator(a.channels, a.features, a.image_size, a.classes),
        ),
        Architecture(
            name="r3gan",
            description="R3GAN (Huang et al. 2024): a ResNet of inverted bottlenecks with grouped 3x3 convolutions, "
                        "no normalisation, fix-up initialisation and [1,2,1] resampling, trained with the "
                        "relativistic loss and R1 + R2 (its recipe); features=64, depth 1, 8 groups, 32x32 (or 64x64)",
            image_size=32, channels=1, latent_dim=100, features=64, depth=1, groups=8, sizes=(32, 64),
            size_search={"features": Search(choices=(32, 48, 64, 96)), "depth": Search(choices=(1, 2)),
                         "groups": Search(choices=(4, 8, 16))},
            build_generator=lambda a: r3gan.Generator(a.layout.width, a.channels, a.features, a.image_size, a.depth,
                                                      a.groups),
            build_discriminator=lambda a, _bn: r3gan.Discriminator(a.channels, a.features, a.image_size, a.depth,
                                                                   a.groups, a.classes),
        ),
    )
}


def run_architecture(cfg) -> Architecture:
    """The architecture of a run (a TrainConfig), at the run's image shape, conditional on its classes if it is."""
    return (get_architecture(cfg.arch).at(cfg.channels, cfg.image_size, cfg.features, cfg.depth, cfg.groups)
            .conditional(len(cfg.class_names)))


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

