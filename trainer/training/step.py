"""One training step: a discriminator update, then a generator update, then the generator's moving average.

The step is one function of static inputs (the real batch and the noise) that returns its statistics
as one device tensor: no host synchronisation and no data-dependent Python, so on CUDA it can be
captured whole in a CUDA graph and replayed with new data copied into the same buffers.
"""
from __future__ import annotations

from typing import Callable

import torch

from shared.imaging.pixels import to_model_range
from shared.imaging.precision import FP32, computing_in
from trainer.training.average import update_ema
from trainer.training.nets import Nets
from trainer.training.recipe import Recipe


def train_step(nets: Nets, recipe: Recipe, real: torch.Tensor, noise: torch.Tensor, precision: str = FP32,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """Update D on `real` and G(`noise`) (`recipe.d_steps` times, each on its own equal share of both), then G
    on the last share's fakes, then G's average; return the last (loss_D, loss_G, D's mean score on real
    images, on generated ones): probabilities for BCE, raw outputs for the hinge loss (trainer.training.state's
    HISTORY_COLUMNS).

    Both players see D's inputs through the recipe's augmentation. In `precision` bf16, the forward passes run
    under bfloat16 autocast; the weights, their gradients and the optimisers stay fp32.

    A conditional step has `labels`, the real images' classes as one-hot rows: G makes each fake in the class
    of a real image (so both sides have the data's classes), and D is told each image's class."""
    objective = recipe.objective
    shares = [s.tensor_split(recipe.d_steps) for s in (real, noise)]
    label_shares = labels.tensor_split(recipe.d_steps) if labels is not None else [None] * recipe.d_steps
    # lazy penalties: read the step count only when they are lazy (a host sync on CUDA; eager steps only)
    penalise = objective.penalty_every == 1 or int(nets.steps) % objective.penalty_every == 0
    for real_share, noise_share, y in zip(*shares, label_shares):
        fake, d_real, d_fake, loss_D = discriminator_update(nets, recipe, real_share, noise_share, precision, y,
                                                            penalise)

    with computing_in(precision, real.device):
        real_seen = recipe.d_input(real_share, nets.steps) if objective.adversarial.relativistic else None
        loss_G = objective.generator(nets.D_local, recipe.d_input(fake, nets.steps), y, real_seen)
    nets.opt_G.zero_grad(set_to_none=True)
    loss_G.backward()  # G's gradients are reduced by DDP(G)
    nets.opt_G.step()
    if nets.G_ema is not None:
        update_ema(nets.G_ema, nets.G_local, nets.ema_steps, recipe)
    nets.steps += 1
    score = objective.adversarial.score
    return torch.stack([loss_D.detach(), loss_G.detach(), score(d_real.detach().float()),
                        score(d_fake.detach().float())])


def discriminator_update(nets: Nets, recipe: Recipe, real: torch.Tensor, noise: torch.Tensor,
                         precision: str = FP32, labels: torch.Tensor | None = None,
                         penalise: bool = True) -> tuple[torch.Tensor, ...]:
    """One step of D's optimiser on `real` against G(`noise`) (of the same classes, `labels`, when conditional);
    returns the fakes (still attached to G), D's outputs on both, and its loss."""
    with computing_in(precision, real.device):
        fake = nets.G(noise if labels is None else torch.cat([noise, labels], 1))
        loss_D, d_real, d_fake = recipe.objective.discriminator(
            nets.D, nets.D_local, real, fake, labels, lambda images: recipe.d_input(images, nets.steps),
            nets.lecam_anchors, penalise)
    nets.opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    nets.opt_D.step()
    return fake, d_real, d_fake, loss_D


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (dataset indices, noise) -> the step's statistics


def eager_step(nets: Nets, recipe: Recipe, data: torch.Tensor, precision: str = FP32,
               labels: torch.Tensor | None = None) -> Step:
    """`train_step` on the dataset's rows `idx` (uint8, on the device) and `noise`; conditional with `labels`,
    the dataset's one-hot classes (N, classes) on the device (gathered, not computed: no host sync)."""
    if labels is None:
        return lambda idx, noise: train_step(nets, recipe, to_model_range(data[idx]), noise, precision)
    return lambda idx, noise: train_step(nets, recipe, to_model_range(data[idx]), noise, precision, labels[idx])
