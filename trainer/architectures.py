"""The architectures: the study's two networks, exactly as it printed them (the reference presets).

Each architecture is one `Architecture` entry in `ARCHITECTURES`; adding one is adding an entry.
Discriminators return logits: the seed's final Sigmoid is folded into the loss
(`binary_cross_entropy_with_logits`), which is the same maths and safe under autocast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


# ----------------------------------------------------------------------------- plain GAN (MLP)
class MLPDiscriminator(nn.Module):
    """Seed: fc1 Linear(784 -> 128), LeakyReLU(0.2), fc2 Linear(128 -> 1)."""

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), hidden: int = 128):
        super().__init__()
        c, h, w = image_shape
        self.fc1 = nn.Linear(c * h * w, hidden)
        self.nonlin1 = nn.LeakyReLU(0.2)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.nonlin1(self.fc1(x.flatten(1)))).view(-1)


class MLPGenerator(nn.Module):
    """Seed: fc1 Linear(100 -> 128), LeakyReLU(0.2), fc2 Linear(128 -> 784), then tanh."""

    def __init__(self, latent_dim: int = 100, image_shape: tuple[int, int, int] = (1, 28, 28), hidden: int = 128):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = image_shape
        self.fc1 = nn.Linear(latent_dim, hidden)
        self.nonlin1 = nn.LeakyReLU(0.2)
        self.fc2 = nn.Linear(hidden, c * h * w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        return torch.tanh(self.fc2(self.nonlin1(self.fc1(z)))).view(-1, c, h, w)


# ----------------------------------------------------------------------------- DCGAN at 32x32
class CNNDiscriminator(nn.Module):
    """Seed's CNNDiscriminator (features=64); 32x32 -> 16 -> 8 -> 4 -> 1 logit.

    `batch_norm=False` puts an identity where the study has its two BatchNorm layers (the layer indices, and so
    the state dict's names, stay the study's): the D that spectral normalisation is meant for (Miyato et al.)."""

    def __init__(self, channels: int = 1, features: int = 64, batch_norm: bool = True):
        super().__init__()
        f = features
        norm = nn.BatchNorm2d if batch_norm else (lambda _: nn.Identity())
        self.main = nn.Sequential(
            nn.Conv2d(channels, f, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(f, 2 * f, 4, 2, 1), norm(2 * f), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * f, 4 * f, 4, 2, 1), norm(4 * f), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * f, 1, 4, 2, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


class CNNGenerator(nn.Module):
    """Seed's CNNGenerator (latent_dim=100, features=64): z -> 4x4 -> 8 -> 16 -> 32x32, tanh."""

    def __init__(self, latent_dim: int = 100, channels: int = 1, features: int = 64):
        super().__init__()
        f = features
        self.latent_dim = latent_dim
        self.main = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 8 * f, 4, 1, 0), nn.ReLU(),
            nn.ConvTranspose2d(8 * f, 4 * f, 4, 2, 1), nn.BatchNorm2d(4 * f), nn.ReLU(),
            nn.ConvTranspose2d(4 * f, 2 * f, 4, 2, 1), nn.BatchNorm2d(2 * f), nn.ReLU(),
            nn.ConvTranspose2d(2 * f, channels, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(-1, self.latent_dim, 1, 1))


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) conv weights, N(1, 0.02) BatchNorm scales (Radford et al.; pytorch/examples dcgan)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    image_size: int  # square images; datasets are resized to this
    channels: int
    latent_dim: int
    features: int | None  # width knob of convolutional nets; None where it does not apply
    build_generator: Callable[[int, int | None], nn.Module]  # (latent_dim, features) -> G
    build_discriminator: Callable[[int | None, bool], nn.Module]  # (features, batch_norm) -> D
    init: Callable[[nn.Module], None] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def generator(self) -> nn.Module:
        net = self.build_generator(self.latent_dim, self.features)
        if self.init:
            net.apply(self.init)
        return net

    def discriminator(self, batch_norm: bool = True) -> nn.Module:
        """D; `batch_norm=False`: without its BatchNorm layers, where it has any (the MLP has none)."""
        net = self.build_discriminator(self.features, batch_norm)
        if self.init:
            net.apply(self.init)
        return net


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            name="gan",
            description="the seed's plain GAN: one hidden layer of 128 units in each net, 28x28",
            image_size=28, channels=1, latent_dim=100, features=None,
            build_generator=lambda z, _f: MLPGenerator(z, (1, 28, 28)),
            build_discriminator=lambda _f, _bn: MLPDiscriminator((1, 28, 28)),
        ),
        Architecture(
            name="dcgan",
            description="the seed's DCGAN: 4 (transposed) convolutions each, features=64, 32x32",
            image_size=32, channels=1, latent_dim=100, features=64,
            build_generator=lambda z, f: CNNGenerator(z, 1, f),
            build_discriminator=lambda f, bn: CNNDiscriminator(1, f, bn),
            init=dcgan_init,
        ),
    )
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
