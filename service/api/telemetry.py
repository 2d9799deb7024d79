"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

Besides the HTTP counters that the middleware feeds, `Telemetry` observes the model registry (loads,
versions held: reported after the registry releases its lock) and the batchers (batch sizes, queue
waits, forward times, shed requests), and turns the reports into counters, gauges and histograms.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from service.engine.batcher import BatchReport

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple, tuple] = {}  # label values -> metric children: labels() costs a lock and checks
        self.requests = Counter("latentlab_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("latentlab_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("latentlab_images_generated_total", "images generated, by model and version",
                              ["model", "version"], registry=self.registry)
        self.model_loads = Counter("latentlab_model_loads_total", "model version loads by result (ok, failed)",
                                   ["model", "result"], registry=self.registry)
        self.loaded = Gauge("latentlab_model_loaded", "1 for every model version held in memory, with the precision "
                            "its forwards compute in (fp32, bf16, or fp32+bf16 where batch sizes differ)", ["model", "version", "role", "precision"],
                            registry=self.registry)
        self.damaged = Gauge("latentlab_damaged_versions", "versions the store holds damaged (a file missing or not "
                             "matching its manifest's hash), by model; a loaded one is still served from memory",
                             ["model"], registry=self.registry)

        self.batch_latents = Histogram("latentlab_batch_latents", "latents per generator forward, by model",
                                       ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_wait = Histogram("latentlab_queue_wait_seconds", "time a request waited for its first forward",
                                    ["model"], buckets=WAIT_BUCKETS, registry=self.registry)
        self.forward_time = Histogram("latentlab_forward_seconds", "time of one batched forward, by model and the "
                                      "runtime and precision it ran on", ["model", "runtime", "precision"],
                                      buckets=LATENCY_BUCKETS, registry=self.registry)
        self.shed = Counter("latentlab_shed_requests_total", "requests refused or dropped with 503, by reason: "
                            "predicted_wait (would finish after MAX_QUEUE_DELAY_MS), deadline (still waiting then), "
                            "queue_full (MAX_QUEUED_LATENTS)", ["model", "reason"], registry=self.registry)
        self.wait = Histogram("latentlab_request_wait_seconds", "seconds from a request's arrival at the queue to its "
                              "last image: as predicted at admission (kind=predicted) and as it happened (kind=actual)",
                              ["model", "kind"], buckets=WAIT_BUCKETS, registry=self.registry)

    # ------------------------------------------------------------------ the HTTP middleware's
    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # label values are bounded: route templates, methods, status codes
            labels = (route, method, str(status))
            children = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    # ------------------------------------------------------------------ the batchers' observer
    def batch_ran(self, report: "BatchReport") -> None:
        key = ("batch", report.model, report.runtime, report.precision)
        children = self._children.get(key)
        if children is None:
            model = report.model
            children = self._children[key] = (
                self.batch_latents.labels(model), self.forward_time.labels(model, report.runtime, report.precision),
                self.queue_wait.labels(model), self.wait.labels(model, "predicted"), self.wait.labels(model, "actual"))
        latents, forward_time, queue_wait, predicted_wait, actual_wait = children
        latents.observe(report.latents)
        forward_time.observe(report.seconds)
        for waited in report.waits:
            queue_wait.observe(waited)
        for predicted, actual in report.finished:
            predicted_wait.observe(predicted)
            actual_wait.observe(actual)

    def job_shed(self, model: str, reason: str) -> None:
        self.shed.labels(model, reason).inc()

    # ------------------------------------------------------------------ the registry's observer
    def model_loaded(self, name: str, ok: bool) -> None:
        self.model_loads.labels(name, "ok" if ok else "failed").inc()

    def version_held(self, name: str, version: int, role: str, precision: str) -> None:
        self.loaded.labels(name, str(version), role, precision).set(1)

    def version_released(self, name: str, version: int, role: str, precision: str) -> None:
        with contextlib.suppress(KeyError):  # reports arrive outside the registry's lock, rarely out of order
            self.loaded.remove(name, str(version), role, precision)

    def versions_damaged(self, name: str, count: int) -> None:
        self.damaged.labels(name).set(count)

    def images_generated(self, name: str, version: int, count: int) -> None:
        key = ("images", name, version)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.images.labels(name, str(version))
        child.inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
