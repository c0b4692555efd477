"""`gan-serve`: thin typer commands over the Python API (gan_serve.generator).

Every command parses its options, calls the API, and formats; user mistakes come back
as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from . import bulk
from . import images as img
from . import latents as lat
from . import outputs as out
from . import request as rq
from .cli_options import (
    ArchKwargsOpt,
    ArchOpt,
    HowToLoad,
    ModelOpt,
    OutputRangeOpt,
    ZDimOpt,
    friendly,
    load_flags,
    load_model,
    option_names,
    say_choice,
)
from .commands.project import project
from .errors import InputError
from .fsutil import STDOUT, check_output_dir, write_bytes_atomic
from .http.command import serve
from .protocols import ImageGenerator
from .request import PathRequest, SeedRequest, read_latents
from .spec import LoadOptions

app = typer.Typer(
    name="gan-serve",
    help="Generate reproducible images from DCGAN-style generator checkpoints.\n\n"
    "Seeds are the interface: `--seed 42 --n 64` means seeds 42..105, and the same seed "
    "always gives the same image (same bytes with the same backend).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

TruncOpt = Annotated[
    float, typer.Option("--truncation", "--truncation-psi", "--psi", "--trunc", metavar="PSI",
                        help="Truncation psi in [0, 2]: z' = psi * z. 1 is off; lower is tamer.")
]


def progress_bar(total: int, label: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A tqdm bar on stderr for long work (hidden for small jobs and when not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="img", file=sys.stderr,
               disable=True if total < 64 else None, leave=False)
    return bar.update, bar.close


def seed_request(seed: int | None, n: int | None, seeds: str | None, truncation: float,
                 candidates: int | None, stream: bool) -> SeedRequest:
    """The options as a SeedRequest; a grid larger than memory allows says how to stream."""
    if not stream and n is not None and n > rq.DEFAULT_LIMITS.max_n:
        raise InputError(f"n must be an integer from 1 to {rq.DEFAULT_LIMITS.max_n} for a grid, got "
                         f"{n}; --individual DIR alone (no --output) writes any number of files")
    with option_names():
        return SeedRequest.parse(seed=seed, n=n, seeds=seeds, truncation_psi=truncation,
                                 candidates=candidates, stream=stream)


@app.command()
@friendly
@load_flags
def generate(
    seed: Annotated[int | None, typer.Option(
        metavar="SEED", help="First seed; --n images use seeds SEED..SEED+N-1.  [default: 0]")] = None,
    n: Annotated[int | None, typer.Option(
        "--n", "-n", metavar="N", help=f"Number of images (1..{lat.MAX_N} for a grid, at most "
        f"{rq.MAX_PIXELS:,} pixels in all; any number with --individual DIR and no --output: files "
        "stream to disk). With --rank-with: how many to keep.  [default: 16]")] = None,
    seeds: Annotated[str | None, typer.Option(
        metavar="SEEDS", help="Explicit seed list instead of --seed/--n, e.g. '0-35,100'.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="PATH", help="Grid file (.png, .jpg, .webp), or - for stdout. "
        "Default grid.<format>, or none when --individual or --latents-out is given.")] = None,
    nrow: Annotated[int | None, typer.Option(
        metavar="N", help="Images per grid row (default ceil(sqrt(n))).")] = None,
    truncation: TruncOpt = 1.0,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="png, jpeg (or jpg) or webp (default: from the suffix, else png).")] = None,
    individual: Annotated[Path | None, typer.Option(
        "--individual", "--outdir", metavar="DIR", help="Also write one file per seed into this "
        "folder, named seed<SEED>.<ext> (encoded in parallel with generation; files appear "
        "batch by batch, each complete).")] = None,
    latents_out: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Save the latents (N, z_dim) of the images as .npy, for "
        "`interpolate --latents`; alone, it writes only the latents.")] = None,
    rank_with: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Discriminator checkpoint: generate --candidates images and keep "
        "the N it scores highest (the checkpoint may be the generator's own file if it holds "
        "both).")] = None,
    candidates: Annotated[int, typer.Option(
        metavar="N", help="Candidates scored with --rank-with (from --seed, or --seeds).")] = 512,
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Generate a grid of images: `gan-serve generate --seed 42 --n 64 -o grid.png`."""
    streaming = individual is not None and output is None and rank_with is None and latents_out is None
    req = seed_request(seed, n, seeds, truncation, candidates if rank_with else None, streaming)
    fmt_name = img.format_for(output, fmt, img.IMAGE_FORMATS)
    img.check_nrow(nrow)
    if output is None and individual is None and latents_out is None:
        output = Path(f"grid{img.EXTENSIONS[fmt_name]}")
    for target in (output, individual, latents_out):
        if target is not None:
            check_output_dir(target.parent)

    G = how.load(model)
    psi = req.truncation_psi
    if streaming:
        _write_files(G, bulk.generated_chunks(G, req.seeds, psi), len(req), individual, psi, fmt_name)
        say_choice(G)
        return
    chosen = list(req.seeds)
    if output is not None or individual is not None or rank_with is not None:
        req.check_output(G, fmt_name, nrow, grid=output is not None)  # before any image is made
        chosen, images = _images(G, req, rank_with)
    if output is not None:
        write_bytes_atomic(output, out.grid_file(images, nrow, fmt_name, req.provenance(G, chosen)))
        typer.echo(f"wrote {output}: {len(chosen)} images (seeds {lat.format_seeds(chosen)}), "
                   f"model {G.model_id}, {G.backend}", err=str(output) == STDOUT)
    if individual is not None:
        chunks = ((chosen[i:i + bulk.CHUNK], images[i:i + bulk.CHUNK])
                  for i in range(0, len(chosen), bulk.CHUNK))
        _write_files(G, chunks, len(chosen), individual, psi, fmt_name)
    if latents_out is not None:
        out.save_latents(latents_out, G.latents(chosen))
        typer.echo(f"wrote latents {latents_out} {(len(chosen), G.z_dim)}", err=str(output) == STDOUT)
    say_choice(G)


