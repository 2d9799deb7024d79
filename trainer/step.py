"""One training step: a discriminator update, then a generator update, then the generator's moving average.

The step is one function of static inputs (the real batch and the noise) that returns its statistics
as one device tensor: no host synchronisation and no data-dependent Python, so on CUDA it can be
captured whole in a CUDA graph and replayed with new data copied into the same buffers.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from shared.imaging.pixels import to_model_range
from trainer.architectures import Architecture
from trainer.recipe import LECAM_DECAY, Recipe

# what every step records, in this order: the history's columns everywhere (state, CSV, figures, manifest)
HISTORY_COLUMNS = ("loss_D", "loss_G", "D_x", "D_G_z")


@dataclass
class Nets:
    """The two networks and their optimisers. Under torchrun, `G` and `D` are DistributedDataParallel
    wrappers of `G_local` and `D_local`; in a single process they are the same modules."""

    G: nn.Module
    D: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    G_local: nn.Module
    D_local: nn.Module
    G_ema: nn.Module | None = None  # the moving average of G's weights (recipe.ema), what gets published
    ema_steps: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # updates so far, on the device
    steps: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # generator updates so far, on the device
    lecam_anchors: torch.Tensor = field(default_factory=lambda: torch.zeros(2))  # D's mean output: real, generated

    @classmethod
    def build(cls, arch: Architecture, recipe: Recipe, device: torch.device, data_parallel: bool = False,
              capturable: bool = False, channels_last: bool = False) -> "Nets":
        """Fresh networks; G is initialised before D, so a seed gives the same weights every time.

        With `data_parallel`, both are wrapped in DDP. BatchNorm is not synchronised: each rank normalises
        its own shard, as a single process normalises its batch (the study's nets are small, per-rank
        batches are large enough, and SyncBatchNorm would add a collective to every layer of every step).

        `channels_last` lays the convolution weights out NHWC, where oneDNN's bf16 convolutions run fastest on
        a CPU (a DCGAN step at batch 32 on AVX512-BF16: 1.17x); the MLPs' 2-D weights are left as they are."""
        G = arch.generator().to(device)
        D = arch.discriminator(batch_norm=recipe.d_norm == "batch").to(device)
        if channels_last:
            G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        if recipe.spectral_norm or recipe.d_norm == "spectral":
            add_spectral_norm(D)
        opt_G = recipe.optimizer_G(G.parameters(), device, capturable=capturable)
        opt_D = recipe.optimizer_D(D.parameters(), device, capturable=capturable)
        G_ema = copy.deepcopy(G).requires_grad_(False) if recipe.keeps_average else None
        extra = {"G_ema": G_ema, "ema_steps": torch.zeros((), device=device), "steps": torch.zeros((), device=device),
                 "lecam_anchors": torch.zeros(2, device=device)}
        if not data_parallel:
            return cls(G, D, opt_G, opt_D, G, D, **extra)
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return cls(DDP(G, device_ids=ids), DDP(D, device_ids=ids), opt_G, opt_D, G, D, **extra)

    def train(self) -> None:
        self.G.train()
        self.D.train()


def add_spectral_norm(D: nn.Module) -> nn.Module:
    """Spectral normalisation on every conv and linear layer of D (in place). The parameters stay the same in
    number (each weight becomes `parametrizations.weight.original`); the power iteration's u and v are buffers."""
    for module in list(D.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            spectral_norm(module)
    return D


@torch.no_grad()
def without_parametrizations(module: nn.Module, plain: nn.Module) -> nn.Module:
    """`plain` (the same architecture, unparametrised) given `module`'s effective weights, spectral norm
    baked in: what gets exported. `module` is left as it was (torch's remove_parametrizations on a copy
    would break the original, whose class the copy shares)."""
    training = module.training
    module.eval()  # reading a normalised weight in training mode would run a power iteration
    state = {k: v for k, v in module.state_dict().items() if ".parametrizations." not in f".{k}"}
    for name, m in module.named_modules():
        if parametrize.is_parametrized(m):
            for tensor in m.parametrizations:
                state[f"{name}.{tensor}" if name else tensor] = getattr(m, tensor).detach().clone()
    module.train(training)
    plain.load_state_dict(state)
    return plain


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, steps: torch.Tensor, recipe: Recipe) -> None:
    """ema <- d * ema + (1 - d) * G, with the recipe's decay d after `steps` updates (`Recipe.ema_decay`: a
    warm-up lets the average leave G's random initialisation quickly). Buffers (BatchNorm statistics) are
    copied; `standing_statistics` gives the average its own before it is used. Tensor arithmetic only (no host
    sync): it runs inside the captured step."""
    d = recipe.ema_decay(steps)
    for average, live in zip(G_ema.parameters(), G.parameters()):
        average.lerp_(live, 1 - d)
    for average, live in zip(G_ema.buffers(), G.buffers()):
        average.copy_(live)
    steps += 1


