"""The architectures: the study's two networks, exactly as it printed them (the reference presets), and a
residual GAN beside them (trainer.resnet).

Each architecture is one `Architecture` entry in `ARCHITECTURES`; adding one is adding an entry.
Discriminators return logits: the seed's final Sigmoid is folded into the loss
(`binary_cross_entropy_with_logits`), which is the same maths and safe under autocast.

Class-conditional (`Architecture.conditional`): G takes z then the class as one vector, z followed by a one-hot
(or any weights over the classes), so its first layer's class columns are the learned class embedding,
concatenated to z (the MLP) or fed into the first transposed convolution (the DCGAN): the same maths as an
`nn.Embedding` concatenated to z, folded into the layer. D gets a projection head (Miyato & Koyama 2018): its
output plus the inner product of a learned class embedding with its last hidden features.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from shared.imaging.latents import LatentLayout
from trainer.config import ConfigError
from trainer.resnet import ResNetDiscriminator, ResNetGenerator


# ----------------------------------------------------------------------------- plain GAN (MLP)
class MLPDiscriminator(nn.Module):
    """Seed: fc1 Linear(784 -> 128), LeakyReLU(0.2), fc2 Linear(128 -> 1)."""

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), hidden: int = 128, classes: int = 0):
        super().__init__()
        c, h, w = image_shape
        self.fc1 = nn.Linear(c * h * w, hidden)
        self.nonlin1 = nn.LeakyReLU(0.2)
        self.fc2 = nn.Linear(hidden, 1)
        if classes:
            self.embed = nn.Linear(classes, hidden, bias=False)  # the projection head's class embedding

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, class_scores: bool = False):
        """Logits of images `x`; a conditional D also takes their classes `y` (one-hot rows), and with
        `class_scores` returns (logits, the projection's score of every class) (`projected`)."""
        h = self.nonlin1(self.fc1(x.flatten(1)))
        return projected(self.fc2(h).view(-1), h, self, y, class_scores)


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


# ----------------------------------------------------------------------------- DCGAN at 32x32 (and 64x64)
class CNNDiscriminator(nn.Module):
    """Seed's CNNDiscriminator (features=64); 32x32 -> 16 -> 8 -> 4 -> 1 logit. At 64x64 one more strided block
    (the DCGAN paper's pattern): 64 -> 32 -> 16 -> 8 -> 4 -> 1, widths f, 2f, 4f, 8f.

    `batch_norm=False` puts an identity where the study has its BatchNorm layers (the layer indices, and so
    the state dict's names, stay the study's): the D that spectral normalisation is meant for (Miyato et al.)."""

    def __init__(self, channels: int = 1, features: int = 64, batch_norm: bool = True, size: int = 32,
                 classes: int = 0):
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else (lambda _: nn.Identity())
        widths = [features * 2 ** i for i in range(_blocks(size))]  # 32: f, 2f, 4f; 64: f, 2f, 4f, 8f
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1), norm(w_out), nn.LeakyReLU(0.2)]
        self.main = nn.Sequential(*layers, nn.Conv2d(widths[-1], 1, 4, 2, 0))
        if classes:
            self.embed = nn.Linear(classes, widths[-1], bias=False)  # the projection head's class embedding

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, class_scores: bool = False):
        """Logits of images `x`; a conditional D also takes their classes `y` (one-hot rows), and with
        `class_scores` returns (logits, the projection's score of every class) (`projected`)."""
        if y is None:
            return self.main(x).view(-1)
        h = self.main[:-1](x)  # the last features, (N, 4f, 4, 4) at 32x32
        return projected(self.main[-1](h).view(-1), h.sum((2, 3)), self, y, class_scores)


def projected(logits: torch.Tensor, features: torch.Tensor, D: nn.Module, y: torch.Tensor | None,
              class_scores: bool = False):
    """The projection discriminator's output: the unconditional logit plus <embed(y), features> (features pooled
    by summing over space, as Miyato & Koyama do). That is y . s, where s_k = <e_k, features> is the projection's
    score of class k; with `class_scores`, s (N, classes) is returned too: the auxiliary classifier that
    `--class-loss` trains (a classifier sharing the projection's embedding, so D gains no parameters)."""
    if y is None:
        return logits
    scores = features @ D.embed.weight.to(features.dtype)  # read once: under spectral norm a read is an iteration
    out = logits + (scores * y.to(scores.dtype)).sum(1)
    return (out, scores) if class_scores else out


class CNNGenerator(nn.Module):
    """Seed's CNNGenerator (latent_dim=100, features=64): z -> 4x4 -> 8 -> 16 -> 32x32, tanh. At 64x64 one more
    transposed block (the DCGAN paper's pattern): widths 8f, 4f, 2f, f, then the image."""

    def __init__(self, latent_dim: int = 100, channels: int = 1, features: int = 64, size: int = 32):
        super().__init__()
        self.latent_dim = latent_dim
        widths = [features * 8 // 2 ** i for i in range(_blocks(size))]  # 32: 8f, 4f, 2f; 64: 8f, 4f, 2f, f
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0), nn.ReLU()]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1), nn.BatchNorm2d(w_out), nn.ReLU()]
        self.main = nn.Sequential(*layers, nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(-1, self.latent_dim, 1, 1))