def _images(G: ImageGenerator, req: SeedRequest, rank_with: Path | None) -> tuple[list[int], np.ndarray]:
    """The request's images, and with a discriminator the best req.keep of them (best first)."""
    D = None
    if rank_with is not None:
        from .discriminator import check_compatible, load_discriminator, rank_images

        D, d_cfg = load_discriminator(rank_with)
        check_compatible(d_cfg, G)
    step, close = progress_bar(len(req), "generating")
    try:
        images = G.synthesize(req.latents(G.z_dim), step)
    finally:
        close()
    if D is None:
        return list(req.seeds), images
    chosen, _, images = rank_images(D, list(req.seeds), images, req.keep, G.spec.output_range)
    return chosen, images


def _write_files(G: ImageGenerator, chunks: bulk.Chunks, total: int, folder: Path, truncation: float,
                 fmt: str) -> None:
    folder.mkdir(exist_ok=True)  # only now: a failed run leaves no empty folder
    step, close = progress_bar(total, "writing")
    try:
        written = bulk.write_individual(G, chunks, folder, truncation, fmt, progress=step)
    finally:
        close()
    typer.echo(f"wrote {written} files into {folder}/, model {G.model_id}, {G.backend}")


@app.command()
@friendly
@load_flags
def interpolate(
    from_seed: Annotated[int | None, typer.Option(
        "--from", metavar="SEED", help="Seed to start from.")] = None,
    to_seed: Annotated[int | None, typer.Option("--to", metavar="SEED", help="Seed to end at.")] = None,
    seeds: Annotated[str | None, typer.Option(
        metavar="SEEDS", help="A path through several seeds instead of --from/--to, e.g. "
        "'3,17,42'.")] = None,
    latents: Annotated[list[Path] | None, typer.Option(
        metavar="PATH", help="Key latents from .npy files (K, z_dim), e.g. saved by generate "
        "--latents-out; repeat to chain files.")] = None,
    steps: Annotated[int, typer.Option(
        metavar="N", help=f"Frames per segment, both ends included (2..{lat.MAX_STEPS}).")] = 16,
    method: Annotated[str, typer.Option(
        metavar="METHOD", help="slerp (default, stays on the Gaussian shell) or lerp.")] = "slerp",
    loop: Annotated[bool, typer.Option("--loop", help="Return to the first key at the end.")] = False,
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="PATH", help="A strip (.png, .jpg, .webp) or an animation "
        "(.gif, or .webp with --animate); - for stdout. The default, like HTTP's, is a png "
        "strip.")] = Path("interpolation.png"),
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT", help="png, jpeg (or jpg), webp or gif (default: from "
        "the suffix).")] = None,
    animate: Annotated[bool | None, typer.Option(
        "--animate/--strip", help="Animation or one-row strip; default: animation for gif.")] = None,
    duration_ms: Annotated[int, typer.Option(
        metavar="MS", help="Animation frame duration in ms (10..10000).")] = out.DEFAULT_DURATION_MS,
    nrow: Annotated[int | None, typer.Option(
        metavar="N", help="Frames per strip row (default: all in one row).")] = None,
    truncation: TruncOpt = 1.0,
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Interpolate between seeds: `gan-serve interpolate --from 3 --to 17 --steps 16 -o anim.gif`."""
    with option_names():
        req = PathRequest.parse(from_seed=from_seed, to_seed=to_seed, seeds=seeds,
                                latents=read_latents(latents) if latents else None, steps=steps,
                                method=method, loop=loop, truncation_psi=truncation)
    named = fmt.lower().replace("jpg", "jpeg") if fmt else img.SUFFIXES.get(output.suffix.lower())
    animate = named == "gif" if animate is None else animate
    fmt_name = img.format_for(output, fmt, img.ANIMATION_FORMATS if animate else img.IMAGE_FORMATS)
    img.check_nrow(nrow)
    if animate:
        img.check_duration(duration_ms)
    check_output_dir(output.parent)

    G = how.load(model)
    req.check_output(G, fmt_name, animate, nrow, duration_ms)  # before any frame is made
    step, close = progress_bar(len(req), "interpolating")
    try:
        frames = G.synthesize(req.latents(G.z_dim), step)
    finally:
        close()
    write_bytes_atomic(output, out.path_file(frames, fmt_name, animate, req.provenance(G), nrow,
                                             duration_ms))
    what = "animation" if animate else "strip"
    typer.echo(f"wrote {output}: {what} of {len(frames)} frames ({method}), "
               f"model {G.model_id}, {G.backend}", err=str(output) == STDOUT)


@app.command()
@friendly
def convert(
    source: Annotated[Path, typer.Argument(
        metavar="SOURCE", help="Checkpoint to convert (.pth, .pt, .safetensors).")],
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="Native checkpoint to write (.safetensors).")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Store weights as float16 (half the size).")] = False,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    output_range: OutputRangeOpt = None,
    z_dim: ZDimOpt = None,
    trust_pickle: Annotated[bool, typer.Option(
        "--trust-pickle", help="SOURCE is a full-model pickle (torch.save(model)) that you made or "
        "trust: unpickle it, which RUNS CODE from the file, and write its weights natively, once. "
        "Never implied; no other command loads such a file.")] = False,
) -> None:
    """Convert a legacy checkpoint to the native format (safetensors + architecture config).

    The native file is data: it loads anywhere without running code (a custom class only with
    its --arch).
    """
    if dest.suffix != ".safetensors":
        raise InputError(f"the destination must end in .safetensors, got {dest.name!r}")
    check_output_dir(dest.parent)
    options = LoadOptions.from_text(arch, arch_kwargs, output_range, z_dim)
    if trust_pickle:
        from .full_pickle import WARNING, load_full_pickle
        from .generator import Generator

        typer.echo(WARNING.format(path=source), err=True)
        G = Generator(load_full_pickle(source, options))
    else:
        G = load_model(str(source), options, backend="torch")
    typer.echo(f"read {source}: {G.loaded.source_format}")
    typer.echo(f"architecture: {G.spec.describe()}")
    typer.echo(f"output range: {G.spec.output_range[0]:g},{G.spec.output_range[1]:g}")
    G.save(dest, fp16=fp16)
    typer.echo(f"wrote {dest} ({'fp16' if fp16 else 'fp32'}, {dest.stat().st_size:,} bytes)")


INSPECT_SAMPLES = 256  # images inspect generates for its health verdict by default


@app.command()
@friendly
@load_flags
def inspect(
    checkpoint: Annotated[str, typer.Argument(
        metavar="CHECKPOINT", help="Checkpoint path or bundled model name.")],
    samples: Annotated[int | None, typer.Option(
        metavar="N", help="Images generated (seeds 0..N-1) for the health verdict; 0 skips it.  "
        f"[default: {INSPECT_SAMPLES}, fewer where the output budget holds fewer]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    *, how: HowToLoad,
) -> None:
    """Say what a checkpoint is and whether its samples look healthy (mode collapse, black images)."""
    from .health import inspect_generator

    if samples is not None and not 0 <= samples <= lat.MAX_N:
        raise InputError(f"--samples must be from 0 to {lat.MAX_N}, got {samples}")
    G = how.load(checkpoint, allow_nonfinite=True)  # the report names NaN/Inf tensors
    if samples is None:
        samples = min(INSPECT_SAMPLES, rq.DEFAULT_LIMITS.images_within(G.img_resolution))
    rq.DEFAULT_LIMITS.check_output(samples, G.img_resolution)
    step, close = progress_bar(samples, "sampling")
    try:
        report = inspect_generator(G, samples, progress=step)
    finally:
        close()
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())


# Registered from a module that imports typer only: `serve` parses its options (and says which
# extra is missing) without importing fastapi/uvicorn, which `generate` should not pay for.
app.command("serve")(friendly(serve))


app.command("project")(project)


def _register_bulk() -> None:
    from .scale.command import bulk  # Ray itself is imported only when the command runs

    app.command("bulk")(friendly(load_flags(bulk)))


_register_bulk()


def main() -> None:
    """Console-script entry point: thread settings first, before anything loads torch."""
    from .runtime import configure_threads

    configure_threads()
    app()
