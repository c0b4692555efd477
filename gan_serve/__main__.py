"""`python -m gan_serve` is `gan-serve`."""

from .cli import main

main()
