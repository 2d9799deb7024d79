"""How the networks learn, apart from what they are: the loss, the optimisers and the stabilisers.

A `Recipe` is a loss, one optimiser factory per network, and the stabilisers the literature found to help
small GANs, each off in the study's recipe and each usable alone:

- an exponential moving average of G's weights (`ema`, Yazici et al. 2019), which is what gets published, its
  decay given directly or as a half-life in images that grows with the run (`ema_kimg`, as StyleGAN2-ADA);
- spectral normalisation of every conv and linear layer of D (`spectral_norm`, Miyato et al. 2018), beside D's
  BatchNorm; or in place of it (`d_norm="spectral"`, the D the evidence for it is about), or neither (`"none"`);
- the hinge loss instead of BCE (`loss`, Lim & Ye 2017; Miyato et al. 2018);
- separate learning rates for D and G (`lr_d`, `lr_g`: two time-scale updates, Heusel et al. 2017);
- differentiable augmentation of what D sees (`augment`, `augment_p`: DiffAugment, Zhao et al. 2020);
- an R1 gradient penalty on real images (`r1`, Mescheder et al. 2018);
- several discriminator updates per generator update (`d_steps`, as WGAN's n_critic: each on its own batch);
- Adam's first moment off (`beta1=0`, as SA-GAN and BigGAN train with two time scales);
- instance noise on D's inputs, annealed linearly to zero over the run (`instance_noise`, Sønderby et al. 2017;
  Arjovsky & Bottou 2017): early on the two distributions overlap, so D cannot separate them perfectly;
- LeCam regularisation of D's outputs towards moving anchors (`lecam`, Tseng et al. 2021).

`RECIPES` names presets of them per architecture: `seed` is the study's training, exactly, for every
architecture; `stable` is the best combination measured for each one. Flags override any component.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Protocol

import torch
import torch.nn.functional as F

from trainer.augment import DiffAugment, parse_policies
from trainer.config import TrainConfig


class GANLoss(Protocol):
    """Losses from the discriminator's logits. Implementations must not synchronise with the host
    (no `.item()`, no data-dependent Python branches): the training step may run in a CUDA graph."""

    name: str
    scores: str  # what `score` reports: "probability" (sigmoid of D's output) or "raw" (D's output itself)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor: ...

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor: ...

    def score(self, logits: torch.Tensor) -> torch.Tensor: ...


class NonSaturatingBCE:
    """The study's loss: D separates real (1) from fake (0) by BCE; G maximises log D(G(z))."""

    name, scores = "bce", "probability"

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits).mean()


class Hinge:
    """D: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))); G: -mean(D(G(z))). D's outputs are raw scores,
    not probabilities: above +1 confidently real, below -1 confidently fake."""

    name, scores = "hinge", "raw"

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean()


LOSSES: dict[str, type] = {"bce": NonSaturatingBCE, "hinge": Hinge}


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
class Components:
    """A recipe's settings as plain values: what the flags set, the presets name and the manifest records."""

    loss: str = "bce"
    lr_g: float | None = None  # None: --lr
    lr_d: float | None = None
    ema: float = 0.0  # decay of G's moving average; 0: none
    ema_warmup: bool = True  # decay min(ema, (1+t)/(10+t)) after t updates, so the average leaves G's start quickly
    ema_kimg: float = 0.0  # the average's half-life in thousands of images, at most 5% of the images seen; 0: --ema
    spectral_norm: bool = False
    d_norm: str = "batch"  # D's normalisation: batch (the study's), spectral (instead of BatchNorm), none
    augment: str = ""  # DiffAugment policies, comma-separated: translation, cutout
    augment_p: float = 1.0  # probability that an image is augmented
    r1: float = 0.0  # R1 penalty weight (gamma); 0: none
    d_steps: int = 1  # discriminator updates per generator update, each on its own batch
    beta1: float | None = None  # Adam's beta1 for both nets; None: the study's 0.5
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs at the start ([-1, 1] pixels), to 0 at the end
    lecam: float = 0.0  # weight of the LeCam regulariser; 0: none
    class_loss: float = 0.0  # conditional runs: weight of the auxiliary classification loss on D's class scores
    batch_size: int | None = None  # images per step (per process); None: the run's --batch-size, default 128
    precision: str | None = None  # fp32, bf16, or auto: bf16 where the device computes it natively; None: fp32


