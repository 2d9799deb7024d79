"""The moving average of G's weights that a recipe may publish instead of G, and the BatchNorm statistics it
needs of its own before it is used."""
from __future__ import annotations

import copy

import torch
from torch import nn

from shared.imaging.latents import LatentLayout
from trainer.training.nets import Nets
from trainer.training.recipe import Recipe


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
def standing_statistics(G: nn.Module, layout: LatentLayout, batch_size: int, device: torch.device | str) -> nn.Module:
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
        G(layout.random(batch_size, device, generator))
    for m in G.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    return G.eval()


def published_generator(nets: Nets, layout: LatentLayout, batch_size: int, device: torch.device) -> nn.Module:
    """What a run publishes and measures: G's moving average with its own BatchNorm statistics, or G itself."""
    if nets.G_ema is None:
        return nets.G_local
    return standing_statistics(nets.G_ema, layout, batch_size, device)
