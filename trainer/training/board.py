"""--tensorboard DIR: the run's curves, samples and numbers as TensorBoard events, while it trains.

Losses and D's outputs every LOG_EVERY steps, the fixed latents' samples every epoch, the run's settings as
text at its start, --eval-every's measurements as they come and the published version's at the end. Steps are
counted over the whole run (epoch x steps per epoch + step), so a resumed run appends to the same curves: the
writer is opened with `purge_step` just past the step the run resumes from, which hides anything a killed
session logged past its last saved state. The settings are written once, when the run starts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.imaging.sampling import generate
from trainer.training.state import HISTORY_COLUMNS

LOG_EVERY = 10  # steps between scalar points: one host sync each on a GPU
SAMPLE_SEED, SAMPLE_COUNT = 0, 64  # the same latents every epoch: watch them take shape
TAGS = {"loss_D": "loss/D", "loss_G": "loss/G", "D_x": "D/real (D(x))", "D_G_z": "D/fake (D(G(z)))"}
METRICS = ("fid", "kid", "precision", "recall", "class_entropy", "swd")


class Board:
    """One run's TensorBoard writer. `at` converts (epoch, step in epoch) to the run's global step."""

    def __init__(self, log_dir: str | Path, steps_per_epoch: int, start_step: int):
        from torch.utils.tensorboard import SummaryWriter  # tensorboard is imported only when asked for

        self.steps_per_epoch = steps_per_epoch
        # what a session logged after the state it resumes from was saved is hidden (the saved step itself is kept)
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None)

    def at(self, epoch: int, step: int = 0) -> int:
        return epoch * self.steps_per_epoch + step

    def config(self, config, step: int) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in dataclasses.asdict(config).items())
        self.writer.add_text("config", "| setting | value |\n|---|---|\n" + rows, step)

    def stats(self, step: int, stats: torch.Tensor) -> None:
        """One step's statistics (HISTORY_COLUMNS), kept every LOG_EVERY steps and at every epoch's end (so a run
        shorter than LOG_EVERY steps still has its curve)."""
        if step % LOG_EVERY and step % self.steps_per_epoch:
            return
        for column, value in zip(HISTORY_COLUMNS, stats.tolist()):
            self.writer.add_scalar(TAGS[column], value, step)

    def samples(self, generator: torch.nn.Module, layout: LatentLayout, step: int, device: torch.device) -> None:
        latents = layout.seeded(SAMPLE_SEED, SAMPLE_COUNT)
        training = generator.training
        generator.eval()  # the live G in train mode would use (and update) batch statistics
        try:
            images = to_uint8(generate(generator, latents, device)).cpu()
        finally:
            generator.train(training)
        self.writer.add_images("samples", images, step, dataformats="NCHW")
        self.writer.flush()

    def metrics(self, record: dict, step: int, prefix: str = "quality") -> None:
        for key in METRICS:
            if record.get(key) is not None:
                self.writer.add_scalar(f"{prefix}/{key}", record[key], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
