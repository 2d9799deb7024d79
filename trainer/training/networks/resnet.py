"""A residual GAN (Miyato et al. 2018's ResNet generator and discriminator, at a width that suits a CPU).

G: z -> Linear -> 4x4 -> one up block per doubling (BatchNorm, ReLU, 2x nearest upsample, 3x3 conv, BatchNorm,
ReLU, 3x3 conv; a 1x1 conv on the upsampled shortcut) -> BatchNorm, ReLU, 3x3 conv, tanh. D: one down block per
halving (ReLU, 3x3 conv, ReLU, 3x3 conv, 2x2 average pool; a 1x1 conv on the pooled shortcut; the first block
without the leading ReLU, as the paper's "optimized" block), one block at 4x4 that keeps the size, ReLU, the
features summed over space, Linear -> 1 logit. D has no BatchNorm: spectral normalisation is its normaliser
(the recipe's `--d-norm spectral`, applied by trainer.training.nets).

Class-conditional, as the project's other networks are (trainer.training.architectures): G takes z then the class weights
as one vector; its first Linear reads both, and every BatchNorm is class-conditional (de Vries et al. 2017,
BigGAN): a gain and a bias per class, from the same class weights. D gets the projection head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.training.networks.heads import projected


class ClassBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale and shift are 1 + y Wg and y Wb for class weights y (N, classes); plain BatchNorm
    when `classes` is 0."""

    def __init__(self, channels: int, classes: int = 0) -> None:
        super().__init__(channels, affine=not classes)
        self.classes = classes
        if classes:
            self.class_gain = nn.Linear(classes, channels, bias=False)
            self.class_bias = nn.Linear(classes, channels, bias=False)
            nn.init.zeros_(self.class_gain.weight)  # starts as plain BatchNorm
            nn.init.zeros_(self.class_bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = super().forward(x)
        if not self.classes:
            return out
        return out * (1 + self.class_gain(y))[:, :, None, None] + self.class_bias(y)[:, :, None, None]


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, classes: int = 0) -> None:
        super().__init__()
        self.bn1, self.conv1 = ClassBatchNorm(c_in, classes), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.bn2, self.conv2 = ClassBatchNorm(c_out, classes), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, first: bool = False, down: bool = True) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or down) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        skip = self.shortcut(F.avg_pool2d(x, 2) if self.first and self.down else x)
        if self.down:
            h = F.avg_pool2d(h, 2)
            skip = skip if self.first else F.avg_pool2d(skip, 2)
        return h + skip


def _doublings(size: int) -> int:
    return size.bit_length() - 3  # 4x4 -> 32: 3, -> 64: 4


class ResNetGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, channels: int = 1, features: int = 64, size: int = 32,
                 classes: int = 0) -> None:
        super().__init__()
        self.classes, self.features = classes, features
        self.fc = nn.Linear(latent_dim, 4 * 4 * features)  # reads z and the class weights: SeFa's first layer
        self.blocks = nn.ModuleList(UpBlock(features, features, classes) for _ in range(_doublings(size)))
        self.bn = nn.BatchNorm2d(features)
        self.out = nn.Conv2d(features, channels, 3, 1, 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        y = latents[:, latents.shape[1] - self.classes:] if self.classes else None
        h = self.fc(latents).view(-1, self.features, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class ResNetDiscriminator(nn.Module):
    def __init__(self, channels: int = 1, features: int = 64, size: int = 32, classes: int = 0) -> None:
        super().__init__()
        halvings = _doublings(size)
        self.blocks = nn.Sequential(DownBlock(channels, features, first=True),
                                    *(DownBlock(features, features) for _ in range(halvings - 1)),
                                    DownBlock(features, features, down=False))
        self.fc = nn.Linear(features, 1)
        if classes:
            self.embed = nn.Linear(classes, features, bias=False)  # the projection head's class embedding

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, class_scores: bool = False):
        h = F.relu(self.blocks(x)).sum((2, 3))
        return projected(self.fc(h).view(-1), h, self, y, class_scores)
