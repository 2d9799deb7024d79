"""Admission by predicted wait: what a forward costs, when a new request would be done, and refusals.

Each loaded version's batcher keeps a `ForwardCost`: a running estimate of a forward's seconds for each
batch-size bucket (powers of two), learned from every batch it runs and seeded at load by timing the
warm-up. A new request's completion is predicted by replaying the scheduler's own rule on the work
ahead of it (`forwards_until_done`): the forward in progress, the chunks its own queue runs first (a
split request goes to the back, so a slider's request waits for one chunk of a big sweep, not all of
it), and the other models' queues, which take turns with it. A request predicted to finish later than
MAX_QUEUE_DELAY_MS is refused at once (`Overloaded`, a 503 with Retry-After over HTTP); the bound in
time means the same on a slow CPU, a fast one and a GPU, where a bound in latents could not.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Iterable

PREDICTED_WAIT = "predicted_wait"  # refused at once: it would finish after MAX_QUEUE_DELAY_MS
DEADLINE = "deadline"  # dropped from the queue: its deadline passed before its forward
QUEUE_FULL = "queue_full"  # refused at once: MAX_QUEUED_LATENTS, the memory cap
PROJECTIONS = "projections"  # refused at once: MAX_PROJECTIONS in progress
REASONS = (PREDICTED_WAIT, DEADLINE, QUEUE_FULL, PROJECTIONS)


class Overloaded(Exception):
    """The service cannot do this request in time; try again after `retry_after` seconds."""

    def __init__(self, message: str, wait: float, reason: str) -> None:
        super().__init__(message)
        self.wait = wait  # predicted seconds until the work it would wait behind is done
        self.retry_after = retry_after_header(wait)
        self.reason = reason


def retry_after_header(seconds: float) -> int:
    """Whole seconds, rounded up, at least 1: what a Retry-After header can say."""
    return max(1, math.ceil(seconds - 1e-9))


class ForwardCost:
    """Seconds of one forward of n latents, per batch-size bucket, as exponentially weighted means.

    Each bucket (1, 2, 4, ... up to the largest batch) keeps the mean batch size and mean seconds of the
    forwards that fell in it; a prediction interpolates between the buckets seen so far (a forward costs
    roughly a + b*n between them), scales the largest one up in proportion, and takes the smallest one's
    time for anything smaller. Thread-safe: the inference thread observes, request threads predict."""

    def __init__(self, max_batch: int, weight: float = 0.1) -> None:
        self.sizes: list[int] = []
        size = 1
        while size < max_batch:
            self.sizes.append(size)
            size *= 2
        self.sizes.append(max_batch)
        self.weight = weight
        self._points: dict[int, tuple[float, float]] = {}  # bucket -> (mean latents, mean seconds)
        self._lock = threading.Lock()

    def _bucket(self, n: int) -> int:
        return next((s for s in self.sizes if s >= n), self.sizes[-1])

    def observe(self, n: int, seconds: float) -> None:
        bucket = self._bucket(n)
        with self._lock:
            mean_n, mean_s = self._points.get(bucket, (n, seconds))
            w = self.weight
            self._points[bucket] = (mean_n + w * (n - mean_n), mean_s + w * (seconds - mean_s))

    @property
    def known(self) -> bool:
        return bool(self._points)

    def predict(self, n: int) -> float:
        """Seconds for one forward of `n` latents (0 before anything was observed: nothing to go by)."""
        with self._lock:
            points = sorted(self._points.values())
        if not points or n <= 0:
            return 0.0
        if n <= points[0][0]:
            return points[0][1]
        for (n0, s0), (n1, s1) in zip(points, points[1:]):
            if n <= n1:
                return s0 + (s1 - s0) * (n - n0) / (n1 - n0) if n1 > n0 else s1
        last_n, last_s = points[-1]
        return last_s * n / last_n

    def seconds(self, forwards: Iterable[int]) -> float:
        return sum(self.predict(n) for n in forwards)


def forwards_until_done(remaining: Iterable[int], batch: int, late: frozenset[int] = frozenset()) -> list[int]:
    """The sizes of the forwards a queue runs until its last job is done, by the batcher's rule: each
    forward takes up to `batch` latents from the front, and a job with rows left over goes to the back,
    or to the front if it is already past its deadline (`late`: their positions in the queue).

    `remaining` is what each queued job has left to run, front first; the last entry is the job asked about."""
    queue = deque(enumerate(remaining))
    target = len(queue) - 1
    forwards: list[int] = []
    done = False
    while queue and not done:
        room = batch
        while queue and room:  # the forward that finishes the target still fills up with what follows it
            job, left = queue.popleft()
            take = min(left, room)
            room -= take
            if take < left:
                (queue.appendleft if job in late else queue.append)((job, left - take))
            elif job == target:
                done = True
        forwards.append(batch - room)
    return forwards


def forwards_for_all(latents: int, batch: int) -> list[int]:
    """The forwards that run `latents` queued latents: full batches, then the rest."""
    full, rest = divmod(latents, batch)
    return [batch] * full + ([rest] if rest else [])
