"""The whole training step as one CUDA graph: on a GPU the study's nets are a few hundred small kernel
launches a step, and launching, not arithmetic, sets the pace; a replay launches them all at once.

The graph reads static buffers: the batch's indices into the dataset (already on the device) and the
noise. Both are drawn exactly as the eager loop draws them and copied in before each replay, so a
graphed run takes the eager run's steps (up to floating-point non-determinism). The first steps of a
session run eagerly on a side stream (TorchScript-free nets, but cuDNN and the allocator settle
there), then the step is captured, with capturable Adam, once per shape; a partial last batch runs
eagerly. Anything failing at capture falls back to the eager step, with a warning.
"""
from __future__ import annotations

import logging

import torch

from shared.imaging.precision import FP32
from trainer.training.nets import Nets
from trainer.training.recipe import Recipe
from trainer.training.step import eager_step

log = logging.getLogger("latentlab.trainer")

WARMUP_STEPS = 3


class GraphedStep:
    """Calls like `train_step` on (dataset, indices, noise); replays a captured graph for full batches."""

    def __init__(self, nets: Nets, recipe: Recipe, data: torch.Tensor, batch_size: int, latent_dim: int,
                 precision: str = FP32, labels: torch.Tensor | None = None) -> None:
        self.eager = eager_step(nets, recipe, data, precision, labels)
        self.batch_size = batch_size
        device = data.device
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.noise = torch.zeros(batch_size, latent_dim, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stats: torch.Tensor | None = None
        self.warmup_left = WARMUP_STEPS
        self.failed = False
        self.side = torch.cuda.Stream(device)

    def __call__(self, idx: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if len(idx) != self.batch_size or self.failed:
            return self.eager(idx, noise)  # the last partial batch of an epoch, or no graph to be had
        if self.graph is None and self.warmup_left > 0:
            self.warmup_left -= 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                stats = self.eager(idx, noise)
            torch.cuda.current_stream().wait_stream(self.side)
            return stats
        self.idx.copy_(idx)
        self.noise.copy_(noise)
        if self.graph is None and not self._capture():
            return self.eager(idx, noise)
        self.graph.replay()
        return self.stats.clone()  # the static output is overwritten by the next replay

    def _capture(self) -> bool:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.stats = self.eager(self.idx, self.noise)
        except Exception as e:  # an optimisation, never a reason to stop training
            log.warning("capturing the training step in a CUDA graph failed; training eagerly: %s", e)
            self.failed = True
            return False
        self.graph = graph
        return True
