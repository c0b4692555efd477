"""Prometheus metrics of one app instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("gan_serve_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.images = Counter("gan_serve_images_generated", "Images generated", ["model"], registry=r)
        self.queue_depth = Gauge("gan_serve_queue_depth", "Images waiting to be generated",
                                 ["model"], registry=r)
        self.batch_size = Histogram("gan_serve_batch_size", "Images per merged forward pass",
                                    ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                                    registry=r)
        self.queue_seconds = Histogram("gan_serve_queue_seconds", "Time a job waited for its batch",
                                       ["model"], buckets=_LATENCY, registry=r)
        self.compute_seconds = Histogram("gan_serve_compute_seconds", "Forward time of a batch",
                                         ["model"], buckets=_LATENCY, registry=r)
