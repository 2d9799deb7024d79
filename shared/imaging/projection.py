"""Projection: the latent whose image is closest to a picture (stylegan2-ada's `projector.py`, for these GANs).

The search starts from a first guess (the version's encoder's, or the mean latent) and refines it with Adam
on the latent through the frozen generator. The loss is the pixels' mean squared error plus a feature term:
the squared distance between the two images' features in the version's classifier (`classifier.pt`), the
FashionMNIST analogue of LPIPS's network features (and the space FID is measured in), which rewards the
right shape over a blurry average of it; a small prior keeps the latent near the shell where the generator's
latents live. As in stylegan2-ada, noise added to the latent in the first three quarters of the steps (from a
seeded stream: the same request gives the same answer) shakes it out of poor minima, and the learning rate
ramps up, then down. Every image's loss is its own sum, so a batch of pictures projects as each would alone.

`Projection` runs one step per `step()` call, so the service can interleave other work between them. In bf16
(`precision`) only the generator's forwards and their gradients run under autocast; losses and features stay fp32.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from shared.imaging.precision import FP32, computing_in

LR = 0.05
FEATURE_WEIGHT = 0.1  # as the encoder is trained with (trainer/publishing/encoder.py)
PRIOR_WEIGHT = 1e-3
NOISE = 0.5  # the latent's noise at the first step, relative to a unit Gaussian's
NOISE_UNTIL = 0.75  # share of the steps with noise
RAMP_UP, RAMP_DOWN = 0.05, 0.25  # shares of the steps the learning rate takes to rise and to fall

Features = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def searching() -> Iterator[None]:
    """Autograd on and inference mode off, whatever the caller set: a search needs the gradient through G."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@dataclass(frozen=True)
class Losses:
    """Per image (N,): the reconstruction's pixel error, feature error, and their weighted total."""

    pixel: torch.Tensor
    features: torch.Tensor
    total: torch.Tensor

    def of(self, i: int) -> dict[str, float]:
        return {"pixel": float(self.pixel[i]), "features": float(self.features[i]), "total": float(self.total[i])}


def losses(images: torch.Tensor, targets: torch.Tensor, target_features: torch.Tensor | None,
           features: Features | None) -> Losses:
    pixel = (images - targets).square().flatten(1).mean(1)
    if features is None or target_features is None:
        feats = torch.zeros_like(pixel)
    else:
        feats = (features(images) - target_features).square().flatten(1).mean(1)
    return Losses(pixel, feats, pixel + FEATURE_WEIGHT * feats)


class Projection:
    """The search for the latents of `targets` (N, C, H, W) in [-1, 1] from `start` (N, latent_dim), `steps` steps."""

    def __init__(self, generator: torch.nn.Module, targets: torch.Tensor, start: torch.Tensor, steps: int, seed: int,
                 features: Features | None = None, precision: str = FP32) -> None:
        self.generator, self.steps, self.features, self.precision = generator, steps, features, precision
        with searching():
            self.targets = targets.clone()  # an inference tensor of the caller's becomes a plain one
            with torch.no_grad():
                self.target_features = features(self.targets) if features is not None else None
            self.latents = start.detach().clone().requires_grad_(True)
            self.optimizer = torch.optim.Adam([self.latents], lr=LR, betas=(0.9, 0.999))
        self.noise = torch.Generator(device=targets.device).manual_seed(seed)
        self.done = 0
        self.start_losses = self.losses()

    def losses(self) -> Losses:
        with searching(), torch.no_grad():
            return losses(self.generate(self.latents), self.targets, self.target_features, self.features)

    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """G's images in the search's precision, as fp32 (the losses and the features are computed in fp32)."""
        with computing_in(self.precision, latents.device):
            return self.generator(latents).float()

    def step(self) -> None:
        t = self.done / max(1, self.steps)
        for group in self.optimizer.param_groups:  # stylegan2-ada's schedule: a ramp up, a cosine ramp down
            group["lr"] = LR * min(1.0, t / RAMP_UP) * (0.5 - 0.5 * math.cos(math.pi * min(1.0, (1 - t) / RAMP_DOWN)))
        noise = NOISE * max(0.0, 1 - t / NOISE_UNTIL) ** 2  # one draw for every picture: each searches as alone
        with searching():  # whatever mode the caller is in: the search needs the gradient through G
            shake = noise * torch.randn(1, self.latents.shape[1], device=self.latents.device, generator=self.noise)
            found = losses(self.generate(self.latents + shake), self.targets, self.target_features, self.features)
            prior = (self.latents.square().mean(1) - 1).square()  # |z|^2 / D near 1: the prior's shell
            loss = (found.total + PRIOR_WEIGHT * prior).sum()  # summed: each image's gradient is its own
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.done += 1

    def run(self) -> torch.Tensor:
        while self.done < self.steps:
            self.step()
        return self.latents.detach()


def mean_latent(n: int, latent_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Where a search starts without an encoder: the prior's mean."""
    return torch.zeros(n, latent_dim, device=device)


def pixel_psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of a mean squared error measured in [-1, 1] (a range of 2)."""
    return 10 * torch.log10(4 / mse.clamp(min=1e-12))



class WithClass(torch.nn.Module):
    """A class-conditional generator with each row's class held (`labels` (N,) of `classes`): z alone goes in,
    which is what a projection searches."""

    def __init__(self, generator: torch.nn.Module, labels: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.generator = generator
        self.one_hot = torch.nn.functional.one_hot(labels.long(), classes).float()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([z, self.one_hot.expand(len(z), -1).to(z.dtype)], 1))


def picture_classes(classifier: torch.nn.Module | None, targets: torch.Tensor, guesses: torch.Tensor,
                    classes: int) -> torch.Tensor:
    """The classes (N,) of pictures in [-1, 1] for a conditional search: the version's classifier's verdicts, else
    the class each encoder guess weighs most (its last `classes` numbers)."""
    if classifier is not None:
        return classifier(targets).argmax(1)
    return guesses[:, -classes:].argmax(1)
