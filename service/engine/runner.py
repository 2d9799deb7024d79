"""Running a generator on a batch of latents, quantised to uint8 on its own device.

On the CPU the TorchScript module runs eagerly. On CUDA the forward and the quantisation are captured
in one CUDA graph per batch-size bucket (powers of two up to the largest batch): a batch is padded up to
its bucket and the graph replayed, with the latents and the images passing through pinned host memory.
Small generators on a GPU are bound by kernel launches, which a replay removes. A bucket whose capture
fails runs eagerly, and so does everything when CUDA_GRAPHS is off.

In bf16 on CUDA the forward runs under autocast, captured with it. On the CPU it runs a copy of the generator
whose weights are bfloat16: autocast would cast every weight again on every call, which on a CPU with matrix
units costs a third of a one-image forward and a seventh of a 32-image one (docs/results/serving.md); a module
that cannot run in bf16 throughout keeps autocast. Either way the output is made fp32 before it is quantised:
rounding in bf16 itself would cost a grey level. fp32 is the trainer's own path, pixel for pixel.
"""
from __future__ import annotations

import contextlib
import logging

import torch

from shared.imaging.grids import to_uint8
from shared.imaging.precision import BF16, FP32, autocast_maker, bf16_weights, computing_in

log = logging.getLogger("latentlab.runner")


def bucket_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to and including `max_batch` (which need not be a power of two)."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch]


class _GraphBucket:
    """One captured forward at a fixed batch size, with its static device and pinned host buffers."""

    def __init__(self, module: torch.jit.ScriptModule, size: int, latent_dim: int, device: torch.device,
                 pool, precision: str = FP32) -> None:
        self.size = size
        self.host_in = torch.zeros(size, latent_dim, pin_memory=True)
        self.static_in = torch.zeros(size, latent_dim, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad(), computing_in(precision, device):
            for _ in range(3):  # TorchScript's profiling runs, and cuDNN's choices, happen before capture
                module(self.static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph, pool=pool), computing_in(precision, device):
            self.static_out = to_uint8(module(self.static_in).float())
        self.host_out = torch.empty(self.static_out.shape, dtype=torch.uint8, pin_memory=True)

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        n = latents.shape[0]
        self.host_in[:n].copy_(latents)
        self.static_in[:n].copy_(self.host_in[:n], non_blocking=True)  # rows past n keep old data: harmless,
        self.graph.replay()                                              # each row is computed on its own
        self.host_out[:n].copy_(self.static_out[:n], non_blocking=True)
        torch.cuda.current_stream(self.static_in.device).synchronize()
        return self.host_out[:n]


class GeneratorRunner:
    """Calls a generator on (n, latent_dim) float32 CPU latents and returns uint8 (n, C, H, W) CPU images.

    The result may be a view of a buffer reused by the next call: copy what must outlive it."""

    def __init__(self, module: torch.jit.ScriptModule, device: torch.device, latent_dim: int, max_batch: int,
                 cuda_graphs: bool = True, precision: str = FP32) -> None:
        self.module = module
        self.device = device
        self.precision = precision
        self._computing = autocast_maker(precision, device)  # settled once: entered on every forward
        self._input_dtype = torch.float32
        self.latent_dim = latent_dim
        if precision == BF16 and device.type == "cpu":
            held = bf16_weights(module, latent_dim)
            if held is None:
                log.info("this generator keeps autocast in bf16: a copy with bf16 weights does not run")
            else:
                self.module, self._computing, self._input_dtype = held, contextlib.nullcontext, torch.bfloat16
        self.max_batch = max_batch
        self.buckets: list[_GraphBucket] = []
        if cuda_graphs and device.type == "cuda":
            self._capture()

    def _capture(self) -> None:
        pool = torch.cuda.graph_pool_handle()  # the buckets share one memory pool: they never run at once
        for size in bucket_sizes(self.max_batch):
            try:
                self.buckets.append(_GraphBucket(self.module, size, self.latent_dim, self.device, pool, self.precision))
            except Exception as e:  # capture is an optimisation: the eager path serves this size instead
                log.warning("CUDA graph capture at batch %d failed, running eagerly above that: %s", size, e)
                break

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        n = latents.shape[0]
        for bucket in self.buckets:
            if bucket.size >= n:
                return bucket(latents)
        with torch.inference_mode(), self._computing():
            images = to_uint8(self.module(latents.to(self.device, self._input_dtype, non_blocking=True)).float())
        return images.cpu()
