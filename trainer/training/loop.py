"""The training loop: epochs of `train_step` over data held on the device, saved after every epoch.

`train` sets up (data, nets, recipe, state) and runs `run_epoch` until the configured number of
epochs is done or a stop is requested; the state is written after every epoch and on a stop, so a
resumed run continues exactly where it stopped (bit-identical on the CPU).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from shared.imaging.devices import resolve_device
from shared.imaging.precision import BF16, resolve_precision
from trainer.training.architectures import Architecture, get_architecture, run_architecture
from trainer.training.average import published_generator
from trainer.training.board import Board
from trainer.training.budget import with_budget
from trainer.training.config import ConfigError, TrainConfig
from trainer.training.data import load_training_set
from trainer.training.distributed import Ranks, any_rank, barrier, device_for, mean_over_ranks, shard
from trainer.training.graphed import GraphedStep
from trainer.training.interrupt import StopRequested
from trainer.training.nets import Nets
from trainer.training.recipe import Recipe, build_recipe
from trainer.training.state import HISTORY_COLUMNS, STATE_FILE, TrainingState, clear_published, resume_or_start
from trainer.training.step import Step, eager_step


@dataclass
class TrainResult:
    config: TrainConfig
    generator: nn.Module  # what gets published: G's moving average when the recipe keeps one, else G
    discriminator: nn.Module
    history: torch.Tensor  # (steps, len(HISTORY_COLUMNS)) float32 on the CPU
    quality: list[dict]  # what --eval-every measured, epoch by epoch
    iterations_per_epoch: int
    num_images: int
    seconds: float  # training time summed over all sessions of this run
    device: str
    interrupted: bool = False
    world_size: int = 1  # torchrun processes; the global batch is world_size x config.batch_size
    cuda_graphs: bool = False  # whether full batches ran as a captured CUDA graph


def steps_per_epoch(num_images: int, batch_size: int, ranks: Ranks = Ranks(), d_steps: int = 1) -> int:
    """Steps in an epoch, each taking d_steps global batches (one per update of D); a last partial step runs if
    every rank gets at least one image for each of them."""
    full, rest = divmod(num_images, batch_size * ranks.world_size * d_steps)
    return full + (1 if rest >= ranks.world_size * d_steps else 0)


def use_cuda_graphs(setting: str, device: torch.device, ranks: Ranks) -> bool:
    """--cuda-graphs: auto is on for a single CUDA process; on where impossible is a ConfigError (exit 2)."""
    if setting == "on" and device.type != "cuda":
        raise ConfigError(f"--cuda-graphs on needs a CUDA device, and this run is on {device}; use auto or off")
    if setting == "on" and ranks.distributed:
        raise ConfigError("--cuda-graphs on does not work under torchrun (DDP's gradient hooks are not "
                         "captured); use auto or off")
    return setting != "off" and device.type == "cuda" and not ranks.distributed


def run_epoch(step: Step, data: torch.Tensor, state: TrainingState, latent_dim: int, stop: StopRequested,
              ranks: Ranks = Ranks(), on_step: Callable[[int, torch.Tensor], None] | None = None,
              until: float = math.inf, schedule: Callable[[float], None] | None = None) -> bool:
    """Train from `state.step` to the end of the epoch (or until a stop, or the step in which `time.perf_counter()`
    passes `until`); advance `state` and append to its history. Returns True when the epoch is complete.
    `schedule` is told the run's progress (`progress`) before each step.

    The order and the noise are drawn for the whole global batch on every rank (see trainer.training.distributed),
    and each rank trains on its shard of both."""
    global_batch = state.config.batch_size * ranks.world_size * state.config.d_steps
    steps = steps_per_epoch(data.shape[0], state.config.batch_size, ranks, state.config.d_steps)
    if state.perm is None:
        state.perm = torch.randperm(data.shape[0])  # drawn on the CPU: the same order on every device
    order = state.perm.to(data.device)
    stats = []
    while state.step < steps and not any_rank(stop.requested or time.perf_counter() >= until, ranks):
        idx = order[state.step * global_batch:(state.step + 1) * global_batch]
        mine = shard(len(idx), ranks)
        noise = torch.randn(len(idx), latent_dim, device=data.device)[mine]
        if schedule is not None:
            schedule(progress(state, steps, until))
        stats.append(step(idx[mine], noise))
        state.step += 1
        if on_step is not None:
            on_step(state.step, stats[-1])
    if stats:  # one device-to-host copy per epoch, not one per step
        state.history = torch.cat([state.history, mean_over_ranks(torch.stack(stats).float().cpu(), ranks)])
    if state.step < steps:
        return False
    state.epoch, state.step, state.perm = state.epoch + 1, 0, None
    return True


def progress(state: TrainingState, steps: int, until: float = math.inf) -> float:
    """How far through its run `state` is, from 0 to 1: its steps of all its epochs, or (--minutes) its training
    time of the budget (`until`: when the budget runs out), whichever is further."""
    cfg = state.config
    done = (state.epoch * steps + state.step) / (cfg.epochs * steps)
    if cfg.minutes is None:
        return done
    return max(done, 1 - (until - time.perf_counter()) / (cfg.minutes * 60))


def lr_schedule(nets: Nets, recipe: Recipe, decay: float) -> Callable[[float], None]:
    """Sets both optimisers' learning rates for a point of the run (`progress`): the recipe's, falling linearly to
    zero over the last `decay` of the run (--lr-decay)."""
    rates = [(nets.opt_G, recipe.optimizer_G.lr), (nets.opt_D, recipe.optimizer_D.lr)]

    def at(progress: float) -> None:
        scale = min(1.0, max(0.0, (1 - progress) / decay))
        for optimiser, lr in rates:
            for group in optimiser.param_groups:
                group["lr"] = lr * scale
    return at


@dataclass(frozen=True)
class Settled:
    """A run with everything resolved (`resolve`), before anything trains."""

    config: TrainConfig  # as trained (a resumed run's): shape, classes, post-training budget and precision set
    state: TrainingState | None  # the saved state a resumed run continues from; None: a new run
    device: torch.device
    images: torch.Tensor  # the training set, uint8 on the device
    labels: torch.Tensor | None  # a conditional run's classes as one-hot rows on the device, gathered by each step
    arch: Architecture
    steps_per_epoch: int
    cuda_graphs: bool
    channels_last: bool


def resolve(asked: TrainConfig, run_dir: Path, resume: bool = False, ranks: Ranks = Ranks(),
            log: Callable[[str], None] = print) -> Settled:
    """The one way from the run a command asked for to the run that trains: with `resume`, the saved run's settings
    and state (trainer.training.state.resume_or_start); then the data loaded, and every setting left to the data,
    the device and the ranks resolved (the image shape and classes, the precision `auto` means here, the work after
    training: trainer.training.budget) into one frozen config. Refuses (ConfigError) what cannot run here."""
    cfg, state = resume_or_start(asked, run_dir, resume, log)
    device = device_for(ranks, resolve_device(cfg.device))
    size = get_architecture(cfg.arch).at(cfg.channels, cfg.image_size, cfg.features).image_size  # refused now if bad
    training_set = load_training_set(cfg.dataset, cfg.data_dir, size, cfg.channels, cfg.limit, log=log)
    images = training_set.images.to(device)
    cfg = with_budget(dataclasses.replace(  # auto's precision resolved here: recorded as what the run trained in
        cfg, channels=images.shape[1], image_size=size, precision=resolve_precision(cfg.precision, device),
        class_names=list(training_set.classes) if cfg.conditional else []), images.shape[0])
    if (cfg.r1 or cfg.r2) and ranks.distributed:
        raise ConfigError("the R1 and R2 penalties (--r1, --r2, part of --recipe stable) do not work under torchrun: "
                          "their double backward does not pass through DDP; add --r1 0 --r2 0, or train in one process")
    if cfg.penalty_every > 1 and use_cuda_graphs(cfg.cuda_graphs, device, ranks) and (cfg.r1 or cfg.r2):
        raise ConfigError("--penalty-every above 1 needs eager steps (a captured graph takes the same path every "
                          "step): add --cuda-graphs off, or --penalty-every 1")
    if cfg.lr_decay and cfg.minutes is not None and ranks.distributed:
        raise ConfigError("--lr-decay with --minutes needs one process (each rank's clock would set its own rate); "
                          "under torchrun, train for --epochs, or add --lr-decay 0")
    cuda_graphs = use_cuda_graphs(cfg.cuda_graphs, device, ranks)
    if cuda_graphs and cfg.lr_decay:  # a captured optimiser step keeps the rate it was captured with
        if cfg.cuda_graphs == "on":
            raise ConfigError("--lr-decay changes the learning rate every step, which a captured CUDA graph cannot: "
                              "add --cuda-graphs off (or auto), or --lr-decay 0")
        log("--lr-decay: training in eager steps, not a CUDA graph (a captured step keeps one learning rate)")
        cuda_graphs = False
    if cfg.d_steps > 1 and ranks.distributed:
        raise ConfigError("--d-steps above 1 does not work under torchrun (a step's batches would be sharded "
                          "differently from one process's); use --d-steps 1, or train in one process")
    arch = run_architecture(cfg)
    return Settled(
        config=cfg, state=state, device=device, images=images, arch=arch,
        labels=torch.eye(arch.classes, device=device)[training_set.labels.to(device)] if arch.classes else None,
        steps_per_epoch=steps_per_epoch(images.shape[0], cfg.batch_size, ranks, cfg.d_steps),
        cuda_graphs=cuda_graphs,
        # bf16 on NHWC weights; fp32 keeps the study's layout, so its runs stay bit-identical to the study's step
        channels_last=cfg.precision == BF16 if cfg.channels_last is None else cfg.channels_last)


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False, log: Callable[[str], None] = print,
          progress: bool | None = None, ranks: Ranks = Ranks(), tensorboard: str | Path | None = None) -> TrainResult:
    """Train the run `cfg` asks for to its epochs (with `resume`, continuing the unfinished run in `run_dir`),
    writing the state to `run_dir/state.pt` after every epoch. SIGINT/SIGTERM stop between steps, save the state,
    and return a result with `interrupted=True`. Under torchrun, every rank calls this; rank 0 writes the state.
    `tensorboard`: a directory for TensorBoard events (rank 0's statistics; see trainer.training.board).
    The result's `config` is the resolved one (`resolve`): what was trained."""
    run_dir = Path(run_dir)
    run = resolve(cfg, run_dir, resume, ranks, log)
    cfg, device, steps, state = run.config, run.device, run.steps_per_epoch, run.state

    # Construct the networks, or restore them from the saved state.
    torch.manual_seed(cfg.seed)
    recipe = build_recipe(cfg, total_steps=cfg.epochs * steps)
    nets = Nets.build(run.arch, recipe, device, data_parallel=ranks.distributed, capturable=run.cuda_graphs,
                      channels_last=run.channels_last)
    if state is None:
        state = TrainingState(cfg)
        if ranks.is_main:
            clear_published(run_dir)  # a new run in this directory is not published yet
    else:
        state.restore(nets, device)
    nets.train()

    # The step: one captured CUDA graph, or eager.
    if run.cuda_graphs:
        step = GraphedStep(nets, recipe, run.images, cfg.batch_size * cfg.d_steps, run.arch.latent_dim,
                           cfg.precision, run.labels)
    else:
        step = eager_step(nets, recipe, run.images, cfg.precision, run.labels)

    # Train epoch by epoch, saving the state after each.
    schedule = lr_schedule(nets, recipe, cfg.lr_decay) if cfg.lr_decay else None
    board = _open_board(tensorboard, cfg, state, steps) if ranks.is_main else None
    show_bar = (sys.stderr.isatty() if progress is None else progress) and ranks.is_main
    stop = StopRequested(abort_on_second=not ranks.distributed)
    # (with --minutes: until the step in which the budget is spent, counting training only, across resumes)
    with stop.installed():
        while state.epoch < cfg.epochs and not state.out_of_minutes():
            if not _epoch(run, step, schedule, nets, state, stop, ranks, run_dir, board, show_bar, log):
                break
    if state.out_of_minutes() and not stop.requested:
        log(f"{cfg.minutes:g} minutes of training spent at epoch {state.epoch + (state.step > 0)}, step "
            f"{state.epoch * steps + state.step}")
    interrupted = stop.requested or (state.epoch < cfg.epochs and not state.out_of_minutes())
    if board is not None:
        board.close()
    if interrupted:
        log(f"interrupted at epoch {state.epoch + 1}, step {state.step}; state saved to {run_dir / STATE_FILE}; "
            "continue with the same command and --resume")

    return TrainResult(
        config=cfg, generator=published_generator(nets, run.arch.layout, cfg.batch_size, device),
        discriminator=nets.D_local, history=state.history, quality=state.quality,
        iterations_per_epoch=steps, num_images=run.images.shape[0], seconds=state.seconds, device=str(device),
        interrupted=interrupted, world_size=ranks.world_size, cuda_graphs=run.cuda_graphs,
    )


def _open_board(tensorboard: str | Path | None, cfg: TrainConfig, state: TrainingState, steps: int) -> Board | None:
    if tensorboard is None:
        return None
    board = Board(tensorboard, steps, state.epoch * steps + state.step)
    if state.epoch == state.step == 0:
        board.config(cfg, 0)
    return board


def _epoch(run: Settled, step: Step, schedule: Callable[[float], None] | None, nets: Nets, state: TrainingState,
           stop: StopRequested, ranks: Ranks, run_dir: Path, board: Board | None, show_bar: bool, log: Callable[[str], None]) -> bool:
    """One epoch (or its rest, or as much as the time budget leaves), then its measurements, TensorBoard's samples
    and the saved state. False when a stop or the budget cut it short."""
    cfg, arch, steps = run.config, run.arch, run.steps_per_epoch
    started = time.perf_counter()
    until = math.inf if cfg.minutes is None else started + cfg.minutes * 60 - state.seconds  # what is left of it
    with _ProgressBar(show_bar, state, steps) as bar:
        on_step = bar.update if board is None else _both(bar.update, board, state.epoch)
        complete = run_epoch(step, run.images, state, arch.latent_dim, stop, ranks, on_step, until, schedule)
    state.seconds += time.perf_counter() - started
    if complete and cfg.eval_every and state.epoch % cfg.eval_every == 0 and ranks.is_main:
        state.quality.append(measure_epoch(nets, cfg, run.device, state.epoch, state.seconds, log))
        if board is not None:
            board.metrics(state.quality[-1], board.at(state.epoch))
    if complete and board is not None:
        board.samples(published_generator(nets, arch.layout, cfg.batch_size, run.device), arch.layout,
                      board.at(state.epoch), run.device)
    if ranks.is_main:
        state.capture(nets, run.device)
        state.save(run_dir / STATE_FILE)
    barrier(ranks)  # nobody runs ahead of the saved state
    if complete:
        means = state.history[-steps:].mean(0).tolist()
        log(f"epoch {state.epoch}" + ("" if cfg.minutes else f"/{cfg.epochs}") + "  " + "  ".join(f"{c} {v:.3f}" for c, v in zip(HISTORY_COLUMNS, means))
            + f"  {time.perf_counter() - started:.1f}s")
    return complete


_evaluators: dict[tuple, object] = {}  # one per device and data: the classifier and the test set, loaded once


def measure_epoch(nets: Nets, cfg: TrainConfig, device: torch.device, epoch: int, train_seconds: float,
                  log: Callable[[str], None]) -> dict:
    """--eval-every: the metrics of what would be published now, with the epoch and the training seconds (not
    counting measurements) they belong to: FID against time, what a user with a fixed budget gets."""
    from trainer.evaluation.evaluator import Evaluator  # the classifier and its weights: only when asked for

    key = (str(device), cfg.data_dir, cfg.dataset, cfg.channels, cfg.image_size)
    if key not in _evaluators:
        _evaluators[key] = Evaluator(device, cfg.data_dir, cfg.dataset, (cfg.channels, cfg.image_size, cfg.image_size))
    arch = run_architecture(cfg)
    generator = copy.deepcopy(published_generator(nets, arch.layout, cfg.batch_size, device)).eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training's stream untouched
        record = _evaluators[key].measure(generator, arch.layout, cfg.eval_samples, precision=cfg.precision)
    kept = {k: record[k] for k in ("fid", "kid", "precision", "recall", "class_entropy", "mean_confidence", "swd",
                                   "seconds") if k in record}
    classified = (f"FID {kept['fid']:.2f}, recall {kept['recall']:.3f}, class entropy {kept['class_entropy']:.3f}, "
                  if "fid" in kept else "")
    log(f"epoch {epoch}: {classified}SWD {kept['swd']:.2f} ({cfg.eval_samples} samples, {kept['seconds']:.0f}s)")
    return {"epoch": epoch, **kept, "train_seconds": round(train_seconds, 3)}


def _both(bar_update: Callable[[int, torch.Tensor], None], board: Board, epoch: int):
    """The progress bar's and TensorBoard's step callback in one."""
    def on_step(step: int, stats: torch.Tensor) -> None:
        bar_update(step, stats)
        board.stats(board.at(epoch, step), stats)
    return on_step


class _ProgressBar:
    """A tqdm bar for one epoch with the live losses, on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, state: TrainingState, steps: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, initial=state.step, desc=f"epoch {state.epoch + 1}/{state.config.epochs}",
                            unit="it", file=sys.stderr, dynamic_ncols=True, leave=True)
        self.steps = steps

    def update(self, step: int, stats: torch.Tensor) -> None:
        if self.bar is not None and (step % 10 == 0 or step == self.steps):  # .tolist() syncs: not every step
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(dict(zip(HISTORY_COLUMNS, stats.tolist())), refresh=False)

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
