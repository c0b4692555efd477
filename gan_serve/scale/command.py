"""`gan-serve bulk`: the CLI of gan_serve.scale.ray_bulk (parse, call, format)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import images as img
from .. import latents as lat
from ..cli import TruncOpt, progress_bar
from ..cli_options import (
    HowToLoad,
    ModelOpt,
    say_choice,
)
from ..errors import InputError
from ..fsutil import check_output_dir
from ..request import SeedRequest
from .ray_bulk import RANGE_SIZE


def bulk(
    individual: Annotated[Path, typer.Option(
        "--individual", "--outdir", metavar="DIR", help="Folder for one file per seed, named "
        "seed<SEED>.<ext> as `generate --individual` names them; every Ray node must see it at "
        "this path (a shared filesystem).")],
    seed: Annotated[int | None, typer.Option(
        metavar="SEED", help="First seed; --n images use seeds SEED..SEED+N-1.  [default: 0]")] = None,
    n: Annotated[int | None, typer.Option("--n", "-n", metavar="N",
                                             help="Number of images (any).  [default: 16]")] = None,
    seeds: Annotated[str | None, typer.Option(
        metavar="SEEDS", help="Explicit seed list instead of --seed/--n, e.g. '0-35,100'.")] = None,
    truncation: TruncOpt = 1.0,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT",
                                           help="png, jpeg or webp.")] = "png",
    address: Annotated[str | None, typer.Option(
        metavar="ADDRESS",
        help="Ray cluster: auto (the one `ray start` runs here), HOST:PORT, or ray://HOST:10001. "
        "Default: $RAY_ADDRESS, else a running local cluster, else a new local Ray instance.")] = None,
    workers: Annotated[int | None, typer.Option(
        metavar="N",
        help="Ray actors, each with one model copy.  [default: cluster CPUs / --cpus-per-worker]")] = None,
    cpus_per_worker: Annotated[float, typer.Option(metavar="CPUS",
                                                                  help="CPUs Ray reserves per actor.")] = 1.0,
    range_size: Annotated[int, typer.Option(
        metavar="N", help="Seeds per unit of work (a progress step; what a killed worker redoes at most).")
    ] = RANGE_SIZE,
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Write one file per seed on a Ray cluster; a re-run skips the files that are complete.

    `gan-serve bulk --seed 0 --n 1000000 --individual out/ --address auto`: the files and their
    bytes are those of `gan-serve generate --individual out/` with the same options.
    """
    from . import connect, import_ray
    from .ray_bulk import ModelArgs, identity, run_bulk

    import_ray()  # before any work: a missing extra is one line
    pool = SeedRequest.parse(seed=seed, n=n, seeds=seeds, truncation_psi=truncation, stream=True).seeds
    fmt_name = img.format_for(None, fmt, img.IMAGE_FORMATS)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if range_size < 1 or cpus_per_worker <= 0:
        raise InputError("--range-size must be at least 1 and --cpus-per-worker above 0")
    check_output_dir(individual.parent if str(individual.parent) else ".")
    truncation = lat.check_psi(truncation)
    G = how.load(model)
    args = ModelArgs(model, how).pinned_to(G)
    started = connect(address)
    individual.mkdir(exist_ok=True)  # only now: a run that cannot start leaves no empty folder
    step, close = progress_bar(len(pool), "writing")
    try:
        result = run_bulk(args, identity(G), pool, individual, truncation, fmt_name, workers, range_size,
                          cpus_per_worker, progress=step)
    finally:
        close()
        if started:
            import_ray().shutdown()
    plural = "s" if result.workers != 1 else ""
    typer.echo(f"wrote {result.written} files into {individual}/ ({result.skipped} were already "
               f"complete) on {result.workers} Ray worker{plural}, model {G.model_id}, {G.backend}")
    say_choice(G)
