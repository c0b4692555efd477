"""Prometheus metrics of one app instance (its own registry, so tests can build many apps).

Under `serve --workers N` the parent sets PROMETHEUS_MULTIPROC_DIR before the workers start:
prometheus-client then keeps every value in files there, and any worker's /metrics sums all
of them (MultiProcessCollector), so scrapes agree whichever worker answers.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)
from starlette.types import Receive, Scope, Send

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REQUEST_LATENCY = (*_LATENCY, 30.0, 60.0)  # a request may wait up to its timeout


class Metrics:
    """The service's metrics, on a registry of their own (several apps can live in one process)."""

    def __init__(self) -> None:
        # prometheus-client chose file-backed values at import (the parent set the variable first)
        self.multiprocess = values.ValueClass is not values.MutexValue
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("gan_serve_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.images = Counter("gan_serve_images_generated", "Images generated", ["model"], registry=r)
        self.queue_depth = Gauge("gan_serve_queue_depth", "Images waiting to be generated",
                                 ["model"], registry=r, multiprocess_mode="livesum")
        self.batch_size = Histogram("gan_serve_batch_size", "Images per merged forward pass",
                                    ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                                    registry=r)
        self.queue_seconds = Histogram("gan_serve_queue_seconds", "Time a job waited for its batch",
                                       ["model"], buckets=_LATENCY, registry=r)
        self.compute_seconds = Histogram("gan_serve_compute_seconds", "Forward time of a batch",
                                         ["model"], buckets=_LATENCY, registry=r)
        self.request_seconds = Histogram(
            "gan_serve_request_seconds", "End to end: request received to last response byte sent",
            ["route", "status"], buckets=_REQUEST_LATENCY, registry=r)
        if not self.multiprocess:  # one process's CPU and memory; with workers they would be
            # the answering worker's only, so they are left out there (prometheus-client's advice)
            ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes
        PlatformCollector(registry=r)  # python_info
        self._request_series: dict[tuple[str, int], tuple[object, object]] = {}  # (route, status)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency under (route template, status)."""
        series = self._request_series.get((route, status))
        if series is None:  # route templates and statuses are few: each pair is looked up once
            series = self._request_series[route, status] = (
                self.requests.labels(route, str(status)), self.request_seconds.labels(route, str(status)))
        series[0].inc()
        series[1].observe(seconds)

    content_type = CONTENT_TYPE_LATEST

    def exposition(self) -> bytes:
        """What /metrics answers: this app's registry, or with workers the sum over all of them."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        PlatformCollector(registry=merged)
        return generate_latest(merged)

    def close(self) -> None:
        """A worker that stops drops its live gauges from the sums (its counters stay counted)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


class CountRequests:
    """ASGI middleware: requests and their end-to-end latency by route template and status
    (no per-request task or stream); under `serve --workers` it names the worker that answered
    in an X-Worker header."""

    def __init__(self, app: object, metrics: Metrics, worker: int | None = None) -> None:
        self.app, self.metrics = app, metrics
        self.worker = None if worker is None else (b"x-worker", str(worker).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # what the client gets if the app fails before answering
        start = time.perf_counter()

        async def record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.worker is not None:
                    message["headers"] = [*message.get("headers", []), self.worker]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            # the route template, never the raw path: unknown paths must not grow the label set
            self.metrics.observe_request(getattr(scope.get("route"), "path", "unmatched"), status,
                          time.perf_counter() - start)
