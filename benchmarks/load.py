"""A steady load from the project's own client (latentlab.Client, with its retries: jittered backoff honouring
Retry-After, at most 5 tries in 60 s): threads asking for `count` images of a new seed each, again and again.
Used by tests/test_balancer.py and benchmarks/chaos.py."""
from __future__ import annotations

import threading
import time

from latentlab import Client


class ClientLoad:
    """What the clients got (seed -> PNG bytes), how long each call took (retries included), what failed."""

    def __init__(self, url: str, model: str, clients: int = 3, count: int = 4) -> None:
        self.url, self.model, self.count = url, model, count
        self.answers: dict[int, bytes] = {}
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self.running = True
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self, i: int) -> None:
        client, seed = Client(self.url, timeout=60), i * 1_000_000
        while self.running:
            seed += 1
            started = time.monotonic()
            try:
                self.answers[seed] = client.generate(self.model, seed=seed, count=self.count).data
            except Exception as e:  # every failure counts: the client's retries already had their chance
                self.failures.append(f"seed {seed}: {type(e).__name__}: {e}")
            self.seconds.append(time.monotonic() - started)

    def stop(self) -> "ClientLoad":
        self.running = False
        for thread in self.threads:
            thread.join(timeout=120)
        return self

    def p99(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[int(len(ordered) * 0.99)] if ordered else float("nan")
