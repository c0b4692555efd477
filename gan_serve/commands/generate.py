"""`gan-serve generate` and `gan-serve interpolate`: seeds in, image files out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from .. import bulk
from .. import images as img
from .. import latents as lat
from .. import outputs as out
from .. import request as rq
from ..errors import InputError
from ..fsutil import STDOUT, check_output_dir, write_bytes_atomic
from ..limits import DEFAULT_LIMITS as TOP
from ..loading import HowToLoad
from ..protocols import ImageGenerator
from ..request import LatentsRequest, PathRequest, SeedRequest, read_latents
from ..video import FPS, QUALITY, REPEAT, SCALE, VIDEO_FORMATS, VideoOptions, require_video, video_options
from .edit_options import DirectionsOpt, EditOpt, cli_edit
from .options import (
    ModelOpt,
    SeedOpt,
    SeedsOpt,
    TruncOpt,
    friendly,
    load_flags,
    load_model,
    option_names,
    progress,
    say_choice,
)

CANDIDATES = 512  # --candidates scored with --rank-with by default

# interpolate's .mp4/.webm options (gan_serve.video)
FpsOpt = Annotated[int | None, typer.Option(
    metavar="FPS", help=f"Video frames per second ({FPS[0]}..{FPS[1]}).  "
    f"[default: {VideoOptions.fps}]")]
QualityOpt = Annotated[int | None, typer.Option(
    metavar="CRF", help=f"Video quality as a CRF, {QUALITY[0]}..{QUALITY[1]}: lower is better and "
    f"larger; the default keeps every 64x64 frame >= 35 dB PSNR.  [default: {VideoOptions.quality}]")]
ScaleOpt = Annotated[int | None, typer.Option(
    metavar="K", help=f"Enlarge video frames K times, nearest neighbour ({SCALE[0]}..{SCALE[1]}): "
    "at 2 or more yuv420p keeps every pixel's colour.  "
    f"[default: {VideoOptions.scale}]")]
RepeatOpt = Annotated[int | None, typer.Option(
    metavar="N", help=f"Play the frames N times in the file, restarting each time ({REPEAT[0]}.."
    f"{REPEAT[1]}; --loop makes the path itself return to its start).  "
    f"[default: {VideoOptions.repeat}]")]


def seed_request(seed: int | None, n: int | None, seeds: str | None, truncation: float,
                 candidates: int | None, stream: bool, edit: rq.LatentEdit | None = None
                 ) -> SeedRequest:
    """The options as a SeedRequest; a grid larger than memory allows says how to stream."""
    try:
        with option_names():
            return SeedRequest.parse(seed=seed, n=n, seeds=seeds, truncation_psi=truncation,
                                     candidates=candidates, stream=stream, edit=edit)
    except InputError as exc:  # the request layer's n check, with what the CLI can do instead
        if stream or not str(exc).startswith("n must be"):
            raise
        raise InputError(str(exc).replace(", got", " for a grid, got", 1) + "; --individual DIR "
                         "alone (no --output) writes any number of files") from None


@friendly
@load_flags
def generate(
    seed: SeedOpt = None,
    n: Annotated[int | None, typer.Option(
        "--n", "-n", metavar="N", help=f"Number of images (1..{TOP.max_n} for a grid, at most "
        f"{TOP.max_pixels:,} pixels in all; any number with --individual DIR and no --output: files "
        f"stream to disk). With --rank-with: how many to keep.  [default: {rq.DEFAULT_N}]")] = None,
    seeds: SeedsOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="PATH", help="Grid file (.png, .jpg, .webp), or - for stdout. "
        "Default grid.<format>, or none when --individual or --latents-out is given.")] = None,
    nrow: Annotated[int | None, typer.Option(
        metavar="N", help="Images per grid row (default ceil(sqrt(n))).")] = None,
    truncation: TruncOpt = rq.DEFAULT_PSI,
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
        metavar="N", help="Candidates scored with --rank-with (from --seed, or --seeds).")] = CANDIDATES,
    latents: Annotated[list[Path] | None, typer.Option(
        metavar="PATH", help="Draw the latents of .npy files (N, z_dim) instead of seeds: what "
        "--latents-out or `gan-serve project` saved; repeat to chain files. A grid only.")] = None,
    directions: DirectionsOpt = None,  # --directions/--edit: commands/edit_options.py
    edit: EditOpt = None,
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Generate a grid of images: `gan-serve generate --seed 42 --n 64 -o grid.png`."""
    moved = cli_edit(directions, edit)
    if latents:
        given = {"--seed": seed, "--n": n, "--seeds": seeds, "--individual": individual,
                 "--latents-out": latents_out, "--rank-with": rank_with}
        if clash := [flag for flag, value in given.items() if value is not None]:
            raise InputError(f"--latents draws the files' latents as a grid: it takes no {', '.join(clash)}")
        req = LatentsRequest(read_latents(latents), truncation, edit=moved)
        return _latents_grid(req, output, fmt, nrow, model, how)
    streaming = individual is not None and output is None and rank_with is None and latents_out is None
    if moved is not None and individual is not None:  # one file per seed carries no edit
        raise InputError(rq.EDIT_ALONE.format(what="--individual"))
    req = seed_request(seed, n, seeds, truncation, candidates if rank_with else None, streaming,
                       moved)
    fmt_name = img.format_for(output, fmt, img.IMAGE_FORMATS)
    img.check_nrow(nrow)
    if output is None and individual is None and latents_out is None:
        output = Path(f"grid{img.EXTENSIONS[fmt_name]}")
    for target in (output, individual, latents_out):
        if target is not None:
            check_output_dir(target.parent)

    G = load_model(model, how)
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
        z = G.latents(chosen)
        out.save_latents(latents_out, z if moved is None else moved.apply(z))  # the edited latents
        typer.echo(f"wrote latents {latents_out} {(len(chosen), G.z_dim)}", err=str(output) == STDOUT)
    say_choice(G)