def _blocks(size: int) -> int:
    """Hidden widths of a DCGAN of `size` pixels: every block halves (D) or doubles (G) the side, from/to 4x4."""
    return size.bit_length() - 3  # 32 -> 3, 64 -> 4


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
    """One network family at one image shape. The registry holds each at the study's shape; `at` gives the same
    family at another (a run's `--channels` and `--image-size`)."""

    name: str
    description: str
    image_size: int  # square images; datasets are resized to this
    channels: int
    latent_dim: int
    features: int | None  # width knob of convolutional nets (--features); None where it does not apply
    build_generator: Callable[[int, int | None, int, int, int], nn.Module]  # (latent_dim, features, channels, size,
    #                                                                         classes) -> G
    build_discriminator: Callable[[int | None, int, int, bool, int], nn.Module]  # (features, channels, size,
    #                                                                             batch_norm, classes)
    sizes: tuple[int, ...] = ()  # the image sizes it takes; its own first
    init: Callable[[nn.Module], None] | None = None
    classes: int = 0  # class-conditional on this many classes; 0: unconditional (the study)

    @property
    def layout(self) -> LatentLayout:
        """What G's input holds: z, then one weight per class when conditional."""
        return LatentLayout(self.latent_dim, self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def at(self, channels: int | None = None, image_size: int | None = None,
           features: int | None = None) -> "Architecture":
        """This architecture for images of `channels` (1 or 3) x `image_size`^2, `features` wide (None: its own)."""
        if features is not None and self.features is None:
            raise ConfigError(f"--features: the {self.name} architecture has no width to set (a convolutional one has)")
        channels, image_size = channels or self.channels, image_size or self.image_size
        features = features or self.features
        if image_size not in self.sizes:
            raise ConfigError(f"--image-size {image_size}: the {self.name} architecture takes "
                              f"{', '.join(map(str, self.sizes))} pixels (its own: {self.image_size})")
        if channels not in CHANNELS:
            raise ConfigError(f"--channels {channels}: images are grey (1) or colour (3)")
        return replace(self, channels=channels, image_size=image_size, features=features)

    def conditional(self, classes: int) -> "Architecture":
        """This architecture conditioned on `classes` classes (0: unconditional)."""
        if classes == 1:
            raise ConfigError("--conditional needs labelled data of at least two classes; this data has one "
                              "(a folder needs one subfolder per class)")
        return replace(self, classes=classes)

    def generator(self) -> nn.Module:
        net = self.build_generator(self.layout.width, self.features, self.channels, self.image_size, self.classes)
        if self.init:
            net.apply(self.init)
        return net

    def discriminator(self, batch_norm: bool = True) -> nn.Module:
        """D; `batch_norm=False`: without its BatchNorm layers, where it has any (the MLP has none)."""
        net = self.build_discriminator(self.features, self.channels, self.image_size, batch_norm, self.classes)
        if self.init:
            net.apply(self.init)
        return net


CHANNELS = (1, 3)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            name="gan",
            description="the study's plain GAN: one hidden layer of 128 units in each net, 28x28 (or 32, 64)",
            image_size=28, channels=1, latent_dim=100, features=None, sizes=(28, 32, 64),
            build_generator=lambda z, _f, c, s, _k: MLPGenerator(z, (c, s, s)),
            build_discriminator=lambda _f, c, s, _bn, k: MLPDiscriminator((c, s, s), classes=k),
        ),
        Architecture(
            name="dcgan",
            description="the study's DCGAN: 4 (transposed) convolutions each, features=64, 32x32 (or 64x64: 5 each)",
            image_size=32, channels=1, latent_dim=100, features=64, sizes=(32, 64),
            build_generator=lambda z, f, c, s, _k: CNNGenerator(z, c, f, s),
            build_discriminator=lambda f, c, s, bn, k: CNNDiscriminator(c, f, bn, s, k),
            init=dcgan_init,
        ),
        Architecture(
            name="resnet",
            description="a residual GAN (Miyato et al. 2018): residual up blocks in G (class-conditional BatchNorm "
                        "when conditional), residual down blocks in D for spectral norm, features=32, 32x32 (or 64x64)",
            image_size=32, channels=1, latent_dim=100, features=32, sizes=(32, 64),
            build_generator=lambda z, f, c, s, k: ResNetGenerator(z, c, f, s, k),
            build_discriminator=lambda f, c, s, _bn, k: ResNetDiscriminator(c, f, s, k),
        ),
    )
}


def run_architecture(cfg) -> Architecture:
    """The architecture of a run (a TrainConfig), at the run's image shape, conditional on its classes if it is."""
    return get_architecture(cfg.arch).at(cfg.channels, cfg.image_size, cfg.features).conditional(len(cfg.class_names))


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

