"""How the networks learn, apart from what they are: the objective, the optimisers and the stabilisers, built
from a run's settings (declared, with the presets that name combinations of them, in trainer.training.settings).

The stabilisers are those the literature found to help small GANs, each off in the study's recipe and each
usable alone:
- an exponential moving average of G's weights (`ema`, Yazici et al. 2019), which is what gets published, its
  decay given directly or as a half-life in images that grows with the run (`ema_kimg`, as StyleGAN2-ADA);
- spectral normalisation of every conv and linear layer of D (`spectral_norm`, Miyato et al. 2018), beside D's
  BatchNorm; or in place of it (`d_norm="spectral"`, the D the evidence for it is about), or neither (`"none"`);
- the hinge loss instead of BCE (`loss`, Lim & Ye 2017; Miyato et al. 2018);
- separate learning rates for D and G (`lr_d`, `lr_g`: two time-scale updates, Heusel et al. 2017);
- differentiable augmentation of what D sees (`augment`, `augment_p`: DiffAugment, Zhao et al. 2020);
- an R1 gradient penalty on real images (`r1`, Mescheder et al. 2018), and R2 on generated ones (`r2`: R3GAN
  uses both, with the relativistic loss `loss="rpgan"`), either every step or every K steps K times as strong
  (`penalty_every`: StyleGAN2's lazy regularisation);
- several discriminator updates per generator update (`d_steps`, as WGAN's n_critic: each on its own batch);
- Adam's first moment off (`beta1=0`, as SA-GAN and BigGAN train with two time scales);
- instance noise on D's inputs, annealed linearly to zero over the run (`instance_noise`, Sønderby et al. 2017;
  Arjovsky & Bottou 2017): early on the two distributions overlap, so D cannot separate them perfectly;
- LeCam regularisation of D's outputs towards moving anchors (`lecam`, Tseng et al. 2021).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import torch

from trainer.training import settings
from trainer.training.augment import DiffAugment, parse_policies
from trainer.training.config import TrainConfig
from trainer.training.losses import LOSSES, Objective

EMA_RAMPUP = 0.05  # with ema_kimg: the half-life is at most this fraction of the images seen so far (StyleGAN2-ADA)


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
        # fused Adam: one kernel for all parameters; small GANs are launch-bound on a GPU, and on a CPU the plain
        # GAN's loop over its parameters was a tenth of its step (docs/results/training.md)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, fused=device.type in ("cuda", "cpu"),
                                capturable=capturable)


@dataclass(frozen=True)
class Recipe:
    name: str
    objective: Objective
    optimizer_G: OptimizerFactory
    optimizer_D: OptimizerFactory
    ema: float = 0.0
    ema_warmup: bool = True
    ema_kimg: float = 0.0
    images_per_step: int = 128  # images each generator update trains on (all processes): the half-life's unit
    spectral_norm: bool = False
    d_norm: str = "batch"
    augment: DiffAugment | None = None
    d_steps: int = 1
    instance_noise: float = 0.0
    noise_steps: int = 1  # generator updates over which the instance noise falls to zero: the whole run

    @property
    def keeps_average(self) -> bool:
        return bool(self.ema or self.ema_kimg)

    def d_input(self, images: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """What D sees of `images` after `steps` generator updates: the augmentation, then the instance noise.
        Tensor arithmetic only (no host sync): it runs inside the captured step."""
        out = images if self.augment is None else self.augment(images)
        if self.instance_noise:
            std = self.instance_noise * torch.clamp(1 - steps / self.noise_steps, min=0)
            out = out + std.to(out.dtype) * torch.randn_like(out)
        return out

    def ema_decay(self, steps: torch.Tensor) -> torch.Tensor:
        """The average's decay for its update after `steps` updates: from the half-life (`ema_kimg`, ramped up
        with the images seen), else `ema`, warmed up as min(ema, (1+t)/(10+t)) or not."""
        if self.ema_kimg:
            half_life = torch.clamp((steps + 1) * self.images_per_step * EMA_RAMPUP, max=self.ema_kimg * 1000)
            return 0.5 ** (self.images_per_step / half_life)
        if self.ema_warmup:
            return torch.clamp((1 + steps) / (10 + steps), max=self.ema)
        return torch.full_like(steps, self.ema)


def build_recipe(cfg: TrainConfig, total_steps: int = 1) -> Recipe:
    """The recipe of `cfg`, for a run of `total_steps` generator updates (the instance noise's schedule)."""
    betas = (cfg.beta1, cfg.beta2)
    policies = parse_policies(cfg.augment)
    objective = Objective(LOSSES[cfg.loss](), r1=cfg.r1, r2=cfg.r2, penalty_every=cfg.penalty_every, lecam=cfg.lecam, class_loss=cfg.class_loss)
    return Recipe(cfg.recipe, objective, optimizer_G=Adam(cfg.lr_g or cfg.lr, betas),
                  optimizer_D=Adam(cfg.lr_d or cfg.lr, betas), ema=cfg.ema, ema_warmup=cfg.ema_warmup,
                  ema_kimg=cfg.ema_kimg, images_per_step=cfg.batch_size * cfg.world_size,
                  spectral_norm=cfg.spectral_norm, d_norm=cfg.d_norm,
                  augment=DiffAugment(policies, cfg.augment_p) if policies else None, d_steps=cfg.d_steps,
                  instance_noise=cfg.instance_noise, noise_steps=max(1, total_steps))


def describe(cfg: TrainConfig) -> dict[str, Any]:
    """The manifest's `recipe`: its name and every setting's value, learning rates resolved."""
    return {"name": cfg.recipe, **{s.name: getattr(cfg, s.name) for s in settings.RECIPE_SETTINGS},
            "lr_g": cfg.lr_g or cfg.lr, "lr_d": cfg.lr_d or cfg.lr, "d_scores": LOSSES[cfg.loss].scores,
            **({"source": cfg.recipe_source} if cfg.recipe_source else {})}
