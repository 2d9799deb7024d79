"""The study's two networks, exactly as it printed them (the reference presets): the plain GAN's MLPs and the
DCGAN's convolutions (with one more block each at 64x64, the DCGAN paper's pattern).

Discriminators return logits: the seed's final Sigmoid is folded into the loss
(`binary_cross_entropy_with_logits`), which is the same maths and safe under autocast. A conditional D gets the
projection head (trainer.training.networks.heads).
"""
from __future__ import annotations

import torch
from torch import nn

from trainer.training.networks.heads import projected


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
