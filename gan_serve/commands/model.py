"""`gan-serve convert` and `gan-serve inspect`: a model file to the native format, and what a
model file is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError
from ..fsutil import check_output_dir
from ..limits import DEFAULT_LIMITS as TOP
from ..loading import HowToLoad
from ..spec import LoadOptions
from .options import (
    ArchKwargsOpt,
    ArchOpt,
    OutputRangeOpt,
    ZDimOpt,
    friendly,
    load_flags,
    load_model,
    progress,
)


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
        from ..full_pickle import WARNING, load_full_pickle
        from ..generator import Generator

        typer.echo(WARNING.format(path=source), err=True)
        G = Generator(load_full_pickle(source, options))
    else:
        G = load_model(str(source), HowToLoad(options, backend="torch"))
    typer.echo(f"read {source}: {G.loaded.source_format}")
    typer.echo(f"architecture: {G.spec.describe()}")
    typer.echo(f"output range: {G.spec.output_range[0]:g},{G.spec.output_range[1]:g}")
    G.save(dest, fp16=fp16)
    typer.echo(f"wrote {dest} ({'fp16' if fp16 else 'fp32'}, {dest.stat().st_size:,} bytes)")


INSPECT_SAMPLES = 256  # images inspect generates for its health verdict by default


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
    from ..health import inspect_generator

    if samples is not None and not 0 <= samples <= TOP.max_n:
        raise InputError(f"--samples must be from 0 to {TOP.max_n}, got {samples}")
    G = load_model(checkpoint, how, allow_nonfinite=True)  # the report names NaN/Inf tensors
    if samples is None:
        samples = min(INSPECT_SAMPLES, TOP.images_within(G.img_resolution))
    TOP.check_output(samples, G.img_resolution)
    with progress(samples, "sampling") as advance:
        report = inspect_generator(G, samples, progress=advance)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
