"""`gan-serve directions` (find or fit editing directions, with a contact sheet), `gan-serve walk`
(one seed along one direction). Thin: they parse, call gan_serve.directions / gan_serve.ganspace, and format.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from .. import images as img
from .. import latents as lat
from .. import outputs as out
from ..directions import Directions
from ..errors import InputError
from ..fsutil import STDOUT, check_output_dir, write_bytes_atomic
from ..ganspace import (
    DEFAULT_COMPONENTS,
    DEFAULT_SAMPLES,
    SHEET_ROWS,
    SHEET_STRENGTHS,
    contact_sheet,
    find_directions,
)
from ..interfacegan import fit_directions, read_labels
from ..limits import DEFAULT_LIMITS
from ..loading import HowToLoad
from ..request import WalkRequest
from .edit_options import EditOpt
from .generate import FpsOpt, QualityOpt, RepeatOpt, ScaleOpt, frames_format
from .options import ModelOpt, TruncOpt, friendly, load_flags, progress, say_choice


def _find_with(how: HowToLoad, model: str | None) -> HowToLoad:
    """--backend auto finds directions on torch in fp32 where it can (the activations of an early
    layer need the module); an .onnx file, or no torch, uses the output pixels instead."""
    onnx = model is not None and str(model).endswith(".onnx")
    if how.backend != "auto" or onnx or importlib.util.find_spec("torch") is None:
        return how
    return dataclasses.replace(how, backend="torch", precision=how.precision or "fp32")


@friendly
@load_flags
def directions(
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="PATH", help="Directions file to write (.safetensors).")
    ] = Path("directions.safetensors"),
    labels: Annotated[Path | None, typer.Option(
        metavar="CSV", help="Fit one direction per attribute instead (InterFaceGAN): a CSV with "
        "the header seed,ATTRIBUTE,... and 0/1 values, e.g. from a classifier of the seeds' "
        "images.")] = None,
    condition: Annotated[bool, typer.Option(
        "--condition/--no-condition", help="With --labels: make each direction orthogonal to those "
        "of the other attribute groups (the name before its first _: hair_blue and hair_red are "
        "one group), so that an edit changes its own attribute and leaves the others.")] = True,
    samples: Annotated[int, typer.Option(
        metavar="N", help="Without --labels: latents (seeds 0..N-1) whose activations the PCA "
        "sees.")] = DEFAULT_SAMPLES,
    components: Annotated[int, typer.Option(
        metavar="K", help="Without --labels: directions to find, pc0..pc(K-1).")] = DEFAULT_COMPONENTS,
    layer: Annotated[str, typer.Option(
        metavar="LAYER", help="Without --labels: auto (the first nonlinearity), a module name "
        "(e.g. main.2), or pixels.")] = "auto",
    sheet: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Contact sheet: a row per direction (the first "
        f"{SHEET_ROWS}), the strengths -3..+3 of each --sheet-seeds. Default: the output's name "
        ".png; '-' for none.")] = None,
    sheet_seeds: Annotated[str, typer.Option(metavar="SEEDS", help="Seeds of the sheet.")] = "0-2",
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Find editing directions in z: `gan-serve directions -o dirs.safetensors` (PCA of an early
    layer's activations, GANSpace), or with --labels one per attribute (InterFaceGAN)."""
    if output.suffix != ".safetensors":
        raise InputError(f"the directions file must end in .safetensors, got {output.name!r}")
    sheet = output.with_suffix(".png") if sheet is None else None if str(sheet) == STDOUT else sheet
    seeds = lat.parse_seeds(sheet_seeds, 64)
    sheet_fmt = img.format_for(sheet, None, img.IMAGE_FORMATS) if sheet is not None else None
    for target in (output, sheet):
        if target is not None:
            check_output_dir(target.parent)
    found_labels = read_labels(labels) if labels is not None else None

    G = (how if labels is not None else _find_with(how, model)).load(model)
    if found_labels is not None:
        dirs = fit_directions(*found_labels, G.z_dim, G.loaded.sha256, condition)
    else:
        with progress(samples, "sampling") as advance:
            dirs = find_directions(G, samples, components, layer, progress=advance)
    dirs = dataclasses.replace(dirs, source=output.stem)
    dirs.save(output)
    what = "variance explained" if dirs.method == "ganspace" else "accuracy on the labels"
    typer.echo(f"wrote {output}: {len(dirs)} directions ({dirs.method}), model {G.model_id}")
    for name, score in list(zip(dirs.names, dirs.scores, strict=True))[:SHEET_ROWS]:
        typer.echo(f"  {name}: {what} {score:.1%}")
    if sheet is not None:
        rows, per_row = dirs.top(SHEET_ROWS), len(seeds) * len(SHEET_STRENGTHS)
        DEFAULT_LIMITS.check_output(len(rows) * per_row, G.img_resolution, sheet_fmt,
                                    canvas=("grid", len(rows) * per_row, per_row))
        grid, meta = contact_sheet(G, dirs, rows, seeds)
        write_bytes_atomic(sheet, img.encode_image(grid, sheet_fmt, meta))
        typer.echo(f"wrote {sheet}: a row per direction ({', '.join(rows)}), seeds "
                   f"{lat.format_seeds(seeds)} at -3..+3")
    say_choice(G)


