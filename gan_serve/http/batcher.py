"""Dynamic batching: concurrent requests for one model share forward passes.

A request first takes its seat in the queue (`admit`: 429 when full, before any work for
it), then becomes a `Ticket` (its latents, built lazily on the model's thread, and a future).
One task per model builds batches of at most `max_batch` images, whole micro-batches when more
than one is waiting (`_budget`), round-robin over the waiting tickets, a micro-batch per ticket
per round, so a request for 256 images cannot starve the one-image requests that arrive after
it, and a request larger than a batch is chunked across several. The merged batch runs on the
model's own worker thread (off the event loop) and the images are split back. Images do not
depend on their batch companions: `Generator.synthesize` runs fixed, zero-padded micro-batches,
and a pass of fewer images at a smaller size only where the probe at load (app.py) showed the
same bits there, so a lone request costs one row, not a micro-batch.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..backends import micro_batch_for
from ..protocols import ImageGenerator
from ..runtime import yield_to_the_event_loop
from .metrics import Metrics


class Overloaded(Exception):
    """The queue is full; the client should retry after `retry_after` seconds."""

    def __init__(self, model: str, queued: int, retry_after: int) -> None:
        images = "image" if queued == 1 else "images"
        super().__init__(f"the server is busy ({queued} {images} queued for model {model!r}); "
                         f"retry in {retry_after} s")
        self.retry_after = retry_after


class Seat:
    """Room for `n` images taken in a batcher's queue by `Batcher.admit`, before the request does
    any work; its ticket takes it over on submit, and leaving the `with` block frees what no
    ticket took (the request failed or was cancelled before its latents were ready)."""

    def __init__(self, batcher: Batcher, n: int) -> None:
        self.batcher, self.n = batcher, n

    def __enter__(self) -> Seat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.n:
            self.batcher._add_pending(-self.n)
            self.n = 0


class LazyLatents:
    """A request's (N, z_dim) latents, built by `build` on the model's thread when the first of
    its slices runs: off the event loop, and with no thread hop of their own."""

    def __init__(self, n: int, build: Callable[[], np.ndarray]) -> None:
        self.n, self.build = n, build
        self.z: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: slice) -> np.ndarray:
        if self.z is None:
            self.z = self.build()
        return self.z[rows]


@dataclass(eq=False)
class Ticket:
    """One request's images, computed in slices that may span several batches."""

    z: np.ndarray | LazyLatents  # (N, z_dim) float32
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    scheduled: int = 0  # images [0, scheduled) are in a batch or finished
    finished: int = 0
    out: np.ndarray | None = None  # (N, H, W, C) uint8, allocated with the first slice
    cancelled: bool = False


Slice = tuple[Ticket, int, int]  # (ticket, start, stop)


