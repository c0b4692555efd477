"""`gan-serve bulk`: the CLI of gan_serve.scale.ray_bulk (parse, call, format)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import images as img
from .. import latents as lat
from .. import request as rq
from ..errors import InputError
from ..fsutil import check_output_dir
from ..loading import HowToLoad
from ..request import SeedRequest
from ..scale.ray_bulk import RANGE_SIZE, ModelArgs
from .options import (
    ModelOpt,
    SeedOpt,
    SeedsOpt,
    TruncOpt,
    friendly,
    load_flags,
    load_model,
    progress,
    say_choice,
)

if TYPE_CHECKING:
    from ..generator import Generator


@friendly
@load_flags
def bulk(
    individual: Annotated[Path, typer.Option(
        "--individual", "--outdir", metavar="DIR", help="Folder for one file per seed, named "
        "seed<SEED>.<ext> as `generate --individual` names them; every Ray node must see it at "
        "this path (a shared filesystem).")],
    seed: SeedOpt = None,
    n: Annotated[int | None, typer.Option(
        "--n", "-n", metavar="N", help=f"Number of images (any).  [default: {rq.DEFAULT_N}]")] = None,
    seeds: SeedsOpt = None,
    truncation: TruncOpt = rq.DEFAULT_PSI,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT",
                                           help="png, jpeg or webp.")] = "png",
    address: Annotated[str | None, typer.Option(
        metavar="ADDRESS",
        help="Ray cluster: auto (the one `ray start` runs here), HOST:PORT, ray://HOST:10001, or local "
        "(a new local Ray, on 127.0.0.1 only). Default: $RAY_ADDRESS, else a running local cluster, "
        "else none: the files are written on this machine as `generate --individual` writes them.")
    ] = None,
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
    bytes are those of `gan-serve generate --individual out/` with the same options. With no
    cluster to join (no --address, no $RAY_ADDRESS, none started here with `ray start`) it
    writes on this machine as `generate --individual` does (a local Ray would only add its
    start-up); `--address local` starts a local Ray (on 127.0.0.1 only) anyway.
    """
    from .. import bulk as files
    from ..scale import cluster_to_join, require_ray

    pool = SeedRequest.parse(seed=seed, n=n, seeds=seeds, truncation_psi=truncation, stream=True).seeds
    fmt_name = img.format_for(None, fmt, img.IMAGE_FORMATS)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if range_size < 1 or cpus_per_worker <= 0:
        raise InputError("--range-size must be at least 1 and --cpus-per-worker above 0")
    check_output_dir(individual.parent if str(individual.parent) else ".")
    truncation = lat.check_psi(truncation)
    require_ray()
    todo = files.missing_seeds(individual, pool, fmt_name)  # before any model or Ray: a re-run is quick
    if not todo:
        typer.echo(f"all {len(pool)} files are in {individual}/ already: nothing to write")
        return
    G = load_model(model, how)
    on_ray = cluster_to_join(address) is not None or _joined()
    if not on_ray:
        typer.echo("no Ray cluster to join (--address, $RAY_ADDRESS, `ray start` here): writing on "
                   "this machine as `generate --individual` does")
    with progress(len(pool), "writing") as advance:
        advance(len(pool) - len(todo))
        if on_ray:
            written, where = _on_ray(G, todo, individual, truncation, fmt_name, address, workers,
                                     range_size, cpus_per_worker, advance, ModelArgs(model, how))
        else:
            individual.mkdir(exist_ok=True)  # only now: a run that cannot start leaves no empty folder
            written = files.write_individual(G, files.generated_chunks(G, todo, truncation), individual,
                                             truncation, fmt_name, progress=advance)
            where = "this machine"
    typer.echo(f"wrote {written} files into {individual}/ ({len(pool) - len(todo)} were already "
               f"complete) on {where}, model {G.model_id}, {G.backend}")
    say_choice(G)


def _joined() -> bool:
    """This process is on a Ray cluster already (a Python caller's ray.init)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _on_ray(G: Generator, todo: list[int], folder: Path, truncation: float, fmt: str, address: str | None,
            workers: int | None, range_size: int, cpus_per_worker: float, step: Callable[[int], None],
            args: ModelArgs) -> tuple[int, str]:
    """Write the files of `todo` on the cluster; (files written, the workers' description)."""
    from ..scale import connected
    from ..scale.ray_bulk import identity, run_bulk

    with connected(address):
        folder.mkdir(exist_ok=True)  # only once joined: a run that cannot start leaves no empty folder
        result = run_bulk(args.pinned_to(G), identity(G), todo, folder, truncation, fmt, workers,
                          range_size, cpus_per_worker, progress=step)
    return result.written, f"{result.workers} Ray worker{'s' if result.workers != 1 else ''}"