@friendly
@load_flags
def walk(
    directions_file: Annotated[Path, typer.Option(
        "--directions", metavar="FILE", help="Directions file (from `gan-serve directions`).")],
    direction: Annotated[str, typer.Option(metavar="NAME", help="The direction to walk, e.g. pc0.")],
    seed: Annotated[int, typer.Option(metavar="SEED", help="The seed to start from.")] = 0,
    steps: Annotated[int, typer.Option(metavar="N", help="Frames, both ends included.")] = 9,
    span: Annotated[str, typer.Option(
        "--range", metavar="LOW,HIGH", help="Strengths of the first and last frames.")] = "-3,3",
    edit: EditOpt = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="PATH", help="A strip (.png, .jpg, .webp), an animation "
        "(.gif, or .webp with --animate) or a video (.mp4, .webm; the video extra); - for "
        "stdout.")] = Path("walk.png"),
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT", help="png, jpeg, webp, gif, mp4 or webm (default: "
        "from the suffix).")] = None,
    animate: Annotated[bool | None, typer.Option(
        "--animate/--strip", help="Animation or one-row strip; default: animation for gif.")] = None,
    duration_ms: Annotated[int, typer.Option(
        metavar="MS", help="Animation frame duration in ms (10..10000).")] = out.DEFAULT_DURATION_MS,
    nrow: Annotated[int | None, typer.Option(metavar="N", help="Frames per strip row.")] = None,
    truncation: TruncOpt = 1.0,
    fps: FpsOpt = None,
    quality: QualityOpt = None,
    scale: ScaleOpt = None,
    repeat: RepeatOpt = None,
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Walk one seed along one direction: `gan-serve walk --directions dirs.safetensors
    --direction pc0 --seed 3 --steps 9 --range -3,3 -o walk.png`."""
    dirs = Directions.load(directions_file)
    req = WalkRequest(seed, direction, dirs, steps, span, truncation,
                      edit=dirs.edit(edit) if edit is not None else None)
    fmt_name, animate, video = frames_format(output, fmt, animate, duration_ms, nrow,
                                             fps=fps, quality=quality, scale=scale, repeat=repeat)

    G = how.load(model)
    req.check_output(G, fmt_name, animate, nrow, duration_ms, video)  # before any frame is made
    frames = G.walk(req)
    write_bytes_atomic(output, out.path_file(frames, fmt_name, animate, req.provenance(G), nrow,
                                             duration_ms, video))
    typer.echo(f"wrote {output}: {direction} from {req.span[0]:g} to {req.span[1]:g} in "
               f"{len(frames)} frames, seed {seed}, model {G.model_id}, {G.backend}",
               err=str(output) == STDOUT)
    say_choice(G)
