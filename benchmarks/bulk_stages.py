"""Where the CPU of one `generate --individual` run goes, stage by stage, in one process.

`profile(model, n, folder)` runs what the CLI runs (`bulk.generated_chunks` into
`bulk.write_individual`, with the CLI's progress bar) with each stage wrapped in a timer of
its own thread's CPU (user + sys), and attributes every thread's CPU at the end (Linux
/proc/self/task): the model's OpenMP threads count as generation. Call it where the threads
were set before torch loaded (`runtime.configure_threads`, as bulk_share.py and the CLI do).
Start-up (interpreter, imports, model load) is measured by `bulk_share.py` as a `--n 1` process.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

STAGES = {  # label: what it holds
    "generation": "the forward passes: the main thread's share and the model's OpenMP threads",
    "latents": "seed -> latent (numpy RandomState per seed)",
    "PNG encoding: Pillow's zlib level 6 and filters": "PIL Image.save into memory",
    "PNG encoding: the rest": "to_pil, the seed's text chunk, splicing the chunks",
    "file create + write + close": "os.open(O_EXCL) of the temp name, os.write, os.close",
    "commit: syncfs, renames, folder fsync": "per chunk of 256, on the main thread",
    "thread pool, GIL and the rest": "what no wrapper saw (pool wake-ups, Python glue)",
}


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process, by native thread id (Linux only)."""
    tick, got = os.sysconf("SC_CLK_TCK"), {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            got[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return got


@contextlib.contextmanager
def _wrapped(acc: collections.Counter, lock: threading.Lock) -> Iterator[set[int]]:
    """Each stage's function timed by its thread's CPU; yields the encoder threads' ids."""
    from PIL import Image

    from gan_serve import bulk, generator, request
    from gan_serve import outputs as out

    encoders: set[int] = set()
    saved = []

    def timer(f: Callable, label: str, note: Callable[[], None] | None = None) -> Callable:
        def timed(*a: object, **k: object) -> object:
            if note:
                note()
            c = time.thread_time()
            try:
                return f(*a, **k)
            finally:
                with lock:
                    acc[label] += time.thread_time() - c
        return timed

    def wrap(owner: object, name: str, label: str, note: Callable[[], None] | None = None) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, timer(getattr(owner, name), label, note))

    single_encoder = out.single_encoder
    wrap(generator.Generator, "generate", "generate")
    wrap(request.SeedRequest, "latents", "latents")
    wrap(bulk, "_write_slice", "slice", lambda: encoders.add(threading.get_native_id()))
    saved.append((out, "single_encoder", single_encoder))
    out.single_encoder = lambda *a: timer(single_encoder(*a), "encode")  # its encode(seed, image)
    wrap(Image.Image, "save", "pil")
    wrap(bulk._Batch, "commit", "commit")
    try:
        yield encoders
    finally:
        for owner, name, f in reversed(saved):
            setattr(owner, name, f)


def _raw_cpu(G: object, n: int = 1024) -> float:
    """CPU seconds per image of `G.generate` alone (every thread of this process)."""
    c = time.process_time()
    G.generate(range(n))
    return (time.process_time() - c) / n


def profile(model: str | None, n: int, folder: Path) -> str:
    """A markdown table of one run's CPU per image and its share, stage by stage."""
    import gan_serve
    from gan_serve import bulk
    from gan_serve.commands.options import progress

    G = gan_serve.load(model)
    G.generate(range(16))  # the first pass's one-off set-up belongs to the start-up
    raw = [_raw_cpu(G)]
    acc: collections.Counter = collections.Counter()
    folder.mkdir(parents=True, exist_ok=True)
    before, c0, t0 = _thread_cpu(), time.process_time(), time.perf_counter()
    with _wrapped(acc, threading.Lock()) as encoders, progress(n, "writing") as advance:
        bulk.write_individual(G, bulk.generated_chunks(G, range(n), 1.0), folder, 1.0, "png",
                              progress=advance)
    wall, total = time.perf_counter() - t0, time.process_time() - c0
    after = _thread_cpu()
    raw.append(_raw_cpu(G))
    main = threading.main_thread().native_id
    others = sum(after[t] - before.get(t, 0.0) for t in after if t != main and t not in encoders)
    stages = {  # the OpenMP threads' CPU goes to generation; tqdm's monitor sleeps
        "generation": acc["generate"] - acc["latents"] + others,
        "latents": acc["latents"],
        "PNG encoding: Pillow's zlib level 6 and filters": acc["pil"],
        "PNG encoding: the rest": acc["encode"] - acc["pil"],
        "file create + write + close": acc["slice"] - acc["encode"],
        "commit: syncfs, renames, folder fsync": acc["commit"],
    }
    stages["thread pool, GIL and the rest"] = total - sum(stages.values())
    lines = [f"{n:,} files, {wall:.1f} s wall, {total:.1f} s CPU ({total / n * 1e3:.3f} ms per "
             f"image, {n / wall:.0f} img/s), {G.backend}; `Generator.generate` alone before and "
             f"after: {raw[0] * 1e3:.3f} and {raw[1] * 1e3:.3f} ms CPU per image", "",
             "| stage | CPU ms per image | share of the run's CPU | what |", "|---|---:|---:|---|"]
    lines += [f"| {k} | {v / n * 1e3:.3f} | {v / total:.0%} | {STAGES[k]} |" for k, v in stages.items()]
    return "\n".join(lines)
