"""`gan-train`: typer flags mapped 1:1 onto TrainConfig."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import typer

from gan_serve.cli import friendly

from .config import TrainConfig

app = typer.Typer(name="gan-train", add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)


def _options_from_config():  # noqa: ANN202
    """Build the command's signature from TrainConfig: one flag per field, its comment as help."""
    import inspect
    import re
    from pathlib import Path

    src = Path(__file__).with_name("config.py").read_text()
    helps = dict(re.findall(r"^    (\w+): [^=]+= [^#\n]+#\s*(.+)$", src, re.M))
    params = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if f.type in ("bool", bool) else [flag]
        py_type = {"int": int, "float": float, "str": str, "bool": bool}[str(f.type)]
        option = typer.Option(*decls, help=helps.get(f.name, ""))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[py_type, option]))
    return params


def train(resume: bool = False, dry_run: bool = False, **fields: object) -> None:
    """Train a DCGAN that gets the known pitfalls right and watches for training failures."""
    from .loop import Trainer
    from .monitor import TrainingFailure

    cfg = TrainConfig(**fields)  # type: ignore[arg-type]
    if dry_run:  # one tiny step end to end, for CI
        cfg = dataclasses.replace(cfg, steps=1, batch_size=min(cfg.batch_size, 4), g_width=8,
                                  d_width=8, resolution=32, ckpt_every=1, sample_every=1,
                                  log_every=1, dataset_size=min(cfg.dataset_size, 64))
    try:
        run = Trainer(cfg, echo=lambda m: typer.echo(m, err=True)).train(resume=resume)
    except TrainingFailure as exc:
        typer.echo(f"error: training stopped at step {exc.event.step}: {exc}", err=True)
        raise typer.Exit(3) from None
    typer.echo(f"done: {run}/best.safetensors, report {run}/report.html")


def _command() -> None:
    import inspect

    extra = _options_from_config()
    sig = inspect.signature(train)
    base = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    base[0] = base[0].replace(annotation=Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its latest checkpoint, bit for bit.")])
    base[1] = base[1].replace(annotation=Annotated[bool, typer.Option(
        "--dry-run", help="One tiny step end to end (CI smoke test).")])
    train.__signature__ = sig.replace(parameters=[*base, *extra])  # type: ignore[attr-defined]
    app.command(help=train.__doc__)(friendly(train))


_command()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="gan-train")


if __name__ == "__main__":
    sys.exit(main())