SEED = Components()  # the study: BCE, Adam 2e-4 for both, nothing else
# the best combination each architecture's ablation measured (benchmarks/ablation.py; the README's tables)
RECIPES: dict[str, dict[str, Components]] = {
    "seed": {"gan": SEED, "dcgan": SEED},
    # the plain GAN (40 epochs): EMA, spectral norm and R1 each helped, and a learning rate four times the seed's
    # on top of them more than halved the seed's FID (twice: 0.50x, four times: 0.45x); the hinge loss and two
    # time scales made it worse, DiffAugment cut its recall.
    # The DCGAN (5 epochs): none of those beat its seed recipe; batches of 32 (more steps) did on average over two
    # seeds, by less than the seed-to-seed noise (FID 0.98x, recall 1.4x). Over 10 epochs (20,000 images) neither
    # spectral norm instead of D's BatchNorm, the SN-GAN optimiser (hinge, beta1 0, two time scales) nor a half-life
    # EMA caught up with the seed recipe (1.03x to 1.18x its FID at their last readings).
    # In bf16 on a CPU's matrix units the DCGAN trains 1.32x faster, and its 5-epoch FID was 95.1 (seed 0) against
    # fp32's 100.5 and 101.2 (seeds 0 and 1; the seed recipe's two seeds differ by 4.2): no worse, so `stable` uses
    # bf16 where it is native. The plain GAN is slower in bf16 (0.75x) and stays fp32.
    # A conditional run conditions strongly only with the auxiliary class loss: at weight 1 class requests were
    # 98% right (93% for the worst class) against 87% (43%) without it for the DCGAN (5 epochs,
    # docs/conditional/class_loss.txt), 99% (97%) against 84% (60%) for the plain GAN, whose FID also fell from
    # 106 to 76 (10 epochs, docs/conditional/gan-class-loss.txt). It applies to conditional runs only.
    "stable": {"gan": Components(ema=0.999, spectral_norm=True, r1=1.0, lr_g=8e-4, lr_d=8e-4, class_loss=1.0),
               "dcgan": Components(batch_size=32, precision="auto", class_loss=1.0)},
}
COMPONENTS = tuple(f.name for f in fields(Components))
D_NORMS = ("batch", "spectral", "none")
EMA_RAMPUP = 0.05  # with ema_kimg: the half-life is at most this fraction of the images seen so far (StyleGAN2-ADA)
LECAM_DECAY = 0.99  # of the anchors, moving averages of D's mean output on real and on generated images


def preset(name: str, arch: str) -> Components:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name][arch]


def recipe_settings(name: str, arch: str, conditional: bool = False, **overrides: Any) -> dict[str, Any]:
    """The preset's components for the architecture, with every override that is not None: the TrainConfig
    fields of a run. A component neither sets (None) is left out: the TrainConfig's default stands. A preset's
    class loss is for conditional runs: an unconditional one has no class scores to train."""
    chosen = preset(name, arch)
    if not conditional:
        chosen = replace(chosen, class_loss=0.0)
    settings = {k: overrides[k] if overrides.get(k) is not None else getattr(chosen, k) for k in COMPONENTS}
    return {"recipe": name, **{k: v for k, v in settings.items() if v is not None}}


@dataclass(frozen=True)
class Recipe:
    name: str
    loss: GANLoss
    optimizer_G: OptimizerFactory
    optimizer_D: OptimizerFactory
    ema: float = 0.0
    ema_warmup: bool = True
    ema_kimg: float = 0.0
    images_per_step: int = 128  # images each generator update trains on (all processes): the half-life's unit
    spectral_norm: bool = False
    d_norm: str = "batch"
    augment: DiffAugment | None = None
    r1: float = 0.0
    d_steps: int = 1
    instance_noise: float = 0.0
    noise_steps: int = 1  # generator updates over which the instance noise falls to zero: the whole run
    lecam: float = 0.0
    class_loss: float = 0.0

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
    return Recipe(cfg.recipe, LOSSES[cfg.loss](), optimizer_G=Adam(cfg.lr_g or cfg.lr, betas),
                  optimizer_D=Adam(cfg.lr_d or cfg.lr, betas), ema=cfg.ema, ema_warmup=cfg.ema_warmup,
                  ema_kimg=cfg.ema_kimg, images_per_step=cfg.batch_size * cfg.world_size,
                  spectral_norm=cfg.spectral_norm, d_norm=cfg.d_norm,
                  augment=DiffAugment(policies, cfg.augment_p) if policies else None, r1=cfg.r1, d_steps=cfg.d_steps,
                  instance_noise=cfg.instance_noise, noise_steps=max(1, total_steps), lecam=cfg.lecam,
                  class_loss=cfg.class_loss)


def describe(cfg: TrainConfig) -> dict[str, Any]:
    """The manifest's `recipe`: its name and every component's setting, learning rates resolved."""
    return {"name": cfg.recipe, **{k: getattr(cfg, k) for k in COMPONENTS},
            "lr_g": cfg.lr_g or cfg.lr, "lr_d": cfg.lr_d or cfg.lr, "d_scores": LOSSES[cfg.loss].scores}
