"""When to try a request again, and how long to wait first: jittered exponential backoff that honours the
service's Retry-After, bounded in attempts and in total time. One policy for the sync and async clients."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({502, 503, 504})  # shed load, or a proxy in front that lost the service for a moment


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries at most (1: never retry), none started after `total_seconds`. Without a Retry-After
    the wait is "full jitter" (uniform in [0, min(max_backoff, backoff * 2**n)]), so that clients shed together
    do not come back together; with one, the wait is Retry-After plus up to 10% of it."""

    attempts: int = 5
    total_seconds: float = 60.0
    backoff: float = 0.25
    max_backoff: float = 8.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def start(self) -> "Attempts":
        return Attempts(self, time.monotonic() + self.total_seconds)


@dataclass
class Attempts:
    """One request's tries."""

    policy: RetryPolicy
    deadline: float
    made: int = 0

    def next_wait(self, retry_after: float | None) -> float | None:
        """Seconds to wait before trying again after a failed try, or None: give up (out of attempts, or the
        wait would end past the deadline)."""
        self.made += 1
        if self.made >= self.policy.attempts:
            return None
        if retry_after is not None:
            wait = retry_after * (1 + 0.1 * self.policy.rng.random())
        else:
            wait = self.policy.rng.uniform(0, min(self.policy.max_backoff, self.policy.backoff * 2 ** (self.made - 1)))
        return wait if time.monotonic() + wait <= self.deadline else None
