"""A steady load: threads asking for `count` images of a new seed each, again and again, through the project's own
client (latentlab.Client, with its retries: jittered backoff honouring Retry-After, at most 5 tries in 60 s) or,
with `retries=False`, through plain httpx that never retries (what most callers of an HTTP API are); and
`same_picture`, what its answers are checked against. Used by tests/test_balancer.py, tests/test_replicas.py and
benchmarks/chaos.py."""
from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
from PIL import Image

from latentlab import Client
from shared.imaging.precision import within_bf16_bound


def same_picture(png: bytes, other: bytes) -> bool:
    """Whether two PNG answers hold the same images. Not byte for byte: each replica times its runtimes at warm-up
    and may give a batch size another runtime (or bf16) than its neighbour does, and a request batched with others
    may run in another bucket than alone; the engine admits a runtime only within this bound of the fp32 reference,
    and a wrong or mixed-up image misses it by tens of grey levels."""
    a, b = (np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16) for data in (png, other))
    if a.shape != b.shape:
        return False
    diff = np.abs(a - b)
    return within_bf16_bound(int(diff.max()), float(diff.mean()))


class ClientLoad:
    """What the clients got (seed -> PNG bytes), how long each call took (retries included), what failed."""

    def __init__(self, url: str, model: str, clients: int = 3, count: int = 4, retries: bool = True) -> None:
        self.url, self.model, self.count = url, model, count
        self.answers: dict[int, bytes] = {}
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self.running = True
        target = self._client if retries else self._plain_client
        self.threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(clients)]
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

    def _plain_client(self, i: int) -> None:
        seed = 500_000 + i * 1_000_000
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while self.running:
                seed += 1
                started = time.monotonic()
                try:
                    r = client.post("/generate", json={"model": self.model, "seed": seed, "count": self.count})
                    if r.status_code == 200:
                        self.answers[seed] = r.content
                    else:
                        self.failures.append(f"seed {seed}: {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
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
