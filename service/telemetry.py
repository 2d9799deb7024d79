"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

Besides the HTTP counters that the middleware feeds, `Telemetry` is the model registry's observer: the
registry reports loads and which versions it holds, after releasing its lock, and this class turns the
reports into counters and gauges.
"""
from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("latentlab_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("latentlab_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("latentlab_images_generated_total", "images generated, by model and version",
                              ["model", "version"], registry=self.registry)
        self.model_loads = Counter("latentlab_model_loads_total", "model version loads by result (ok, failed)",
                                   ["model", "result"], registry=self.registry)
        self.loaded = Gauge("latentlab_model_loaded", "1 for every model version held in memory",
                            ["model", "version", "role"], registry=self.registry)

    # ------------------------------------------------------------------ the registry's observer
    def model_loaded(self, name: str, ok: bool) -> None:
        self.model_loads.labels(name, "ok" if ok else "failed").inc()

    def version_held(self, name: str, version: int, role: str) -> None:
        self.loaded.labels(name, str(version), role).set(1)

    def version_released(self, name: str, version: int, role: str) -> None:
        with contextlib.suppress(KeyError):  # reports arrive outside the registry's lock, rarely out of order
            self.loaded.remove(name, str(version), role)

    def images_generated(self, name: str, version: int, count: int) -> None:
        self.images.labels(name, str(version)).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
