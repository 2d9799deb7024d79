"""Which precision a loaded version is served in, and why.

PRECISION=fp32 and bf16 are taken as asked (bf16 where the device emulates it is allowed, only slow). With
`auto`, bf16 is chosen only where the device computes it natively (`shared.imaging.precision.native_bf16`) and
where the warm-up measures it faster than fp32 at every batch size the batcher runs (one image, the warm-up
batch, the largest batch): a small MLP on a CPU is faster in fp32 at one image, a DCGAN is not. The timings of
the precision chosen seed the version's admission cost model, so it predicts that precision's own costs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from shared.imaging.latents import seeded_latents
from shared.imaging.precision import AUTO, BF16, FP32, native_bf16

Forward = Callable[[torch.Tensor], torch.Tensor]  # (n, latent_dim) float32 latents -> uint8 images
TIMED_RUNS = 3  # forwards timed per batch size and precision (the median counts), after one untimed call


@dataclass(frozen=True)
class PrecisionChoice:
    """How a version is served: `precision`, what was asked, what computes bf16 natively here (None: nothing),
    why, and the warm-up's median forward times (precision -> batch size -> seconds)."""

    precision: str
    asked: str
    native_bf16: str | None
    reason: str
    forward_seconds: dict[str, dict[int, float]] = field(default_factory=dict)

    def timings(self) -> list[tuple[int, float]]:
        """(batch size, seconds) of the precision served: what the admission cost model starts from."""
        return sorted(self.forward_seconds.get(self.precision, {}).items())

    def describe(self) -> dict:
        return {"precision": self.precision, "asked": self.asked, "native_bf16": self.native_bf16,
                "reason": self.reason, "forward_ms": {p: {str(n): round(s * 1000, 3) for n, s in sizes.items()}
                                                      for p, sizes in self.forward_seconds.items()}}


def time_forwards(forward: Forward, latent_dim: int, sizes: set[int], runs: int = TIMED_RUNS) -> dict[int, float]:
    """Median seconds of a forward at each batch size, over `runs` calls, as the batcher will run it (the size's
    first call, which may pick kernels or capture a graph, is not timed)."""
    timings = {}
    for n in sorted(sizes):
        z = seeded_latents(1, n, latent_dim)
        forward(z)
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            forward(z)
            seconds.append(time.perf_counter() - started)
        timings[n] = statistics.median(seconds)
    return timings


def choose_precision(asked: str, device: torch.device, build: Callable[[str], Forward], latent_dim: int,
                     sizes: set[int]) -> tuple[PrecisionChoice, Forward]:
    """The precision to serve a version in, with its forward (`build(precision)` makes one)."""
    native = native_bf16(device)
    if asked != AUTO:
        forward = build(asked)
        reason = "asked for (PRECISION=%s)" % asked
        if asked == BF16 and native is None:
            reason += f"; {device.type} has no native bf16 here, so it is emulated and slower"
        return PrecisionChoice(asked, asked, native, reason, {asked: time_forwards(forward, latent_dim, sizes)}), forward
    fp32 = build(FP32)
    measured = {FP32: time_forwards(fp32, latent_dim, sizes)}
    if native is None:
        return PrecisionChoice(FP32, AUTO, None, f"no native bf16 on this {device.type}", measured), fp32
    bf16 = build(BF16)
    measured[BF16] = time_forwards(bf16, latent_dim, sizes)
    slower = [n for n in sorted(sizes) if measured[BF16][n] >= measured[FP32][n]]
    if slower:
        reason = (f"bf16 ({native}) measured no faster at batch {', '.join(map(str, slower))}: "
                  + ", ".join(f"{measured[BF16][n] * 1000:.2f} vs {measured[FP32][n] * 1000:.2f} ms" for n in slower))
        return PrecisionChoice(FP32, AUTO, native, reason, measured), fp32
    speedups = ", ".join(f"{measured[FP32][n] / measured[BF16][n]:.2f}x at {n}" for n in sorted(sizes))
    return PrecisionChoice(BF16, AUTO, native, f"bf16 ({native}) measured faster: {speedups}", measured), bf16
