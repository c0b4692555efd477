"""The `--directions FILE --edit NAME=STRENGTH,...` options of generate, interpolate and walk.

Light (typer and gan_serve.directions only), shared by commands/generate.py and directions.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..directions import Directions, LatentEdit
from ..errors import InputError

DirectionsOpt = Annotated[
    Path | None, typer.Option("--directions", metavar="FILE", help="Directions file (.safetensors, "
                              "written by `gan-serve directions`) that --edit names directions of.")
]
EditOpt = Annotated[
    str | None, typer.Option("--edit", metavar="NAME=STRENGTH,...", help="Move every latent along "
                             "directions of --directions, e.g. pc0=+2,hair_blue=-1.5: z' = psi*z + "
                             "sum(strength * direction); a strength is in standard deviations of z "
                             "(+-3 covers nearly every seed).")
]


def cli_edit(directions: Path | None, edit: str | None) -> LatentEdit | None:
    """The --directions/--edit pair resolved (before the model is loaded: faults come first)."""
    if edit is None:
        if directions is not None:
            raise InputError("--directions without --edit: say which directions to move along, "
                             "e.g. --edit pc0=+2")
        return None
    if directions is None:
        raise InputError("--edit needs --directions FILE (written by `gan-serve directions`)")
    return Directions.load(directions).edit(edit)
