"""`python -m gan_serve` is `gan-serve`."""

from .commands.cli import main

main()
