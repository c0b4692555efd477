"""The command lines: the only package of gan_serve that imports typer.

`cli.py` is `gan-serve` (one line registers each command); a module per command group holds its
commands (`generate.py`: generate, interpolate; `model.py`: convert, inspect; `serve.py`;
`bulk.py`), and `options.py` what the three CLIs share (`gan-export` and `gan-train` import it,
never `cli.py`). Each command parses, calls the library and formats; the library imports none
of them.
"""
