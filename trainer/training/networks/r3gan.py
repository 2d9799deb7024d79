"""R3GAN's networks (Huang et al. 2024, "The GAN is dead; long live the GAN!") at a width a CPU can train.

A ResNet with no normalisation layers, in stages of one resolution each (4x4, 8x8, ... the image's side):
- every block is an inverted bottleneck, x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))), expanding the
  channels `EXPANSION` times in its middle, the 3x3 convolution in `groups` groups;
- fix-up initialisation: weights drawn as MSR (He) initialisation scaled by L^(-1/4) for L blocks in the net,
  and each block's last convolution starting at zero, so every block starts as the identity and the net trains
  without normalisation;
- resampling by the [1, 2, 1] low-pass filter (as [1, 3, 3, 1] once the box of the up/down step is folded in:
  StyleGAN2's upfirdn2d): bilinear interpolation up (the same numbers, edges repeated) and a fixed depthwise
  convolution down;
- activations are a bias then a leaky ReLU (the bias added by the convolution before it: the same maths).

G: a learned 4x4 basis per channel scaled by a linear map of the latent, the stages (each an upsampling then its
blocks), and a 1x1 convolution to the image: linear, no tanh (pixels are clamped when quantised, as always).
D: a 1x1 convolution from the image, the stages (each its blocks then a downsampling), the 4x4 basis (a depthwise
4x4 convolution) and a linear map to the logit.

Class-conditional as the paper does it: G's latent is z concatenated with a linear embedding of the class; here
the latent holds z then the class weights (shared.imaging.latents.LatentLayout) and the basis's linear map reads
both, the embedding folded into it (the same maths). D projects: its last linear map gives an embedding whose
inner product with a learned embedding of the class is the logit (trainer.training.networks.heads.projected, with no
unconditional term).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.training.networks.heads import projected

LEAK = 0.2
ACTIVATION_GAIN = math.sqrt(2 / (1 + LEAK ** 2))  # keeps the variance through a leaky ReLU
EXPANSION = 2  # the inverted bottleneck's middle width, in multiples of the stage's width


def msr_init(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """N(0, gain^2 / fan_in) weights, as R3GAN initialises every layer (gain 0: a layer that starts at zero)."""
    if gain:
        nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(layer.weight[0].numel()))
    else:
        nn.init.zeros_(layer.weight)
    return layer


def conv(c_in: int, c_out: int, kernel: int, groups: int = 1, gain: float = 1.0, bias: bool = False) -> nn.Conv2d:
    """A convolution as R3GAN initialises it; `bias`: the bias its activation adds (zero at first), added by the
    convolution itself, which on a CPU costs nothing where a separate add would be a pass over the tensor."""
    layer = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=bias)
    if bias:
        nn.init.zeros_(layer.bias)
    return msr_init(layer, gain)


def act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAK)


class Block(nn.Module):
    """The inverted bottleneck with fix-up initialisation: `blocks` is how many the whole net has (L)."""

    def __init__(self, channels: int, groups: int, blocks: int) -> None:
        super().__init__()
        wide = channels * EXPANSION
        gain = ACTIVATION_GAIN * blocks ** (-1 / 4)  # L^(-1/(2m-2)) for m = 3 layers a block
        self.expand = conv(channels, wide, 1, gain=gain, bias=True)
        self.mix = conv(wide, wide, 3, groups=groups, gain=gain, bias=True)
        self.project = conv(wide, channels, 1, gain=0)  # the block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(act(self.mix(act(self.expand(x)))))


_TAPS = torch.tensor([1.0, 3.0, 3.0, 1.0])  # [1, 2, 1] convolved with the 2x step's box [1, 1]
_LOW_PASS = (_TAPS[:, None] * _TAPS[None, :] / 64).view(1, 1, 4, 4)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """2x up through the [1, 3, 3, 1] filter: exactly bilinear interpolation at half-pixel centres (each new pixel
    is 3/4 of its nearer neighbour and 1/4 of the farther, in each direction), edges repeated."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x down through the [1, 3, 3, 1] / 8 filter (zero padded): in each direction (x[2i-1] + 3 x[2i] + 3 x[2i+1]
    + x[2i+2]) / 8. In fp32 even under bf16 autocast: a CPU's depthwise convolutions are several times slower in
    bf16 (and this one has no weights to learn)."""
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return downsample(x.float()).to(x.dtype)
    c = x.shape[1]
    return F.conv2d(x, _LOW_PASS.to(x.device, x.dtype).expand(c, 1, 4, 4), stride=2, padding=1, groups=c)


class Resample(nn.Module):
    """2x up or down through the low-pass filter, with a 1x1 convolution where the width changes (before going up,
    after going down: at the lower resolution)."""

    def __init__(self, c_in: int, c_out: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.width = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample(self.width(x)) if self.up else self.width(downsample(x))


def stage_widths(features: int, size: int) -> list[int]:
    """Channels of each stage from 4x4 up to `size`: `features` throughout, halved for each doubling past 32x32
    (a 64x64 stage costs four times a 32x32 one at the same width)."""
    stages = size.bit_length() - 2  # 32: 4x4, 8, 16, 32; 64: one more
    return [features // 2 ** max(0, i - 3) for i in range(stages)]


class Generator(nn.Module):
    def __init__(self, latent_dim: int = 100, channels: int = 1, features: int = 64, size: int = 32,
                 depth: int = 1, groups: int = 8) -> None:
        super().__init__()
        widths = stage_widths(features, size)
        blocks = depth * len(widths)
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.fc = msr_init(nn.Linear(latent_dim, widths[0], bias=False))  # reads z and the class weights: SeFa's
        self.stages = nn.ModuleList(                                        # first layer
            nn.Sequential(*([Resample(w_in, w, up=True)] if i else []),
                          *(Block(w, groups_of(w, groups), blocks) for _ in range(depth)))
            for i, (w_in, w) in enumerate(zip([widths[0], *widths], widths)))
        self.out = conv(widths[-1], channels, 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.basis.to(latents.dtype) * self.fc(latents)[:, :, None, None]
        for stage in self.stages:
            x = stage(x)
        return self.out(x)


class Discriminator(nn.Module):
    def __init__(self, channels: int = 1, features: int = 64, size: int = 32, depth: int = 1, groups: int = 8,
                 classes: int = 0, embedding: int = 0) -> None:
        super().__init__()
        widths = stage_widths(features, size)[::-1]  # from the image's side down to 4x4
        blocks = depth * len(widths)
        self.classes = classes
        self.extract = conv(channels, widths[0], 1)
        self.stages = nn.Sequential(*(
            nn.Sequential(*(Block(w, groups_of(w, groups), blocks) for _ in range(depth)),
                          *([Resample(w, w_out, up=False)] if w_out else []))
            for w, w_out in zip(widths, [*widths[1:], 0])))
        self.basis = msr_init(nn.Conv2d(widths[-1], widths[-1], 4, groups=widths[-1], bias=False))
        embedding = embedding or widths[-1]
        self.fc = msr_init(nn.Linear(widths[-1], embedding if classes else 1, bias=False))
        if classes:  # the class's embedding, scaled as R3GAN's so that the logit starts near unit variance
            self.embed = msr_init(nn.Linear(classes, embedding, bias=False), gain=1 / math.sqrt(embedding))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, class_scores: bool = False):
        """Logits of images `x`; a conditional D also takes their classes `y` (one-hot rows), and with
        `class_scores` returns (logits, the projection's score of every class)."""
        h = self.fc(self.basis(self.stages(self.extract(x))).flatten(1))
        if not self.classes:
            return h.view(-1)
        return projected(torch.zeros_like(h[:, 0]), h, self, y, class_scores)


def groups_of(channels: int, groups: int) -> int:
    """The 3x3 convolution's groups in a block of `channels`: `groups`, or fewer where they would not divide the
    block's middle width (a narrow 64x64 stage)."""
    wide = channels * EXPANSION
    return math.gcd(wide, groups)
