"""How the networks learn: the loss and the optimisers, behind small interfaces a recipe can replace.

A `Recipe` is a loss plus one optimiser factory per network. The study's recipe (`seed_recipe`) is
BCE on logits with the non-saturating generator loss and Adam(lr 2e-4, betas 0.5/0.999) for both
nets; other recipes swap any part without touching the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import torch
import torch.nn.functional as F

from trainer.config import TrainConfig


class GANLoss(Protocol):
    """Losses from the discriminator's logits. Implementations must not synchronise with the host
    (no `.item()`, no data-dependent Python branches): the training step may run in a CUDA graph."""

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor: ...

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor: ...


class NonSaturatingBCE:
    """The study's loss: D separates real (1) from fake (0) by BCE; G maximises log D(G(z))."""

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class OptimizerFactory(Protocol):
    """Builds one network's optimiser. `capturable`: its step will run inside a CUDA graph."""

    def __call__(self, params: Iterable[torch.nn.Parameter], device: torch.device,
                 capturable: bool = False) -> torch.optim.Optimizer: ...


@dataclass(frozen=True)
class Adam:
    lr: float
    betas: tuple[float, float]

    def __call__(self, params: Iterable[torch.nn.Parameter], device: torch.device,
                 capturable: bool = False) -> torch.optim.Optimizer:
        # fused Adam on CUDA: one kernel for all parameters; small GANs on a GPU are launch-bound
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, fused=device.type == "cuda",
                                capturable=capturable)


@dataclass(frozen=True)
class Recipe:
    name: str
    loss: GANLoss
    optimizer_G: OptimizerFactory
    optimizer_D: OptimizerFactory


def seed_recipe(cfg: TrainConfig) -> Recipe:
    adam = Adam(cfg.lr, (cfg.beta1, cfg.beta2))
    return Recipe("seed", NonSaturatingBCE(), optimizer_G=adam, optimizer_D=adam)