def _latents_grid(req: LatentsRequest, output: Path | None, fmt: str | None, nrow: int | None,
                  model: str | None, how: HowToLoad) -> None:
    """`generate --latents`: the grid of the files' latents."""
    fmt_name = img.format_for(output, fmt, img.IMAGE_FORMATS)
    output = output or Path(f"grid{img.EXTENSIONS[fmt_name]}")
    check_output_dir(output.parent)
    G = load_model(model, how)
    req.check_output(G, fmt_name, nrow)  # before any image is made
    with progress(len(req), "generating") as advance:
        images = G.synthesize(req.latents(G.z_dim), advance)
    write_bytes_atomic(output, out.grid_file(images, nrow, fmt_name, req.provenance(G)))
    typer.echo(f"wrote {output}: {len(req)} images of latents, model {G.model_id}, {G.backend}",
               err=str(output) == STDOUT)
    say_choice(G)


def _images(G: ImageGenerator, req: SeedRequest, rank_with: Path | None) -> tuple[list[int], np.ndarray]:
    """The request's images, and with a discriminator the best req.keep of them (best first)."""
    D = None
    if rank_with is not None:
        from ..discriminator import check_compatible, load_discriminator, rank_images

        D, d_cfg = load_discriminator(rank_with)
        check_compatible(d_cfg, G)
    with progress(len(req), "generating") as advance:
        images = G.synthesize(req.latents(G.z_dim), advance)
    if D is None:
        return list(req.seeds), images
    chosen, _, images = rank_images(D, list(req.seeds), images, req.keep, G.spec.output_range)
    return chosen, images


