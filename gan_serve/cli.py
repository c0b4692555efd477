"""`gan-serve`: thin typer commands over the Python API (gan_serve.generator).

Every command parses its options, calls the API, and formats; user mistakes come back
as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from . import bulk
from . import images as img
from . import latents as lat
from . import outputs as out
from .cli_options import (
    ArchKwargsOpt,
    ArchOpt,
    BackendOpt,
    DeviceOpt,
    ModelOpt,
    OutputRangeOpt,
    PrecisionOpt,
    TrustCodeOpt,
    ZDimOpt,
    friendly,
    load_model,
    say_choice,
)
from .errors import InputError
from .fsutil import STDOUT, atomic_path, check_output_dir, write_bytes_atomic
from .http.command import serve
from .protocols import ImageGenerator
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
    float, typer.Option("--truncation", "--truncation-psi", "--psi",
                        help="Truncation psi in [0, 2]: z' = psi * z. 1 is off; lower is tamer.")
]


def progress_bar(total: int, label: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A tqdm bar on stderr for long work (hidden for small jobs and when not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="img", file=sys.stderr,
               disable=True if total < 64 else None, leave=False)
    return bar.update, bar.close


def save_latents(path: Path, z: np.ndarray) -> None:
    if path.suffix != ".npy":
        raise InputError(f"latents are saved as .npy, got {path.name!r}")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, z.astype(np.float32))


MAX_LATENT_VALUES = lat.MAX_N * 1024  # key latents per file: 4096 keys of z_dim 1024


def check_npy_header(path: Path) -> None:
    """Refuse a .npy whose header declares more than MAX_LATENT_VALUES, before reading it."""
    from numpy.lib import format as npy

    with open(path, "rb") as fh:
        version = npy.read_magic(fh)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(fh)
    if dtype.kind != "f" or len(shape) > 2 or int(np.prod(shape, dtype=object)) > MAX_LATENT_VALUES:
        raise ValueError(f"it declares {dtype} values of shape {shape}; latents are at most "
                         f"{MAX_LATENT_VALUES:,} floats, shaped (K, z_dim)")


def load_latents(paths: list[Path]) -> np.ndarray:
    arrays = []
    for p in paths:
        try:
            check_npy_header(p)
            a = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot read latents from {str(p)!r}: {first}") from None
        arrays.append(np.atleast_2d(a).astype(np.float32))
    try:
        return np.concatenate(arrays)
    except ValueError:
        raise InputError("latent files have different z sizes") from None


def _seed_pool(seed: int | None, n: int | None, seeds: str | None, candidates: int | None,
               limit: int = lat.MAX_N) -> tuple[Sequence[int], int]:
    """The seeds to generate (or, with --rank-with, to choose from) and how many to keep."""
    if seeds is not None and seed is not None:
        raise InputError("give either --seeds or --seed, not both")
    if seeds is not None and n is not None and candidates is None:
        raise InputError("give either --seeds or --seed/--n, not both (--seeds says how many)")
    seed, n = seed or 0, 16 if n is None else n
    if n > lat.MAX_N and limit == lat.MAX_N:
        raise InputError(f"n must be an integer from 1 to {lat.MAX_N} for a grid, got {n}; "
                         "--individual DIR alone (no --output) writes any number of files")
    lat.check_n(n, limit)
    count = n if candidates is None else candidates
    pool = lat.parse_seeds(seeds, limit) if seeds is not None else lat.seed_span(seed, count, limit)
    if candidates is None:
        return pool, len(pool)
    if len(pool) < n:
        raise InputError(f"--rank-with needs at least --n ({n}) candidates, got {len(pool)}")
    return pool, n


@app.command()
@friendly
def generate(
    seed: Annotated[int | None, typer.Option(
        help="First seed; --n images use seeds SEED..SEED+N-1.  [default: 0]")] = None,
    n: Annotated[int | None, typer.Option(
        "--n", "-n", help=f"Number of images (1..{lat.MAX_N} for a grid; any number with "
        "--individual DIR and no --output: files stream to disk).  [default: 16]")] = None,
    seeds: Annotated[str | None, typer.Option(
        help="Explicit seed list instead of --seed/--n, e.g. '0-35,100'.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Grid file (.png, .jpg, .webp), or - for stdout. Default "
        "grid.<format>, or none when --individual is given.")] = None,
    nrow: Annotated[int | None, typer.Option(help="Images per grid row (default ceil(sqrt(n))).")] = None,
    truncation: TruncOpt = 1.0,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="png, jpeg or webp "
                                               "(default: from the suffix, else png).")] = None,
    individual: Annotated[Path | None, typer.Option(
        help="Also write one file per seed into this folder, named seed<SEED>.<ext> (encoded in "
        "parallel with generation; files appear batch by batch, each complete).")] = None,
    latents_out: Annotated[Path | None, typer.Option(
        help="Save the latents (N, z_dim) of the images as .npy, for `interpolate --latents`.")] = None,
    rank_with: Annotated[Path | None, typer.Option(
        help="Discriminator checkpoint: generate --candidates images and keep the N it scores "
        "highest (the checkpoint may be the generator's own file if it holds both).")] = None,
    candidates: Annotated[int, typer.Option(help="Candidates scored with --rank-with.")] = 512,
    model: ModelOpt = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    output_range: OutputRangeOpt = None,
    z_dim: ZDimOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = "cpu",
    precision: PrecisionOpt = None,
    trust_code: TrustCodeOpt = False,
) -> None:
    """Generate a grid of images: `gan-serve generate --seed 42 --n 64 -o grid.png`."""
    streaming = individual is not None and output is None and rank_with is None and latents_out is None
    pool, n = _seed_pool(seed, n, seeds, candidates if rank_with else None,
                         lat.MAX_FILES if streaming else lat.MAX_N)
    fmt_name = img.format_for(output, fmt, img.IMAGE_FORMATS)
    if output is None and individual is None:
        output = Path(f"grid{img.EXTENSIONS[fmt_name]}")
    for target in (output, individual, latents_out):
        if target is not None:
            check_output_dir(target.parent)
    truncation = lat.check_psi(truncation)

    G = load_model(model, LoadOptions.from_text(arch, arch_kwargs, output_range, z_dim), backend,
                   device, precision, trust_code)
    if streaming:
        _write_files(G, bulk.generated_chunks(G, pool, truncation), len(pool), individual,
                     truncation, fmt_name)
        say_choice(G)
        return
    step, close = progress_bar(len(pool), "generating")
    try:
        if rank_with:
            from .discriminator import check_compatible, load_discriminator, rank_seeds

            D, d_cfg = load_discriminator(rank_with)
            check_compatible(d_cfg, G)
            chosen, _, images = rank_seeds(G, D, pool, n, truncation, progress=step)
        else:
            chosen = pool
            images = G.generate(chosen, truncation, progress=step)
    finally:
        close()
    extra = {"ranked_from": lat.format_seeds(pool)} if rank_with else {}
    if output is not None:
        write_bytes_atomic(output, out.grid_bytes(G, chosen, images, truncation, nrow, fmt_name, **extra))
        typer.echo(f"wrote {output}: {len(chosen)} images (seeds {lat.format_seeds(chosen)}), "
                   f"model {G.model_id}, {G.backend}", err=str(output) == STDOUT)
    if individual is not None:
        chunks = ((chosen[i:i + bulk.CHUNK], images[i:i + bulk.CHUNK])
                  for i in range(0, len(chosen), bulk.CHUNK))
        _write_files(G, chunks, len(chosen), individual, truncation, fmt_name)
    if latents_out is not None:
        save_latents(latents_out, G.latents(chosen))
        typer.echo(f"wrote latents {latents_out} {tuple((len(chosen), G.z_dim))}")
    say_choice(G)


def _write_files(G: ImageGenerator, chunks: bulk.Chunks, total: int, folder: Path, truncation: float,
                 fmt: str) -> None:
    folder.mkdir(exist_ok=True)  # only now: a failed run leaves no empty folder
    step, close = progress_bar(total, "writing")
    try:
        written = bulk.write_individual(G, chunks, folder, truncation, fmt, progress=step)
    finally:
        close()
    typer.echo(f"wrote {written} files into {folder}/, model {G.model_id}, "
               f"{G.backend}")


@app.command()
@friendly
def interpolate(
    from_seed: Annotated[int | None, typer.Option("--from", help="Seed to start from.")] = None,
    to_seed: Annotated[int | None, typer.Option("--to", help="Seed to end at.")] = None,
    seeds: Annotated[str | None, typer.Option(
        help="A path through several seeds instead of --from/--to, e.g. '3,17,42'.")] = None,
    latents: Annotated[list[Path] | None, typer.Option(
        help="Key latents from .npy files (K, z_dim), e.g. saved by generate --latents-out; "
        "repeat to chain files.")] = None,
    steps: Annotated[int, typer.Option(
        help=f"Frames per segment, both ends included (2..{lat.MAX_STEPS}).")] = 16,
    method: Annotated[str, typer.Option(
        help="slerp (default, stays on the Gaussian shell) or lerp.")] = "slerp",
    loop: Annotated[bool, typer.Option("--loop", help="Return to the first key at the end.")] = False,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="A strip (.png, .jpg, .webp) or an animation (.gif, or .webp "
        "with --animate); - for stdout (a png strip unless --animate).")] = Path("interpolation.png"),
    animate: Annotated[bool | None, typer.Option(
        "--animate/--strip", help="Animation or one-row strip; default: animation for .gif.")] = None,
    duration_ms: Annotated[int, typer.Option(
        help="Animation frame duration in ms.")] = out.DEFAULT_DURATION_MS,
    nrow: Annotated[int | None, typer.Option(help="Frames per strip row (default: all in one row).")] = None,
    truncation: TruncOpt = 1.0,
    model: ModelOpt = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    output_range: OutputRangeOpt = None,
    z_dim: ZDimOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = "cpu",
    precision: PrecisionOpt = None,
    trust_code: TrustCodeOpt = False,
) -> None:
    """Interpolate between seeds: `gan-serve interpolate --from 3 --to 17 --steps 16 -o anim.gif`."""
    given = [x for x in ((from_seed is not None or to_seed is not None), seeds, latents) if x]
    if len(given) != 1:
        raise InputError("give exactly one of --from/--to, --seeds or --latents")
    if from_seed is not None or to_seed is not None:
        if from_seed is None or to_seed is None:
            raise InputError("--from and --to go together")
        key_seeds: list[int] | None = [lat.check_seed(from_seed), lat.check_seed(to_seed)]
    else:
        key_seeds = lat.parse_seeds(seeds) if seeds else None
    lat.check_steps(steps)
    suffix_fmt = img.SUFFIXES.get(output.suffix.lower())
    animate = suffix_fmt == "gif" if animate is None else animate
    fmt_name = img.format_for(output, None, img.ANIMATION_FORMATS if animate else img.IMAGE_FORMATS)
    check_output_dir(output.parent)
    truncation = lat.check_psi(truncation)
    key_latents = load_latents(latents) if latents else None
    n_keys = len(key_seeds) if key_seeds is not None else len(key_latents)
    lat.check_frames(n_keys, steps, loop)  # before the model loads

    G = load_model(model, LoadOptions.from_text(arch, arch_kwargs, output_range, z_dim), backend,
                   device, precision, trust_code)
    path = G.interpolation_latents(key_seeds, key_latents, steps, method, loop)
    step, close = progress_bar(len(path), "interpolating")
    try:
        frames = G.synthesize(lat.truncate(path, truncation), step)
    finally:
        close()
    data = out.interpolation_bytes(G, key_seeds, frames, truncation, method, steps, loop,
                                   fmt_name, animate, nrow, duration_ms)
    write_bytes_atomic(output, data)
    what = "animation" if animate else "strip"
    typer.echo(f"wrote {output}: {what} of {len(frames)} frames ({method}), "
               f"model {G.model_id}, {G.backend}", err=str(output) == STDOUT)


@app.command()
@friendly
def convert(
    source: Annotated[Path, typer.Argument(help="Checkpoint to convert (.pth, .pt, .safetensors).")],
    dest: Annotated[Path, typer.Argument(help="Native checkpoint to write (.safetensors).")],
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


@app.command()
@friendly
def inspect(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint path or bundled model name.")],
    samples: Annotated[int, typer.Option(
        help="Images generated (seeds 0..N-1) for the health verdict; 0 skips it.")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    output_range: OutputRangeOpt = None,
    z_dim: ZDimOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = "cpu",
    precision: PrecisionOpt = None,
    trust_code: TrustCodeOpt = False,
) -> None:
    """Say what a checkpoint is and whether its samples look healthy (mode collapse, black images)."""
    from .health import inspect_generator

    if not 0 <= samples <= lat.MAX_N:
        raise InputError(f"--samples must be from 0 to {lat.MAX_N}, got {samples}")
    G = load_model(checkpoint, LoadOptions.from_text(arch, arch_kwargs, output_range, z_dim),
                   backend, device, precision, trust_code,
                   allow_nonfinite=True)  # the report names NaN/Inf tensors
    step, close = progress_bar(samples, "sampling")
    try:
        report = inspect_generator(G, samples, progress=step)
    finally:
        close()
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())


# Registered from a module that imports typer only: `serve` parses its options (and says which
# extra is missing) without importing fastapi/uvicorn, which `generate` should not pay for.
app.command("serve")(friendly(serve))


def _register_bulk() -> None:
    from .scale.command import bulk  # Ray itself is imported only when the command runs

    app.command("bulk")(friendly(bulk))


_register_bulk()


def main() -> None:
    """Console-script entry point: thread settings first, before anything loads torch."""
    from .runtime import configure_threads

    configure_threads()
    app()
