"""`gan-serve`: thin typer commands over the Python API (gan_serve.generator).

Every command parses its options, calls the API, and formats; user mistakes come back
as one line on stderr and exit code 2, never a traceback. A new command is a function in a
module of this package (wrapped in `options.friendly`) and one line below.
"""

from __future__ import annotations

import typer

from .bulk import bulk
from .directions import directions, walk
from .generate import generate, interpolate
from .model import convert, inspect
from .project import project
from .serve import serve

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

app.command()(generate)
app.command()(interpolate)
app.command()(convert)
app.command()(inspect)
app.command()(serve)
app.command()(bulk)
app.command()(directions)
app.command()(walk)
app.command()(project)


def main() -> None:
    """Console-script entry point: thread settings first, before anything loads torch."""
    from ..runtime import configure_threads

    configure_threads()
    app()
