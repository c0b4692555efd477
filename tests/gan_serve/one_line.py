"""What a user sees of a refused `gan-serve` command: exit 2 and one line on stderr."""

from __future__ import annotations

from typer.testing import CliRunner

from gan_serve.commands.cli import app


def one_line_exit_2(args: list[str]) -> str:
    """Run `gan-serve ARGS`; assert exit 2 with exactly one stderr line, and return it."""
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]