class Batcher:
    """Merges concurrent requests for one Generator into forward passes on one worker thread."""

    def __init__(self, G: ImageGenerator, name: str, max_batch: int, max_delay_ms: float,
                 max_queue: int, metrics: Metrics) -> None:
        self.G, self.name = G, name
        self.max_batch, self.max_delay = max_batch, max_delay_ms / 1000.0
        self.max_queue, self.metrics = max_queue, metrics
        # this model's series, looked up once: `labels()` costs a lock and a dict lookup each call
        self._depth = metrics.queue_depth.labels(name)
        self._waited = metrics.queue_seconds.labels(name)
        self._computed = metrics.compute_seconds.labels(name)
        self._batch_sizes = metrics.batch_size.labels(name)
        self._images = metrics.images.labels(name)
        # a ticket's share per round: one micro-batch, the unit of every forward pass (a stand-in
        # generator without a runner gets the CPU's)
        runner_mb = getattr(getattr(G, "runner", None), "micro_batch", None)
        self.quantum = min(max_batch, runner_mb or micro_batch_for("cpu"))
        self.waiting: deque[Ticket] = deque()  # tickets with images not yet in a batch, in turn order
        self.served: list[Ticket] = []  # had a turn in the last batch: they queue behind newcomers
        self.unscheduled = 0  # images of waiting and served tickets not yet in a batch
        self.pending = 0  # images accepted and not finished (scheduled or not)
        self.seconds_per_image = 0.001  # running estimate, for Retry-After
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"gan-{name}",
                                           initializer=yield_to_the_event_loop)
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._depth.set(self.pending)  # the series exists before any request
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish the work already accepted (graceful shutdown), then stop the worker thread."""
        deadline = time.perf_counter() + timeout
        while self.pending and self._task and not self._task.done() and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
        self.executor.shutdown(wait=True)

    def full(self, entering: int = 0) -> bool:
        """No request, however small, can be admitted now, once the `entering` requests let in
        (an image each at least) have taken their seats."""
        return self.pending + entering >= self.max_queue

    def overloaded(self, entering: int = 0) -> Overloaded:
        """The refusal for a request that does not fit, with a Retry-After from the queue (and
        the `entering` requests let in that will take their seats in it, an image each)."""
        queued = self.pending + entering
        return Overloaded(self.name, queued, max(1, math.ceil(queued * self.seconds_per_image)))

    def admit(self, n: int) -> Seat:
        """Room for n images in the queue, or Overloaded: a constant-time check to make before
        any work for the request (latents, PNGs), so a flood is refused at once.

        A request larger than the whole queue is still taken when nothing else waits.
        """
        if self.pending and self.pending + n > self.max_queue:
            raise self.overloaded()
        self._add_pending(n)
        return Seat(self, n)

    async def submit(self, z: np.ndarray | LazyLatents, seat: Seat | None = None) -> np.ndarray:
        """uint8 images (N, H, W, C) of latents z (N, z_dim), in the `seat` admitted for them
        (admitted now when None: raises Overloaded when full)."""
        n = len(z)
        seat = self.admit(n) if seat is None else seat
        with seat:
            if seat.n != n:
                raise ValueError(f"a seat for {seat.n} images cannot take {n}")
            ticket = Ticket(z, asyncio.get_running_loop().create_future())
            self.waiting.append(ticket)
            self.unscheduled += n
            seat.n = 0  # the ticket holds these images in `pending` now
        self._arrived.set()
        try:
            return await ticket.future
        except asyncio.CancelledError:  # timed out or client gone: drop what is not computed yet
            self._drop(ticket)
            raise

    def _drop(self, ticket: Ticket) -> None:
        ticket.cancelled = True
        for line in (self.waiting, self.served):
            if ticket in line:
                line.remove(ticket)
                left = len(ticket.z) - ticket.scheduled
                self.unscheduled -= left
                self._add_pending(-left)

    def _add_pending(self, n: int) -> None:
        self.pending += n
        self._depth.set(self.pending)

    async def _gather(self) -> None:
        """Wait for a first ticket, then up to max_delay for the batch to fill."""
        while not (self.waiting or self.served):
            self._arrived.clear()
            await self._arrived.wait()
        deadline = time.perf_counter() + self.max_delay
        while self.unscheduled < self.max_batch and (wait := deadline - time.perf_counter()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                break

    def _budget(self) -> int:
        """Images in the next pass: all that wait, up to max_batch, rounded down to whole
        micro-batches when more than one is waiting. The zero padding of a partial micro-batch is
        computed for nothing (17 images cost 32 rows); the images left out go first next pass,
        which starts as soon as this one ends, with whatever arrived meanwhile."""
        size = min(self.max_batch, self.unscheduled)
        return size - size % self.quantum if size > self.quantum else size

    def _take(self) -> list[Slice]:
        """A pass's images (`_budget`), round-robin: a quantum per ticket per turn, newcomers first."""
        self.waiting.extend(self.served)  # requests that arrived since the last batch go ahead
        self.served = []
        served: list[Ticket] = []
        slices: list[Slice] = []
        size, budget = 0, self._budget()
        while size < budget and (self.waiting or served):
            if not self.waiting:  # everyone had a turn and there is room: another round
                self.waiting.extend(served)
                served.clear()
            ticket = self.waiting.popleft()
            take = min(self.quantum, len(ticket.z) - ticket.scheduled, budget - size)
            if ticket.scheduled == 0:
                self._waited.observe(time.perf_counter() - ticket.enqueued)
            slices.append((ticket, ticket.scheduled, ticket.scheduled + take))
            ticket.scheduled += take
            size += take
            if ticket.scheduled < len(ticket.z):
                served.append(ticket)
        self.served = served
        self.unscheduled -= size
        return slices

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._gather()
            slices = self._take()
            size = sum(b - a for _, a, b in slices)
            started = time.perf_counter()
            try:
                images = await loop.run_in_executor(self.executor, self._compute, slices)
            except Exception as exc:  # a bug; every request in the batch hears of it
                for t, _, _ in slices:
                    if not t.future.done():
                        t.future.set_exception(exc)
                    self._drop(t)
            else:
                elapsed = time.perf_counter() - started
                self.seconds_per_image = 0.8 * self.seconds_per_image + 0.2 * elapsed / size
                self._computed.observe(elapsed)
                self._batch_sizes.observe(size)
                self._images.inc(size)
                self._deliver(slices, images)
            finally:
                self._add_pending(-size)

    def _compute(self, slices: list[Slice]) -> np.ndarray:
        """On the model's thread: the batch's latents (lazy ones are built here), then images."""
        z = np.concatenate([t.z[a:b] for t, a, b in slices])
        return self.G.synthesize(z)

    @staticmethod
    def _deliver(slices: list[Slice], images: np.ndarray) -> None:
        offset = 0
        for t, a, b in slices:
            part, offset = images[offset : offset + b - a], offset + b - a
            if t.cancelled or t.future.done():
                continue
            if t.out is None:
                t.out = np.empty((len(t.z), *images.shape[1:]), images.dtype)
            t.out[a:b] = part
            t.finished += b - a
            if t.finished == len(t.z):
                t.future.set_result(t.out)
