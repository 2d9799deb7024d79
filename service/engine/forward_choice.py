"""Which runtime and precision serve each batch bucket of a version, and why.

RUNTIME and PRECISION name what may be used (`service.engine.runtimes.candidates`). With one candidate left it
is served as asked. With several, the warm-up first draws the same latents with each and drops any whose pixels
leave the bf16 bound of the fp32 reference (the version's first fp32 candidate: TorchScript, the contract, where
it runs), then times the rest at every bucket size the batcher runs (1, 2, 4, ... up to the largest batch) and
gives each bucket its fastest (a bucket keeps the runtime of the one below unless another is more than 10% faster): a
lone image may run on ONNX Runtime, a batch of 64 on TorchScript in bf16. A
batch runs with the choice of the smallest bucket that holds it. The chosen timings seed the version's admission
cost model, so it predicts the costs of what actually runs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from service.engine.runner import bucket_sizes
from service.engine.runtimes import Candidate, Forward
from shared.imaging.latents import LatentLayout, seeded_latents
from shared.imaging.precision import AUTO, BF16, FP32, within_bf16_bound

TIMED_RUNS = 3  # forwards timed per batch size and candidate (the median counts), after one untimed call
CHECK_SEED, CHECK_COUNT = 7, 16  # the latents every candidate's pixels are compared on
# a bucket keeps the runtime of the bucket below it unless another is faster by more than this: timings a few per
# cent apart are noise, and each switch between runtimes costs what one forward's timing does not show (two thread
# pools taking turns on the same cores)
SWITCH_MARGIN = 1.10


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


@dataclass(frozen=True)
class Bucket:
    size: int  # batches of up to this many latents (and more than the bucket before)
    runtime: str
    precision: str
    forward_ms: float  # its measured median forward at this size

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.runtime, self.precision)


@dataclass
class ForwardPlan:
    """A version's forwards, one per bucket, with what was measured to choose them. Called like a forward."""

    runtime_asked: str
    precision_asked: str
    native_bf16: str | None
    reason: str
    buckets: list[Bucket]
    forwards: dict[Candidate, Forward]
    forward_seconds: dict[Candidate, dict[int, float]] = field(default_factory=dict)
    grey_diff: dict[Candidate, tuple[int, float]] = field(default_factory=dict)  # largest and mean, vs the reference
    left_out: list[str] = field(default_factory=list)

    def bucket(self, n: int) -> Bucket:
        """The bucket a batch of `n` latents runs in."""
        return next((b for b in self.buckets if b.size >= n), self.buckets[-1])

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        return self.forwards[self.bucket(latents.shape[0]).candidate](latents)

    def runs_on(self, n: int) -> tuple[str, str]:
        """The runtime and precision a batch of `n` latents runs on."""
        bucket = self.bucket(n)
        return bucket.runtime, bucket.precision

    def timings(self) -> list[tuple[int, float]]:
        """(batch size, seconds) of what runs at each measured size: what the admission cost model starts from."""
        return sorted((n, seconds[n]) for candidate, seconds in self.forward_seconds.items() for n in seconds
                      if self.bucket(n).candidate == candidate)

    @property
    def precision(self) -> str:
        """What the forwards compute in: one precision, or both joined (fp32+bf16) where buckets differ."""
        return "+".join(sorted({b.precision for b in self.buckets}, reverse=True))

    @property
    def runtime(self) -> str:
        return "+".join(dict.fromkeys(b.runtime for b in self.buckets))

    def describe(self) -> dict:
        return {"runtime": self.runtime, "precision": self.precision, "runtime_asked": self.runtime_asked,
                "precision_asked": self.precision_asked, "native_bf16": self.native_bf16, "reason": self.reason,
                "buckets": [{"batch": b.size, "runtime": b.runtime, "precision": b.precision,
                             "forward_ms": round(b.forward_ms, 3)} for b in self.buckets],
                "forward_ms": {str(c): {str(n): round(s * 1000, 3) for n, s in sizes.items()}
                               for c, sizes in self.forward_seconds.items()},
                "grey_diff": {str(c): {"max": d[0], "mean": round(d[1], 4)} for c, d in self.grey_diff.items()},
                "left_out": self.left_out}


def choose_forwards(offered: list[Candidate], build: Callable[[Candidate], Forward], layout: LatentLayout,
                    max_batch: int, probe_sizes: set[int], runtime_asked: str = AUTO, precision_asked: str = AUTO,
                    native_bf16: str | None = None, left_out: list[str] | None = None) -> ForwardPlan:
    """The plan serving a version: `offered` candidates (in order of preference), each made by `build`. One
    candidate is timed at `probe_sizes` only (what admission needs); several are compared at every bucket."""
    plan = ForwardPlan(runtime_asked, precision_asked, native_bf16, "", [], {}, left_out=list(left_out or ()))
    if len(offered) == 1:
        (only,) = offered
        plan.forwards[only] = build(only)
        plan.forward_seconds[only] = time_forwards(plan.forwards[only], layout.width, probe_sizes)
        plan.reason = ("as asked" if AUTO not in (runtime_asked, precision_asked)
                       else "the only candidate here") + f" ({only})"
        if only.precision == BF16 and native_bf16 is None:
            plan.reason += "; nothing computes bf16 natively here, so it is emulated and slower"
        plan.buckets = [Bucket(max_batch, only.runtime, only.precision,
                               plan.forward_seconds[only][max(probe_sizes)] * 1000)]
        return plan
    z = layout.seeded(CHECK_SEED, CHECK_COUNT)
    reference = next((c for c in offered if c.precision == FP32), None)
    expected = None
    for candidate in sorted(offered, key=lambda c: c != reference):  # the reference first
        forward = build(candidate)
        images = forward(z).int()
        if candidate == reference:
            expected = images
        elif expected is not None:
            diff = (images - expected).abs()
            largest, mean = plan.grey_diff[candidate] = (int(diff.max()), float(diff.float().mean()))
            if not within_bf16_bound(largest, mean):
                plan.left_out.append(f"{candidate}: its pixels differ from {reference}'s by up to {largest} "
                                     f"grey levels ({mean:.3f} on average), past the bound")
                continue
        plan.forwards[candidate] = forward
    sizes = set(bucket_sizes(max_batch))
    plan.forward_seconds = {c: time_forwards(f, layout.width, sizes) for c, f in plan.forwards.items()}
    kept = None
    for n in sorted(sizes):
        seconds = {c: plan.forward_seconds[c][n] for c in plan.forwards}
        fastest = min(seconds, key=seconds.get)
        if kept is None or seconds[kept] > seconds[fastest] * SWITCH_MARGIN:
            kept = fastest
        plan.buckets.append(Bucket(n, kept.runtime, kept.precision, seconds[kept] * 1000))
    plan.reason = "fastest measured at each batch size: " + ", ".join(
        f"{b.size}: {b.runtime} {b.precision} {b.forward_ms:.2f} ms" for b in plan.buckets)
    return plan
