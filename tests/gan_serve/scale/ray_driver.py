"""A driver the tests start as its own process, so they can list its Ray and kill it.

    python -m tests.gan_serve.scale.ray_driver serve MODEL FOLDER PORT
    python -m tests.gan_serve.scale.ray_driver write MODEL FOLDER

Both join a new local Ray as `gan-serve bulk --address local` and `serve --ray` (no cluster)
do (`gan_serve.scale.connected`). `serve` writes a few files with `run_bulk`, deploys the app on
Ray Serve at 127.0.0.1:PORT, prints "ready" and waits for its stdin to close. `write` writes
files without end (seed ranges of 2) and prints "ready" once the first range is on disk.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gan_serve
from gan_serve.scale import connected
from gan_serve.scale.ray_bulk import ModelArgs, identity, run_bulk


def _ready(*_: object) -> None:
    if not _ready.said:
        print("ready", flush=True)
        _ready.said = True


_ready.said = False


def main() -> None:
    mode, model, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    G = gan_serve.load(model)
    args = ModelArgs(model).pinned_to(G)
    with connected("local", num_cpus=2, object_store_memory=100_000_000):
        if mode == "write":
            run_bulk(args, identity(G), range(10**6), folder, 1.0, "png", workers=2, range_size=2,
                     progress=_ready)
            return
        run_bulk(args, identity(G), range(4), folder, 1.0, "png", workers=1, range_size=2)
        from gan_serve.http import ServeSettings
        from gan_serve.scale.ray_serve import ReplicaPlan, deploy

        deploy(ServeSettings(models=[model], host="127.0.0.1", port=int(sys.argv[4]), max_batch=4),
               ReplicaPlan(min_replicas=1, max_replicas=1, cpus=0.5))
        _ready()
        sys.stdin.read()  # until the test closes it


if __name__ == "__main__":
    main()
