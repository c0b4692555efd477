"""`gan-serve bulk`: `generate --individual DIR` spread over a Ray cluster.

The unit of work is a seed range (`range_size` consecutive seeds of the job). Each Ray actor
loads the model once and writes the files of the ranges it is handed with the single-process
writer (`gan_serve.bulk.write_individual`): same names (`outputs.seed_filename`), same bytes,
same atomic temp-and-rename. A range's files that already exist are skipped: a file appears
under its final name only once it is complete, so a final name means "done" and a killed job
resumes where it stopped. The driver keeps a few ranges in flight per actor and feeds a
progress callback (the CLI's tqdm bar) as ranges finish anywhere in the cluster.

Every node must see the model file and DIR at the same path (a shared filesystem). Workers load
the model exactly as the driver did (its backend, precision and device, pinned, not re-chosen by
`auto` on another machine) and must report the driver's model id and backend, else the job
stops before writing: files that differ by node would break "same seed, same bytes".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import bulk
from .. import outputs as out
from ..errors import GanServeError, OutputError, first_line
from ..fsutil import check_output_dir, clean_stale_temps
from ..loading import HowToLoad
from ..protocols import ImageGenerator
from . import import_ray

RANGE_SIZE = 1024  # seeds per unit of work: 4 of bulk.CHUNK, a progress step every few seconds
IN_FLIGHT = 2  # ranges queued per actor, so none idles while the driver hands out the next


@dataclass(frozen=True)
class ModelArgs:
    """Which model every worker loads and how: the command's own `--model` and HowToLoad,
    pinned by `pinned_to` to what the driver's load chose."""

    model: str | None = None  # a path (made absolute) or a bundled name
    how: HowToLoad = field(default_factory=HowToLoad)

    def pinned_to(self, G: ImageGenerator) -> ModelArgs:
        """These arguments with the driver's choices (backend, precision, device) fixed, and a
        model path that does not depend on the driver's working directory."""
        model = self.model
        if model is not None and Path(model).exists():
            model = str(Path(model).resolve())
        return ModelArgs(model, self.how.pinned_to(G))

    def load(self) -> ImageGenerator:
        """The worker's load: as the driver's, without the CLI's notes (one per worker)."""
        return self.how.load(self.model)


def identity(G: ImageGenerator) -> tuple[str, str, int]:
    """What must agree across the cluster for the files to agree: model id, backend, micro-batch."""
    return G.model_id, G.backend, G.runner.micro_batch


class RangeWriter:
    """The body of one Ray actor: a model loaded once, then any number of seed ranges."""

    def __init__(self, args: ModelArgs, folder: str, truncation: float, fmt: str) -> None:
        from ..runtime import configure_threads

        configure_threads()  # what the console scripts do first (Ray sets OMP_NUM_THREADS to num_cpus)
        self.args, self.folder, self.truncation, self.fmt = args, Path(folder), truncation, fmt
        self.G: ImageGenerator | None = None

    def start(self) -> tuple[str, str, int]:
        """Load the model (errors come back to the driver as the method's exception)."""
        import socket

        try:
            check_output_dir(self.folder)
        except OutputError as exc:
            raise OutputError(f"on node {socket.gethostname()}: {exc}; every Ray node needs the "
                              "output folder at the same path (a shared filesystem)") from None
        self.G = self.args.load()
        return identity(self.G)

    def write(self, seeds: Sequence[int]) -> tuple[int, int]:
        """Write the files of `seeds` that do not exist yet; return (written, skipped)."""
        todo = [s for s in seeds if not os.path.lexists(self.folder / out.seed_filename(s, self.fmt))]
        written = 0
        if todo:
            chunks = bulk.generated_chunks(self.G, todo, self.truncation)
            # clean=False: a temp file of another node's live writer has a pid unknown here
            written = bulk.write_individual(self.G, chunks, self.folder, self.truncation, self.fmt,
                                            clean=False)
        return written, len(seeds) - len(todo)


@dataclass
class BulkResult:
    written: int = 0  # files this run wrote
    skipped: int = 0  # files that already existed (an earlier, interrupted run wrote them)
    workers: int = 0  # Ray actors used


def seed_ranges(seeds: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    """Consecutive slices of `seeds` (a range slices into ranges: constant memory)."""
    for i in range(0, len(seeds), size):
        yield seeds[i:i + size]


def default_workers(cpus_per_worker: float) -> int:
    """One actor per `cpus_per_worker` CPUs the cluster has."""
    ray = import_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))


def run_bulk(args: ModelArgs, expected: tuple[str, str, int], seeds: Sequence[int], folder: Path,
             truncation: float, fmt: str, workers: int | None = None, range_size: int = RANGE_SIZE,
             cpus_per_worker: float = 1.0, progress: Callable[[int], None] | None = None) -> BulkResult:
    """Write one file per seed of `seeds` into `folder` on the connected Ray cluster.

    `args` are pinned model arguments (ModelArgs.pinned_to), `expected` the driver's
    `identity(G)`; `progress` gets the number of seeds of each finished range.
    """
    ray = import_ray()
    check_output_dir(folder)
    clean_stale_temps(folder)  # once, here: the writers themselves must not (see RangeWriter.write)
    n_ranges = -(-len(seeds) // range_size)
    workers = min(workers or default_workers(cpus_per_worker), max(1, n_ranges))
    actor = ray.remote(RangeWriter).options(num_cpus=cpus_per_worker)
    actors = [actor.remote(args, str(folder.resolve()), truncation, fmt) for _ in range(workers)]
    result = BulkResult(workers=workers)
    try:
        for got in _get(ray, [a.start.remote() for a in actors]):
            if tuple(got) != tuple(expected):
                raise GanServeError(f"a Ray worker loaded {got[0]} on {got[1]} (micro-batch {got[2]}), "
                                    f"the driver {expected[0]} on {expected[1]} (micro-batch "
                                    f"{expected[2]}); every node needs the same model file and software")
        todo = seed_ranges(seeds, range_size)
        in_flight: dict[object, object] = {}  # ObjectRef -> the actor working on it
        for a in actors:
            for chunk in _take(todo, IN_FLIGHT):
                in_flight[a.write.remote(chunk)] = a
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            a = in_flight.pop(ref)
            written, skipped = _get(ray, ref)
            result.written += written
            result.skipped += skipped
            if progress:
                progress(written + skipped)
            for chunk in _take(todo, 1):
                in_flight[a.write.remote(chunk)] = a
    finally:
        for a in actors:  # a killed writer leaves temp files only, which the next run removes
            ray.kill(a)
    return result


def _take(it: Iterator[Sequence[int]], k: int) -> list[Sequence[int]]:
    return [x for _, x in zip(range(k), it, strict=False)]


def _get(ray: object, refs: object) -> object:
    """ray.get, with our own errors from a worker raised as themselves and a lost worker as one
    line that says how to resume (both one line in the CLI); a bug keeps its traceback."""
    errors = ray.exceptions
    try:
        return ray.get(refs)
    except errors.RayTaskError as exc:
        if isinstance(exc.cause, GanServeError):
            raise exc.cause from None
        raise
    except (errors.RayActorError, errors.ObjectLostError, errors.NodeDiedError) as exc:
        why = first_line(exc)
        raise GanServeError(f"a Ray worker was lost ({why}); the files written so far are complete: "
                            "run the same command again to resume") from None
