"""`python -m training` is `gan-train`."""

from .cli import main

main()
