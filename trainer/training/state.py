"""A run's training state: everything needed to continue it exactly, saved atomically after every epoch.

`state.pt` holds the settings, the progress (epoch, step within it, the epoch's permutation), both nets
and both optimisers, the RNG states, the per-step history and the training seconds so far. A run that
was published gets a small `published` marker beside it instead of a rewrite of the state.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from shared.errors import WriteFailed
from shared.store.atomic import atomic_write, remove_leftovers
from trainer.training.config import ConfigError, TrainConfig
from trainer.training.nets import Nets

# what every training step records, in this order: the history's columns everywhere (state, CSV, figures, manifest)
HISTORY_COLUMNS = ("loss_D", "loss_G", "D_x", "D_G_z")
STATE_FILE = "state.pt"
WEIGHTS = ("G", "D", "opt_G", "opt_D", "G_ema", "ema_steps", "steps", "lecam_anchors")
PUBLISHED_MARKER = "published"
ENCODER_STATE = "encoder.pt"  # trainer.publishing.encoder's checkpoint


def _empty_history() -> torch.Tensor:
    return torch.zeros(0, len(HISTORY_COLUMNS))


def save_checkpoint(path: Path, data: dict, what: str) -> None:
    """torch.save, atomically: a kill at any moment leaves the previous file. Serialised in memory first, since
    torch.save into a file on a full disk fails with an unreadable RuntimeError."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    remove_leftovers(path)  # one run, one writer: no other save of this file can be under way
    try:
        with atomic_write(path) as f:
            f.write(buffer.getbuffer())
    except OSError as e:
        raise WriteFailed(f"could not save {what} to {path}: {e.strerror or e}; the previous state is intact: free "
                          "some space and run the same command with --resume") from e


@dataclass
class TrainingState:
    config: TrainConfig
    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in the current epoch
    perm: torch.Tensor | None = None  # the current epoch's image order (None: draw one at the epoch's start)
    history: torch.Tensor = field(default_factory=_empty_history)  # (steps, len(HISTORY_COLUMNS)) on the CPU
    seconds: float = 0.0
    weights: dict[str, Any] = field(default_factory=dict)  # state dicts: G, D, opt_G, opt_D (+ G_ema, ema_steps)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    quality: list[dict[str, Any]] = field(default_factory=list)  # the measurements of --eval-every, by epoch

    def finished(self) -> bool:
        return (self.epoch >= self.config.epochs and self.step == 0) or self.out_of_minutes()

    def out_of_minutes(self) -> bool:
        """Whether the run's time budget (--minutes) is spent."""
        return self.config.minutes is not None and self.seconds >= self.config.minutes * 60

    # ------------------------------------------------------------------ live objects <-> state
    def capture(self, nets: Nets, device: torch.device) -> None:
        """Take the nets' weights and the RNG states as they are now."""
        self.weights = {"G": nets.G_local.state_dict(), "D": nets.D_local.state_dict(),
                        "opt_G": nets.opt_G.state_dict(), "opt_D": nets.opt_D.state_dict(),
                        "steps": nets.steps.detach().cpu().clone(), "lecam_anchors": nets.lecam_anchors.detach().cpu().clone()}
        if nets.G_ema is not None:
            self.weights |= {"G_ema": nets.G_ema.state_dict(), "ema_steps": nets.ema_steps.detach().cpu().clone()}
        self.rng = {"cpu": torch.get_rng_state()}
        if device.type == "cuda":
            self.rng["cuda"] = torch.cuda.get_rng_state(device)

    def restore(self, nets: Nets, device: torch.device) -> None:
        """Load the saved weights into `nets` and continue the saved random streams."""
        nets.G_local.load_state_dict(self.weights["G"])
        nets.D_local.load_state_dict(self.weights["D"])
        nets.opt_G.load_state_dict(self.weights["opt_G"])
        nets.opt_D.load_state_dict(self.weights["opt_D"])
        if nets.G_ema is not None:
            nets.G_ema.load_state_dict(self.weights["G_ema"])
            nets.ema_steps.copy_(self.weights["ema_steps"])
        for name in ("steps", "lecam_anchors"):  # states saved before these existed start them at zero
            if name in self.weights:
                getattr(nets, name).copy_(self.weights[name])
        torch.set_rng_state(self.rng["cpu"])
        if device.type == "cuda" and "cuda" in self.rng:
            torch.cuda.set_rng_state(self.rng["cuda"], device)

    # ------------------------------------------------------------------ the file
    def save(self, path: Path) -> None:
        """Atomically (temp file, fsync, os.replace): a kill at any moment leaves the previous state intact,
        and a full disk too, with a one-line WriteFailed. What a killed save left behind goes first."""
        data = {"config": self.config.to_dict(), "epoch": self.epoch, "step": self.step, "perm": self.perm,
                "history": self.history, "seconds": self.seconds, "rng": self.rng, "quality": self.quality,
                **self.weights}
        save_checkpoint(path, data, "the training state")

    @classmethod
    def load(cls, path: Path) -> "TrainingState":
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(config=TrainConfig.from_dict(data["config"]), epoch=data["epoch"], step=data["step"],
                   perm=data["perm"], history=data["history"], seconds=data["seconds"],
                   weights={k: data[k] for k in WEIGHTS if k in data}, rng=data["rng"],
                   quality=data.get("quality", []))