def _write_files(G: ImageGenerator, chunks: bulk.Chunks, total: int, folder: Path, truncation: float,
                 fmt: str) -> None:
    folder.mkdir(exist_ok=True)  # only now: a failed run leaves no empty folder
    with progress(total, "writing") as advance:
        written = bulk.write_individual(G, chunks, folder, truncation, fmt, progress=advance)
    typer.echo(f"wrote {written} files into {folder}/, model {G.model_id}, {G.backend}")


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
        metavar="N", help=f"Frames per segment, both ends included (2..{TOP.max_steps}).")
    ] = rq.DEFAULT_STEPS,
    method: Annotated[str, typer.Option(
        metavar="METHOD", help="slerp (default, stays on the Gaussian shell) or lerp.")
    ] = rq.DEFAULT_METHOD,
    loop: Annotated[bool, typer.Option("--loop", help="Return to the first key at the end.")] = False,
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="PATH", help="A strip (.png, .jpg, .webp), an animation "
        "(.gif, or .webp with --animate) or a video (.mp4 H.264, .webm VP9; the video extra); - "
        "for stdout. The default, like HTTP's, is a png strip.")] = Path("interpolation.png"),
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT", help="png, jpeg (or jpg), webp, gif, mp4 or webm "
        "(default: from the suffix).")] = None,
    animate: Annotated[bool | None, typer.Option(
        "--animate/--strip", help="Animation or one-row strip; default: animation for gif.")] = None,
    duration_ms: Annotated[int, typer.Option(
        metavar="MS", help="Animation frame duration in ms (10..10000).")] = out.DEFAULT_DURATION_MS,
    nrow: Annotated[int | None, typer.Option(
        metavar="N", help="Frames per strip row (default: all in one row).")] = None,
    truncation: TruncOpt = rq.DEFAULT_PSI,
    fps: FpsOpt = None,
    quality: QualityOpt = None,
    scale: ScaleOpt = None,
    repeat: RepeatOpt = None,
    directions: DirectionsOpt = None,  # --directions/--edit: commands/edit_options.py
    edit: EditOpt = None,
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Interpolate between seeds: `gan-serve interpolate --from 3 --to 17 --steps 16 -o anim.gif`
    (or -o walk.mp4 for a video)."""
    with option_names():
        req = PathRequest.parse(from_seed=from_seed, to_seed=to_seed, seeds=seeds,
                                latents=read_latents(latents) if latents else None, steps=steps,
                                method=method, loop=loop, truncation_psi=truncation,
                                edit=cli_edit(directions, edit))
    fmt_name, animate, video = frames_format(output, fmt, animate, duration_ms, nrow,
                                             fps=fps, quality=quality, scale=scale, repeat=repeat)

    G = load_model(model, how)
    req.check_output(G, fmt_name, animate, nrow, duration_ms, video)  # before any frame is made
    with progress(len(req), "interpolating") as advance:
        frames = G.synthesize(req.latents(G.z_dim), advance)
    write_bytes_atomic(output, out.path_file(frames, fmt_name, animate, req.provenance(G), nrow,
                                             duration_ms, video))
    what = "video" if video else "animation" if animate else "strip"
    typer.echo(f"wrote {output}: {what} of {len(frames)} frames ({method}), "
               f"model {G.model_id}, {G.backend}", err=str(output) == STDOUT)


def frames_format(output: Path, fmt: str | None, animate: bool | None, duration_ms: int,
                  nrow: int | None, **video: int | None) -> tuple[str, bool, VideoOptions | None]:
    """A path's frames (interpolate, walk): the format, whether animated, and the video options
    (None for a strip or an animation), all checked before the model loads."""
    named = fmt.lower().replace("jpg", "jpeg") if fmt else img.SUFFIXES.get(output.suffix.lower())
    options = video_options(named, animate, **video)
    animate = named == "gif" if animate is None else animate
    allowed = VIDEO_FORMATS if options else img.ANIMATION_FORMATS if animate else img.IMAGE_FORMATS
    fmt_name = img.format_for(output, fmt, allowed)
    img.check_nrow(nrow)
    if options:
        require_video()
    elif animate:
        img.check_duration(duration_ms)
    check_output_dir(output.parent)
    return fmt_name, animate, options
