"""An encoder E (image -> latent) for a trained generator, published with its version as `encoder.pt`.

E learns, against the frozen generator G that is about to be published, the way the inversion literature
trains one (Zhu et al. 2020, "In-domain GAN inversion"): a latent loss on G's own samples (E(G(z)) should
be z) and a reconstruction loss on real images through G (G(E(x)) should be x, in pixels and in the
classifier's features, the same terms `shared.imaging.projection` refines with). It takes a fixed number of
steps (`--encoder-steps`; about a fifth of the DCGAN's five epochs on a 2-core CPU), each drawing its noise
and its real images from a generator seeded by (seed, step), so a run interrupted anywhere and resumed from
its last checkpoint (every 250 steps or a quarter of the run, and on Ctrl-C, in the run directory's `encoder.pt`)
ends with exactly
the same encoder. The service starts its projections from E's guess.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from shared.imaging.pixels import to_model_range
from shared.imaging.precision import computing_in
from trainer.training.architectures import Architecture
from trainer.training.config import TrainConfig
from trainer.training.data import load_training_images
from trainer.training.interrupt import StopRequested
from trainer.training.phases import Phase
from trainer.training.state import ENCODER_STATE as STATE_FILE
from trainer.training.state import save_checkpoint

CHECKPOINT_EVERY = 250  # steps; and at least four times a run
BATCH = 64
LR = 5e-4
FEATURE_WEIGHT = 0.1  # the classifier's features against the pixels (both squared errors, per element)


class Encoder(nn.Module):
    """(N, C, S, S) images in [-1, 1], S = 28 or 32, to (N, latent_dim) latents: three strided convolutions."""

    def __init__(self, channels: int = 1, latent_dim: int = 100) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 3, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128 * 4, latent_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@dataclass
class EncoderResult:
    encoder: nn.Module | None  # in eval mode; None when interrupted
    steps: int
    seconds: float
    losses: dict[str, float]  # moving averages at the end: latent, pixel, features
    interrupted: bool = False

    def record(self, export_max_abs_diff: float) -> dict:
        """How the encoder was fitted, for the version's manifest."""
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "losses": self.losses, "batch_size": BATCH,
                "lr": LR, "feature_weight": FEATURE_WEIGHT, "export_max_abs_diff": export_max_abs_diff}


def features_of(dataset: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The feature network of the reconstruction loss: the project's classifier for FashionMNIST, else none."""
    if dataset != "fashion-mnist":
        return None
    from trainer.evaluation.fashion_classifier import load_classifier, to_input_size

    net = load_classifier(device).requires_grad_(False)
    return lambda x: net.features(to_input_size(x))


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The random stream of one step: its noise and its real images depend on the seed and the step alone."""
    return torch.Generator(device=device).manual_seed(((seed + 1) * 2_654_435_761 + step) % 2**63)


def fit_encoder(generator: nn.Module, cfg: TrainConfig, run_dir: Path, arch: Architecture, device: torch.device,
                log: Callable[[str], None] = print, progress: bool | None = None) -> EncoderResult:
    """Train (or resume, or load when done) the encoder of `generator` (kept frozen, of `arch`) for
    cfg.encoder_steps. A conditional generator's encoder guesses the class weights at the end of the latent too."""
    path = Path(run_dir) / STATE_FILE
    torch.manual_seed(cfg.seed)
    E = Encoder(arch.channels, arch.layout.width).to(device)
    optimizer = torch.optim.Adam(E.parameters(), lr=LR)
    step, seconds, losses = 0, 0.0, None  # losses: a moving average of (latent, pixel, features)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        E.load_state_dict(saved["encoder"])
        optimizer.load_state_dict(saved["optimizer"])
        step, seconds, losses = saved["step"], saved["seconds"], saved["losses"]
        if step < cfg.encoder_steps:
            log(f"resuming the encoder at step {step} of {cfg.encoder_steps}")
    G = copy.deepcopy(generator).to(device).eval().requires_grad_(False)
    data = load_training_images(cfg.dataset, cfg.data_dir, arch.image_size, arch.channels, cfg.limit,
                                log=lambda m: None).to(device)
    features = features_of(cfg.dataset, device)
    E.train()
    stop = StopRequested()
    every = max(1, min(CHECKPOINT_EVERY, cfg.encoder_steps // 4))
    started = time.perf_counter()
    with stop.installed(), Phase("encoder", cfg.encoder_steps, progress, log, unit="step", initial=step) as phase:
        while step < cfg.encoder_steps and not stop.requested:
            g = step_generator(cfg.seed, step, device)
            z = arch.layout.random(BATCH, device, g)
            real = to_model_range(data[torch.randint(len(data), (BATCH,), device=device, generator=g)])
            with computing_in(cfg.precision, device):  # the losses are taken in fp32
                with torch.no_grad():
                    fake = G(z)
                latent_loss = F.mse_loss(E(fake).float(), z)
                rebuilt = G(E(real)).float()
                pixel_loss = F.mse_loss(rebuilt, real)
                feature_loss = (F.mse_loss(features(rebuilt).float(), features(real).float()) if features
                                else torch.zeros((), device=device))
            optimizer.zero_grad(set_to_none=True)
            (latent_loss + pixel_loss + FEATURE_WEIGHT * feature_loss).backward()
            optimizer.step()
            now = torch.stack([latent_loss, pixel_loss, feature_loss]).detach().cpu()
            losses = now if losses is None else 0.98 * losses + 0.02 * now
            step += 1
            phase.advance()
            if step % every == 0 or step == cfg.encoder_steps or stop.requested:
                seconds += time.perf_counter() - started
                started = time.perf_counter()
                _save(path, E, optimizer, step, seconds, losses)
                if phase.bar is None:  # without a bar, the checkpoints are the progress
                    log(f"encoder step {step}/{cfg.encoder_steps}: latent {losses[0]:.4f}, pixels {losses[1]:.4f}, "
                        f"features {losses[2]:.4f}")
        phase.detail = f"{step}/{cfg.encoder_steps} steps in {cfg.precision}"
    if step < cfg.encoder_steps:
        log(f"interrupted at encoder step {step}; saved to {path}; continue with the same command and --resume")
        return EncoderResult(None, step, seconds, {}, interrupted=True)
    named = dict(zip(("latent", "pixel", "features"), losses.tolist())) if losses is not None else {}
    return EncoderResult(E.eval(), step, seconds, named)


def _save(path: Path, E: nn.Module, optimizer: torch.optim.Optimizer, step: int, seconds: float,
          losses: torch.Tensor) -> None:
    save_checkpoint(path, {"encoder": E.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                           "seconds": seconds, "losses": losses}, "the encoder's state")