# ---------------------------------------------------------------------- published marker
def mark_published(run_dir: Path, version: int) -> None:
    """Record that the run in `run_dir` was published, so a later --resume starts afresh."""
    with atomic_write(Path(run_dir) / PUBLISHED_MARKER, "w") as f:
        f.write(f"{version}\n")


def published_version(run_dir: Path) -> int | None:
    try:
        return int((Path(run_dir) / PUBLISHED_MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return None


def clear_published(run_dir: Path) -> None:
    """A new run in `run_dir`: not published, and no encoder of an earlier run's generator to resume."""
    for name in (PUBLISHED_MARKER, ENCODER_STATE):
        with contextlib.suppress(FileNotFoundError):
            (Path(run_dir) / name).unlink()


# ---------------------------------------------------------------------- resume
def resume_or_start(cfg: TrainConfig, run_dir: Path, resume: bool,
                    log: Callable[[str], None] = print) -> tuple[TrainConfig, TrainingState | None]:
    """The settings to train with and the state to continue from (None: a new run).

    With `resume`, an unfinished run in `run_dir` is continued with its saved settings, except `epochs`,
    `minutes`, `device`, `world_size` (the number of torchrun processes) and `cuda_graphs`, which come from `cfg`
    (how the steps run, not what they compute). A finished run that was published starts afresh.
    Raises ConfigError when the saved run is of another architecture.
    """
    path = Path(run_dir) / STATE_FILE
    if not resume:
        return cfg, None
    if not path.exists():
        log(f"nothing to resume in {run_dir}; starting a new run")
        return cfg, None
    saved = TrainingState.load(path)
    if saved.config.arch != cfg.arch:
        raise ConfigError(f"{run_dir} holds a {saved.config.arch} run, not {cfg.arch}: resume it with --arch "
                         f"{saved.config.arch}, or give this run another --run-dir or --name")
    if saved.config.world_size != cfg.world_size and saved.step:
        # steps count global batches, whose size changes with the number of ranks: re-shard from the start
        # of the interrupted epoch (its order is saved), dropping the partial epoch's history
        log(f"{run_dir} was interrupted mid-epoch with {saved.config.world_size} process(es), resumed with "
            f"{cfg.world_size}: epoch {saved.epoch + 1} starts again from its first step")
        saved.history = saved.history[:len(saved.history) - saved.step]
        saved.step = 0
    saved.config = replace(saved.config, epochs=cfg.epochs, minutes=cfg.minutes, device=cfg.device,
                           world_size=cfg.world_size, cuda_graphs=cfg.cuda_graphs)
    published = published_version(run_dir)
    if saved.finished() and published is not None:
        log(f"the run in {run_dir} is complete and was published as v{published}; starting a new run")
        return cfg, None
    log(f"resuming {run_dir} at epoch {saved.epoch + 1}, step {saved.step} of {saved.config.arch} "
        "(settings from the saved state)")
    return saved.config, saved
