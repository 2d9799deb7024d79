"""One training step: a discriminator update, then a generator update.

The step is one function of static inputs (the real batch and the noise) that returns its statistics
as one device tensor: no host synchronisation and no data-dependent Python, so on CUDA it can be
captured whole in a CUDA graph and replayed with new data copied into the same buffers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from shared.imaging.pixels import to_model_range
from trainer.architectures import Architecture
from trainer.recipe import GANLoss, Recipe

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

    @classmethod
    def build(cls, arch: Architecture, recipe: Recipe, device: torch.device, data_parallel: bool = False,
              capturable: bool = False) -> "Nets":
        """Fresh networks; G is initialised before D, so a seed gives the same weights every time.

        With `data_parallel`, both are wrapped in DDP. BatchNorm is not synchronised: each rank normalises
        its own shard, as a single process normalises its batch (the study's nets are small, per-rank
        batches are large enough, and SyncBatchNorm would add a collective to every layer of every step)."""
        G = arch.generator().to(device)
        D = arch.discriminator().to(device)
        opt_G = recipe.optimizer_G(G.parameters(), device, capturable=capturable)
        opt_D = recipe.optimizer_D(D.parameters(), device, capturable=capturable)
        if not data_parallel:
            return cls(G, D, opt_G, opt_D, G, D)
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return cls(DDP(G, device_ids=ids), DDP(D, device_ids=ids), opt_G, opt_D, G, D)

    def train(self) -> None:
        self.G.train()
        self.D.train()


def train_step(nets: Nets, loss: GANLoss, real: torch.Tensor, noise: torch.Tensor,
               autocast: torch.dtype | None = None) -> torch.Tensor:
    """Update D on `real` and G(`noise`), then G; return (loss_D, loss_G, mean D(x), mean D(G(z))).

    With `autocast` (torch.bfloat16), the forward passes run in that precision; the weights, their
    gradients and the optimisers stay fp32. The cast cache is off: inside a CUDA graph it must be."""
    device_type = real.device.type
    with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None,
                        cache_enabled=False):
        fake = nets.G(noise)
        d_real = nets.D(real)  # through DDP when distributed: this backward all-reduces D's gradients, once,
        d_fake = nets.D_local(fake.detach())  # for both terms (the same parameters, one backward)
        loss_D = loss.discriminator(d_real.float(), d_fake.float())
    nets.opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    nets.opt_D.step()

    with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None,
                        cache_enabled=False):
        # D's gradients here are discarded; G's are reduced by DDP(G)
        loss_G = loss.generator(nets.D_local(fake).float())
    nets.opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    nets.opt_G.step()
    return torch.stack([loss_D, loss_G, torch.sigmoid(d_real.float()).mean(),
                        torch.sigmoid(d_fake.float()).mean()]).detach()


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (dataset indices, noise) -> the step's statistics


def eager_step(nets: Nets, loss: GANLoss, data: torch.Tensor, autocast: torch.dtype | None = None) -> Step:
    """`train_step` on the dataset's rows `idx` (uint8, on the device) and `noise`."""
    return lambda idx, noise: train_step(nets, loss, to_model_range(data[idx]), noise, autocast)