STANDING_BATCHES, STANDING_SEED = 64, 1234


@torch.no_grad()
def standing_statistics(G: nn.Module, latent_dim: int, batch_size: int, device: torch.device | str,
                        classes: int = 0) -> nn.Module:
    """A copy of G whose BatchNorm layers hold G's own activation statistics (BigGAN's "standing statistics"),
    in eval mode. A moving average of G's weights carries the live G's BatchNorm statistics, which belong to
    other weights: normalised with them, the average's images come out wrong. Averaged over 64 batches of
    fixed noise (and classes, for a conditional G), so the result is the same every time. G without BatchNorm
    is returned as it is."""
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return G
    G = copy.deepcopy(G)
    for m in G.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
    G.train()
    generator = torch.Generator(device=device).manual_seed(STANDING_SEED)
    for _ in range(STANDING_BATCHES):
        G(random_latents(batch_size, latent_dim, classes, device, generator))
    for m in G.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    return G.eval()


def random_latents(count: int, latent_dim: int, classes: int, device: torch.device | str,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` inputs of G from torch's RNG: N(0, 1) latents, their last `classes` columns the one-hot of a
    uniformly drawn class when G is conditional."""
    z = torch.randn(count, latent_dim - classes, device=device, generator=generator)
    if not classes:
        return z
    labels = torch.randint(classes, (count,), device=device, generator=generator)
    return torch.cat([z, F.one_hot(labels, classes).to(z.dtype)], 1)


def train_step(nets: Nets, recipe: Recipe, real: torch.Tensor, noise: torch.Tensor,
               autocast: torch.dtype | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Update D on `real` and G(`noise`) (`recipe.d_steps` times, each on its own equal share of both), then G
    on the last share's fakes, then G's average; return the last (loss_D, loss_G, D's mean score on real
    images, on generated ones): probabilities for BCE, raw outputs for the hinge loss.

    Both players see D's inputs through the recipe's augmentation. With `autocast` (torch.bfloat16), the
    forward passes run in that precision; the weights, their gradients and the optimisers stay fp32. The
    cast cache is off: inside a CUDA graph it must be.

    A conditional step has `labels`, the real images' classes as one-hot rows: G makes each fake in the class
    of a real image (so both sides have the data's classes), and D is told each image's class."""
    loss, device_type = recipe.loss, real.device.type
    shares = [s.tensor_split(recipe.d_steps) for s in (real, noise)]
    label_shares = labels.tensor_split(recipe.d_steps) if labels is not None else [None] * recipe.d_steps
    for real_share, noise_share, y in zip(*shares, label_shares):
        fake, d_real, d_fake, loss_D = discriminator_update(nets, recipe, real_share, noise_share, autocast, y)

    with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None,
                        cache_enabled=False):
        # D's gradients here are discarded; G's are reduced by DDP(G)
        d_out, class_loss = judged(nets.D_local, recipe, recipe.d_input(fake, nets.steps), y)
        loss_G = loss.generator(d_out.float()) + class_loss
    nets.opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    nets.opt_G.step()
    if nets.G_ema is not None:
        update_ema(nets.G_ema, nets.G_local, nets.ema_steps, recipe)
    nets.steps += 1
    return torch.stack([loss_D.detach(), loss_G.detach(), loss.score(d_real.detach().float()),
                        loss.score(d_fake.detach().float())])


def _given(labels: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """D's arguments after the images: the classes, for a conditional D."""
    return () if labels is None else (labels,)


def judged(D: nn.Module, recipe: Recipe, images: torch.Tensor,
           labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | float]:
    """D's logits on `images` (of the classes `labels`, when conditional), and the recipe's auxiliary
    classification loss on them: class_loss x cross-entropy of D's class scores against the classes (one-hot
    rows as target probabilities: no host sync); 0 where the recipe has none."""
    if not (recipe.class_loss and labels is not None):
        return D(images, *_given(labels)), 0.0
    logits, scores = D(images, labels, class_scores=True)
    return logits, recipe.class_loss * F.cross_entropy(scores.float(), labels.float())


def discriminator_update(nets: Nets, recipe: Recipe, real: torch.Tensor, noise: torch.Tensor,
                         autocast: torch.dtype | None, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """One step of D's optimiser on `real` against G(`noise`) (of the same classes, `labels`, when conditional);
    returns the fakes (still attached to G), D's outputs on both, and its loss."""
    loss, device_type = recipe.loss, real.device.type
    if recipe.r1:
        real = real.detach().requires_grad_(True)
    with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None,
                        cache_enabled=False):
        fake = nets.G(noise if labels is None else torch.cat([noise, labels], 1))
        # D learns to classify the real images only (fakes would teach it G's mistakes: TAC-GAN's argument)
        d_real, class_loss = judged(nets.D, recipe, recipe.d_input(real, nets.steps), labels)  # through DDP when
        d_fake = nets.D_local(recipe.d_input(fake.detach(), nets.steps), *_given(labels))  # distributed: this
        #                                                      backward all-reduces D's gradients once, for both
        loss_D = loss.discriminator(d_real.float(), d_fake.float()) + class_loss
    if recipe.lecam:
        loss_D = loss_D + recipe.lecam * lecam_penalty(d_real.float(), d_fake.float(), nets.lecam_anchors)
    if recipe.r1:  # gamma/2 * E|grad_x D(x)|^2 on real images
        (grad,) = torch.autograd.grad(d_real.float().sum(), real, create_graph=True)
        loss_D = loss_D + recipe.r1 / 2 * grad.square().flatten(1).sum(1).mean()
    nets.opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    nets.opt_D.step()
    return fake, d_real, d_fake, loss_D


def lecam_penalty(d_real: torch.Tensor, d_fake: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """LeCam (Tseng et al. 2021, as PyTorch-StudioGAN computes it): mean(relu(D(x) - a_fake)^2) +
    mean(relu(a_real - D(G(z)))^2), with a_real, a_fake moving averages of D's mean outputs (updated in place
    first). It keeps D's outputs on each side from drifting past the other side's usual value."""
    anchors.lerp_(torch.stack([d_real.detach().mean(), d_fake.detach().mean()]), 1 - LECAM_DECAY)
    return F.relu(d_real - anchors[1]).square().mean() + F.relu(anchors[0] - d_fake).square().mean()


def published_generator(nets: Nets, latent_dim: int, batch_size: int, device: torch.device,
                        classes: int = 0) -> nn.Module:
    """What a run publishes and measures: G's moving average with its own BatchNorm statistics, or G itself."""
    if nets.G_ema is None:
        return nets.G_local
    return standing_statistics(nets.G_ema, latent_dim, batch_size, device, classes)


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (dataset indices, noise) -> the step's statistics


def eager_step(nets: Nets, recipe: Recipe, data: torch.Tensor, autocast: torch.dtype | None = None,
               labels: torch.Tensor | None = None) -> Step:
    """`train_step` on the dataset's rows `idx` (uint8, on the device) and `noise`; conditional with `labels`,
    the dataset's one-hot classes (N, classes) on the device (gathered, not computed: no host sync)."""
    if labels is None:
        return lambda idx, noise: train_step(nets, recipe, to_model_range(data[idx]), noise, autocast)
    return lambda idx, noise: train_step(nets, recipe, to_model_range(data[idx]), noise, autocast, labels[idx])
