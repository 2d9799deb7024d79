"""The two networks of a run with their optimisers, their moving average and the step counters, as one
object; and spectral normalisation, put on D for training and baked into the plain D that gets published."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from trainer.training.architectures import Architecture
from trainer.training.recipe import Recipe


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
        a CPU (docs/results/training.md: training in bf16); the MLPs' 2-D weights are left as they are."""
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
