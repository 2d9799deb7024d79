"""The training loop: the seed's recipe, resumable from a full state written after every epoch.

Recipe: Adam(lr 2e-4, betas 0.5/0.999) for both nets, BCE on logits, non-saturating generator loss
(G maximises log D(G(z))). Per iteration it records loss_D, loss_G, mean D(x) and mean D(G(z)).
The state file holds both nets, both optimizers, the epoch and step, the epoch's permutation, the
RNG states and the history, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from shared.atomic import atomic_write
from shared.devices import resolve_device
from shared.zoo import get_architecture
from trainer.config import TrainConfig
from trainer.data import load_training_images, to_model_range

STATE_FILE = "state.pt"
HISTORY_COLUMNS = ("loss_D", "loss_G", "D_x", "D_G_z")


@dataclass
class TrainResult:
    config: TrainConfig
    generator: nn.Module
    discriminator: nn.Module
    history: torch.Tensor  # (iterations, 4) float32 on the CPU, columns HISTORY_COLUMNS
    iterations_per_epoch: int
    num_images: int
    seconds: float  # training time summed over all sessions of this run
    device: str
    interrupted: bool = False
    published_version: int | None = None


class StopRequested:
    """Turns the first SIGINT/SIGTERM into a flag checked between iterations; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequested"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be handled on the main thread
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nstopping after this iteration and saving the training state (again to abort now)",
                  file=sys.stderr, flush=True)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def save_state(path: Path, state: dict) -> None:
    """Atomically (temp file, fsync, os.replace): a kill at any moment leaves the previous state intact."""
    with atomic_write(path) as f:
        torch.save(state, f)


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _adam(params, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    # fused Adam: one kernel for all parameters; small GANs on a GPU are launch-bound
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False, log: Callable[[str], None] = print,
          progress: bool | None = None) -> TrainResult:
    """Train to `cfg.epochs`, writing the full state to `run_dir/state.pt` after every epoch.

    With `resume`, an unfinished state in `run_dir` is continued (its saved settings win, except
    `epochs` and `device`). SIGINT/SIGTERM stop between iterations, save the state, and return a
    result with `interrupted=True`.
    """
    run_dir = Path(run_dir)
    state_path = run_dir / STATE_FILE
    saved = None
    if resume and state_path.exists():
        saved = load_state(state_path)
        old = TrainConfig.from_dict(saved["config"])
        if old.arch != cfg.arch:
            raise ValueError(f"{run_dir} holds a {old.arch} run, not {cfg.arch}: resume it with --arch {old.arch}, "
                             "or give this run another --run-dir or --name")
        finished = saved["epoch"] >= cfg.epochs and saved["step"] == 0
        if finished and saved.get("published_version") is not None:
            log(f"the run in {run_dir} is complete and was published as v{saved['published_version']}; "
                "starting a new run")
            saved = None
        else:
            old.epochs, old.device = cfg.epochs, cfg.device
            cfg = old
            log(f"resuming {run_dir} at epoch {saved['epoch'] + 1}, step {saved['step']} of {cfg.arch} "
                f"(settings from the saved state)")
    elif resume:
        log(f"nothing to resume in {run_dir}; starting a new run")

    device = resolve_device(cfg.device)
    arch = get_architecture(cfg.arch)
    data = load_training_images(cfg.dataset, cfg.data_dir, arch.image_size, arch.channels, cfg.limit,
                                log=log).to(device)
    n = data.shape[0]
    steps_per_epoch = -(-n // cfg.batch_size)

    torch.manual_seed(cfg.seed)
    G = arch.generator().to(device)
    D = arch.discriminator().to(device)
    opt_G = _adam(G.parameters(), cfg, device)
    opt_D = _adam(D.parameters(), cfg, device)
    epoch, step, perm, history, seconds = 0, 0, None, [], 0.0
    if saved is not None:
        G.load_state_dict(saved["G"])
        D.load_state_dict(saved["D"])
        opt_G.load_state_dict(saved["opt_G"])
        opt_D.load_state_dict(saved["opt_D"])
        epoch, step, perm, seconds = saved["epoch"], saved["step"], saved["perm"], saved["seconds"]
        history = [saved["history"]]
        _set_rng_state(saved["rng"], device)

    def snapshot() -> dict:
        return {
            "config": cfg.to_dict(), "epoch": epoch, "step": step, "perm": perm,
            "G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "rng": _rng_state(device), "history": torch.cat(history) if history else torch.zeros(0, 4),
            "seconds": seconds, "published_version": None,
        }

    if progress is None:
        progress = sys.stderr.isatty()
    G.train()
    D.train()
    stopper = StopRequested()
    interrupted = False
    with stopper.installed():
        while epoch < cfg.epochs and not interrupted:
            if perm is None:
                perm = torch.randperm(n)  # drawn on the CPU: the same order on every device
            perm_dev = perm.to(device)
            started = time.perf_counter()
            stats = []
            bar = _progress_bar(progress, epoch, cfg.epochs, steps_per_epoch, step)
            while step < steps_per_epoch:
                idx = perm_dev[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                stats.append(_train_step(G, D, opt_G, opt_D, to_model_range(data[idx]), arch.latent_dim))
                step += 1
                if bar is not None and (step % 10 == 0 or step == steps_per_epoch):
                    bar.update(step - bar.n)
                    bar.set_postfix(dict(zip(("D", "G", "D(x)", "D(G(z))"), stats[-1].tolist())), refresh=False)
                if stopper.requested:
                    interrupted = True
                    break
            if bar is not None:
                bar.close()
            seconds += time.perf_counter() - started
            if stats:
                history.append(torch.stack(stats).float().cpu())
            if not interrupted:
                epoch, step, perm = epoch + 1, 0, None
                ep = history[-1][-steps_per_epoch:] if history else torch.zeros(1, 4)
                means = ep.mean(0).tolist()
                log(f"epoch {epoch}/{cfg.epochs}  loss_D {means[0]:.3f}  loss_G {means[1]:.3f}  "
                    f"D(x) {means[2]:.3f}  D(G(z)) {means[3]:.3f}  {time.perf_counter() - started:.1f}s")
            save_state(state_path, snapshot())
    if interrupted:
        log(f"interrupted at epoch {epoch + 1}, step {step}; state saved to {state_path}; "
            "continue with the same command and --resume")
    return TrainResult(
        config=cfg, generator=G, discriminator=D,
        history=torch.cat(history) if history else torch.zeros(0, 4),
        iterations_per_epoch=steps_per_epoch, num_images=n, seconds=seconds, device=str(device),
        interrupted=interrupted,
    )


def mark_published(run_dir: Path, version: int) -> None:
    """Record in the state that the run was published, so a later --resume starts afresh."""
    path = Path(run_dir) / STATE_FILE
    state = load_state(path)
    state["published_version"] = version
    save_state(path, state)


def _train_step(G: nn.Module, D: nn.Module, opt_G, opt_D, real: torch.Tensor, latent_dim: int) -> torch.Tensor:
    b = real.shape[0]
    ones = torch.ones(b, device=real.device)
    zeros = torch.zeros(b, device=real.device)
    fake = G(torch.randn(b, latent_dim, device=real.device))

    d_real = D(real)
    d_fake = D(fake.detach())
    loss_D = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()

    loss_G = F.binary_cross_entropy_with_logits(D(fake), ones)  # non-saturating: G wants D(G(z)) -> 1
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    # one stacked tensor per step: no device sync here, the history is copied once per epoch
    return torch.stack([loss_D, loss_G, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean()]).detach()


def _progress_bar(enabled: bool, epoch: int, epochs: int, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="it",
                file=sys.stderr, dynamic_ncols=True, leave=True)
