"""Dynamic batching: concurrent requests for one model share forward passes.

Jobs (latents of one request, chunked to at most `max_batch`) wait in a queue; a single
worker task merges them up to `max_batch` images or `max_delay_ms`, runs the merged batch
on the model's own thread (off the event loop), and splits the images back. Images do not
depend on their batch companions: `Generator.synthesize` runs fixed micro-batches.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .metrics import Metrics


class Overloaded(Exception):
    """The queue is full; the client should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    z: np.ndarray  # (k, z_dim) float32, k <= max_batch
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, G: object, name: str, max_batch: int, max_delay_ms: float,
                 max_queue: int, metrics: Metrics) -> None:
        self.G, self.name = G, name
        self.max_batch, self.max_delay = max_batch, max_delay_ms / 1000.0
        self.max_queue, self.metrics = max_queue, metrics
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.pending = 0  # images queued and not yet computed
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"gan-{name}")
        self._carry: Job | None = None  # a job that did not fit the last batch
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Finish what is queued, then stop (graceful shutdown drains in-flight work)."""
        while self.pending and self._task and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
        self.executor.shutdown(wait=True)

    async def submit(self, z: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W, C) for latents z (N, z_dim); raises Overloaded when full."""
        if self.pending + len(z) > self.max_queue:
            raise Overloaded(retry_after=max(1, round(self.pending / max(self.max_batch, 1) * 0.05)))
        loop = asyncio.get_running_loop()
        jobs = [Job(z[i : i + self.max_batch], loop.create_future())
                for i in range(0, len(z), self.max_batch)]
        for job in jobs:
            self.queue.put_nowait(job)
        self.pending += len(z)
        self.metrics.queue_depth.labels(self.name).set(self.pending)
        return np.concatenate(await asyncio.gather(*(j.future for j in jobs)))

    async def _next_batch(self) -> list[Job]:
        first = self._carry or await self.queue.get()
        self._carry = None
        batch, size = [first], len(first.z)
        deadline = time.perf_counter() + self.max_delay
        while size < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                wait = deadline - time.perf_counter()
                if wait <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), wait)
                except TimeoutError:
                    break
            if size + len(job.z) > self.max_batch:
                self._carry = job
                break
            batch.append(job)
            size += len(job.z)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            z = np.concatenate([j.z for j in batch])
            started = time.perf_counter()
            for j in batch:
                self.metrics.queue_seconds.labels(self.name).observe(started - j.enqueued)
            try:
                images = await loop.run_in_executor(self.executor, self.G.synthesize, z)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - delivered to every waiting request
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
            else:
                self.metrics.compute_seconds.labels(self.name).observe(time.perf_counter() - started)
                self.metrics.batch_size.labels(self.name).observe(len(z))
                self.metrics.images.labels(self.name).inc(len(z))
                start = 0
                for j in batch:
                    if not j.future.done():  # a timed-out request no longer waits
                        j.future.set_result(images[start : start + len(j.z)])
                    start += len(j.z)
            finally:
                self.pending -= len(z)
                self.metrics.queue_depth.labels(self.name).set(self.pending)
