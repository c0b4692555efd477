"""`gan-serve project IMAGE... -m MODEL -o OUT_DIR`: the latent of each image, its reconstruction
and a side-by-side sheet (gan_serve.projection does the work)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import InputError
from ..fsutil import check_output_dir, write_bytes_atomic
from ..loading import HowToLoad
from ..projection import MAX_IMAGES, MAX_SCREEN, MAX_STARTS, MAX_STEPS, ProjectOptions
from ..projection import project as run_projection
from .options import ModelOpt, friendly, load_flags, say_choice

if TYPE_CHECKING:
    from ..projection import Projection
    from ..protocols import ImageGenerator

DEFAULTS = ProjectOptions()


@friendly
@load_flags
def project(
    images: Annotated[list[Path], typer.Argument(
        metavar="IMAGE", show_default=False, help=f"Images to project (any size and mode Pillow "
        f"reads: resized to the model's resolution and channels); 1 to {MAX_IMAGES}, optimised "
        "together.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="DIR", help="Folder for NAME.npy (the latent, (1, z_dim) float32, "
        "as generate --latents-out writes), NAME.png (the reconstruction) and NAME-sheet.png "
        "(target | reconstruction | difference x4).")] = Path("projections"),
    steps: Annotated[int, typer.Option(
        metavar="N", help=f"Adam steps per start (0..{MAX_STEPS}).")] = DEFAULTS.steps,
    starts: Annotated[int, typer.Option(
        metavar="N", help=f"Starts optimised per image: the best of the screened seeds "
        f"(1..{MAX_STARTS}).")] = DEFAULTS.starts,
    screen: Annotated[int, typer.Option(
        metavar="N", help=f"Seeds scored before optimising, from --seed (1..{MAX_SCREEN}).")
    ] = DEFAULTS.screen,
    seed: Annotated[int, typer.Option(metavar="SEED", help="First screened seed.")] = DEFAULTS.seed,
    rank_with: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Discriminator checkpoint (as generate --rank-with takes it): its "
        "features join the loss.")] = None,
    model: ModelOpt = None,
    *, how: HowToLoad,
) -> None:
    """Find the latent whose image is closest to each IMAGE: `gan-serve project me.png -o proj/`.

    Same images, options and machine: same latent bytes. Needs a torch checkpoint (or the
    bundled model); an .onnx file has no gradients to follow.
    """
    options = ProjectOptions(steps=steps, starts=starts, screen=screen, seed=seed)
    if not 1 <= len(images) <= MAX_IMAGES:
        raise InputError(f"project takes 1 to {MAX_IMAGES} images at once, got {len(images)}")
    stems = [p.stem for p in images]
    if len(set(stems)) < len(stems):
        twice = next(s for s in stems if stems.count(s) > 1)
        raise InputError(f"two images are named {twice!r}: their files in {output}/ would collide; "
                         "rename one or project them separately")
    check_output_dir(output.parent)
    if how.backend == "auto" and how.precision is None:
        how = replace(how, precision="fp32")  # gradients in fp32, not the bf16 auto may choose
    G = how.load(model)
    D = _discriminator(rank_with, G) if rank_with is not None else None
    result = _run(G, images, options, D)
    output.mkdir(exist_ok=True)  # only now: a failed run leaves no empty folder
    for i, target in enumerate(result.targets):
        for suffix, data in result.files(i).items():
            write_bytes_atomic(output / f"{target.name}{suffix}", data)
        typer.echo(f"{target.name}: PSNR {result.psnr[i]:.2f} dB, SSIM {result.ssim[i]:.4f}, loss "
                   f"{result.loss[i]:.4g}; wrote {output}/{target.name}.npy, .png, -sheet.png")
    typer.echo(f"model {result.generator.model_id}, {result.generator.backend}, {options.steps} steps "
               f"x {options.starts} starts")
    say_choice(G)


def _discriminator(path: Path, G: ImageGenerator) -> object:
    from ..discriminator import check_compatible, load_discriminator

    D, config = load_discriminator(path)
    check_compatible(config, G)
    return D


def _run(G: ImageGenerator, images: list[Path], options: ProjectOptions, D: object) -> Projection:
    """The projection behind a progress bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(total=options.steps, desc="projecting", unit="step", file=sys.stderr,
               disable=None, leave=False)
    try:
        return run_projection(G, images, options, discriminator=D, progress=bar.update)
    finally:
        bar.close()
