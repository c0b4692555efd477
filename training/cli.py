"""`gan-train` (also `python -m training`, and under `torchrun ... -m training`): one flag per
TrainConfig field (`lr_g` -> `--lr-g`, the field's metadata["help"] as its help), plus --resume and
--dry-run. Mistakes get one line and exit 2; a run stopped by a failure exits 3.

    gan-train --data ./data/images --out runs/faces                 # seed 000's flat folder
    gan-train --data builtin:avatars --g-width 32 --d-width 32 --precision bf16 --channels-last
    gan-train --out runs/faces --resume                               # after a crash or kill -9
    torchrun --nproc_per_node 2 -m training --data faces.zip --out runs/ddp
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from typing import Annotated

import typer

from gan_serve.commands.options import friendly
from gan_serve.extras import require

from .config import TrainConfig

app = typer.Typer(name="gan-train", add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)


# what the fields hold, in --help: N for whole numbers, X for real ones, as in the other two CLIs
NUMBERS = {"int": "N", "float": "X"}
METAVARS = {"recipe": "NAME", "data": "SOURCE", "out": "DIR", "loss": "NAME", "augment": "LIST",
            "precision": "PRECISION", "init_from": "PATH", "on_failure": "ACTION", "device": "DEVICE"}


def _config_options() -> list[inspect.Parameter]:
    """One keyword parameter per TrainConfig field, typed and documented for typer."""
    params = []
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        py_type = {"int": int, "float": float, "str": str, "bool": bool}[str(f.type)]
        decls = [f"{flag}/--no-{flag[2:]}"] if py_type is bool else [flag]
        metavar = METAVARS.get(f.name, NUMBERS.get(str(f.type)))
        option = typer.Option(*decls, help=f.metadata["help"], metavar=metavar)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=Annotated[py_type, option]))
    return params


def dry_run_config(cfg: TrainConfig) -> TrainConfig:
    """One tiny step end to end (32x32, widths 8, batch 4): the CI smoke test."""
    return dataclasses.replace(cfg, steps=1, batch_size=4, g_width=8, d_width=8, resolution=32,
                               ckpt_every=1, sample_every=1, log_every=1, eval_samples=0,
                               dataset_size=min(cfg.dataset_size, 64))


def train(
    ctx: typer.Context,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest "
                                         "checkpoint, bit for bit, with its saved configuration.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="One tiny step end to end (CI smoke test).")] = False,
    **fields: object,
) -> None:
    """Train a DCGAN that gets the known pitfalls right and watches for training failures.

    The defaults are the recipe measured best on real data (TRAINING.md: hinge loss,
    spectral-norm D with biases, --pack 2, EMA); --recipe dcgan gives the DCGAN paper's settings.

    \b
    Examples:
      gan-train --data ./data/images --out runs/cats   # a flat folder of images
      gan-train --data builtin:avatars --pack 2 --instance-noise 0.2 --no-d-batch-norm
      gan-train --out runs/cats --resume               # after a crash or kill -9
      torchrun --nproc_per_node 2 -m training --data ./images   # DDP

    The run folder gets ckpt/step_N/ (generator.safetensors for gan-serve, state.pt to
    resume), best.safetensors, samples/step_N.png (the grid of `gan-serve generate --seed 0
    --n 64`), events.jsonl, curves.png and report.html. Health events name the failure,
    its likely cause and what to try; exit code 3 when one stops the run, 2 for bad input.
    """
    require("train", "gan-train", "torch", "matplotlib")
    from tqdm import tqdm

    from .loop import Trainer
    from .monitor import TrainingFailure

    cfg = TrainConfig(**fields)
    if dry_run:
        cfg = dry_run_config(cfg)
    trainer = Trainer(cfg, resume=resume, echo=lambda m: tqdm.write(m, file=sys.stderr),
                      given=_given(ctx, fields))
    try:
        run = trainer.train()
    except TrainingFailure as exc:
        trainer.echo(f"error: training stopped at step {exc.event.step} ({exc.event.kind}): {exc}; "
                     f"report in {trainer.run_dir / 'report.html'}")
        raise typer.Exit(3) from None
    finally:
        trainer.world.stop()
    best = run / "best.safetensors"
    served = best if best.exists() else "no healthy checkpoint (see the health events)"
    trainer.echo(f"done: step {trainer.step}; generator to serve: {served}; report: {run / 'report.html'}")


def _given(ctx: typer.Context, fields: dict) -> set[str]:
    """The config fields set on the command line (--recipe leaves them alone)."""
    sources = {name: ctx.get_parameter_source(name) for name in fields}
    return {name for name, source in sources.items() if source is not None and source.name != "DEFAULT"}


# typer reads a command's parameters with inspect.signature, which returns __signature__ when set
# (PEP 362, public Python): one flag per TrainConfig field without 40 hand-copied parameters.
_hints = typing.get_type_hints(train, include_extras=True)  # resolve the string annotations
train.__signature__ = inspect.signature(train).replace(
    parameters=[p.replace(annotation=_hints[p.name])
                for p in list(inspect.signature(train).parameters.values())[:3]] + _config_options())
app.command(help=train.__doc__)(friendly(train))


def main() -> None:
    """Console-script entry point: click's usage errors become one line too. Thread settings
    come first, before anything loads torch (gan_serve.runtime)."""
    from gan_serve.runtime import configure_threads

    configure_threads()
    try:
        code = app(prog_name="gan-train", standalone_mode=False)
    except typer.TyperException as exc:  # typer's public base of click's errors (it vendors click)
        if exc.exit_code != 2:  # 2: a usage error, such as an unknown flag or a malformed value
            raise
        typer.echo(f"error: {exc.format_message()} (gan-train --help lists the options)", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
