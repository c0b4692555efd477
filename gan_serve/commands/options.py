"""What the three CLIs (`gan-serve`, `gan-export`, `gan-train`) share: the options that say
which model to load and how, the loader that prints its notes, the error wrapper, the progress
bar.

Light on purpose: importing it loads typer and nothing heavy (no torch, no HTTP stack).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from typer.core import TyperArgument

from ..errors import GanServeError, InputError
from ..extras import from_import_error
from ..loading import HowToLoad
from ..request import DEFAULT_SEED
from ..spec import LoadOptions

if TYPE_CHECKING:
    from ..generator import Generator

P = ParamSpec("P")
R = TypeVar("R")


def _argument_type(self: TyperArgument, ctx: typer.Context) -> str | None:
    """An argument with a metavar shows just that in --help, as an option does. The one override
    of typer left: typer 0.29 added `display_type_rich` and with it the Python type after an
    argument's metavar (`CHECKPOINT <str>`), with no public switch for arguments (options take
    `metavar=`). typer 0.28, the lower bound, has no such method and shows the metavar alone."""
    return None if self.metavar else TyperArgument.display_type(self, ctx)


if hasattr(TyperArgument, "display_type_rich"):
    TyperArgument.display_type_rich = _argument_type


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn GanServeError into `error: ...` on stderr and exit code 2, and so an optional package
    found missing (the safety net under the commands' own `extras.require` checks)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GanServeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as exc:
            known = from_import_error(exc, _command_path(fn.__name__))
            if known is None:
                raise
            typer.echo(f"error: {known}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _command_path(default: str) -> str:
    """`gan-serve generate` while a command runs (as click names it: `python -m gan_serve
    generate` under -m), else `default`. Private: typer (0.28 on) vendors click as typer._click
    and exports no way to the current context but a `typer.Context` parameter of the command
    itself, which every command would then have to declare; the `click` package is not even a
    dependency of typer any more, and its own get_current_context never sees typer's contexts."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else default


@contextlib.contextmanager
def option_names() -> Iterator[None]:
    """Re-word the errors of the rules every surface shares (gan_serve.request), which name the
    HTTP fields (`from/to`), with the CLI's option names (`--from/--to`)."""
    from .. import request as rq

    wording = {
        rq.KEYS_XOR: "give exactly one of --from/--to, --seeds or --latents",
        "from and to go together": "--from and --to go together",
        rq.SEEDS_XOR: rq.SEEDS_XOR.replace("either seeds or seed/n", "either --seeds or --seed/--n"),
    }
    try:
        yield
    except InputError as exc:
        if str(exc) not in wording:
            raise
        raise InputError(wording[str(exc)]) from None


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """`with progress(n, "writing") as advance:` a tqdm bar on stderr for long work, advanced by
    `advance(k)` (hidden for small jobs and when not a terminal), closed however the block ends."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="img", file=sys.stderr,
              disable=True if total < 64 else None, leave=False) as bar:
        yield bar.update


# The help of the model-loading options, also read by `serve`, which adds their variables.
ARCH_HELP = ("Your generator class, for checkpoints that are not DCGAN-style: module:Class, found in "
             "the current folder first (my_models:Gen is ./my_models.py). This imports and runs that "
             "code: name only code you trust. Built with --arch-kwargs.")
ARCH_KWARGS_HELP = "JSON object of constructor kwargs for --arch."
OUTPUT_RANGE_HELP = ("Value range of the raw output: -1,1 for tanh (the DCGAN default), 0,1 for sigmoid "
                     "or x/2+0.5. Required with --arch.")
Z_DIM_HELP = "Latent size for --arch models (default 100)."

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", "--network", envvar="GAN_SERVE_MODEL", show_default=False,
                 metavar="PATH", help="Generator checkpoint (.pth, .pt, .safetensors), exported "
                 "artifact (.onnx, TorchScript .pt) or bundled model name (--network: StyleGAN's "
                 "name for it). Default: the bundled 'default' model."),
]
ArchOpt = Annotated[str | None, typer.Option("--arch", metavar="MODULE:CLASS", help=ARCH_HELP)]
ArchKwargsOpt = Annotated[str | None, typer.Option("--arch-kwargs", metavar="JSON", help=ARCH_KWARGS_HELP)]
OutputRangeOpt = Annotated[str | None, typer.Option("--output-range", metavar="LOW,HIGH",
                                                    help=OUTPUT_RANGE_HELP)]
ZDimOpt = Annotated[int | None, typer.Option("--z-dim", metavar="N", help=Z_DIM_HELP)]
BackendOpt = Annotated[
    str, typer.Option("--backend", metavar="BACKEND", help="auto (the fastest path here: torch "
                      "for checkpoints, in bf16 on CPUs with bf16 hardware; ONNX Runtime for the "
                      "bundled model; onnx for .onnx; it prints what it chose), torch (fp32 unless "
                      "--precision), onnx, or torchscript (with --trust-code).")
]
TrustCodeOpt = Annotated[
    bool, typer.Option("--trust-code", help="With --backend torchscript: load a TorchScript file. "
                       "This runs code from the file; use it only for files you trust.")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda, cuda:N (GPU N), auto (cuda "
                      "when there is a GPU), or tensorrt (ONNX Runtime's TensorRT provider, for .onnx "
                      "files; fp16 with --precision fp16).")
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option("--precision", metavar="PRECISION", help="fp32, bf16 (torch, CPU or CUDA), "
                 "fp16 (CUDA) or int8 (opt-in: checkpoints of the built-in DCGAN family on CPUs "
                 "with int8 dot products, VNNI or AMX-int8; calibrated on seeds 0-255; on the CPU "
                 "measured not faster than bf16, see BENCHMARKS.md). Default: "
                 "what --backend auto chooses for checkpoints (bf16 on CPUs with bf16 hardware, "
                 "else fp32), the exported precision for .onnx/.pt artifacts."),
]
SeedOpt = Annotated[int | None, typer.Option(
    metavar="SEED", help=f"First seed; --n images use seeds SEED..SEED+N-1.  [default: {DEFAULT_SEED}]")]
SeedsOpt = Annotated[str | None, typer.Option(
    metavar="SEEDS", help="Explicit seed list instead of --seed/--n, e.g. '0-35,100'.")]
TruncOpt = Annotated[
    float, typer.Option("--truncation", "--truncation-psi", "--psi", "--trunc", metavar="PSI",
                        help="Truncation psi in [0, 2]: z' = psi * z. 1 is off; lower is tamer.")
]


def load_model(model: str | None, how: HowToLoad | None = None, allow_nonfinite: bool = False) -> Generator:
    """Load the generator a command works on (`HowToLoad.load`), with its one-line notes on stderr."""
    G = (how or HowToLoad()).load(model, allow_nonfinite)
    if G.is_placeholder:
        typer.echo("note: this model is an untrained placeholder (random weights); "
                   "pass --model PATH to use your generator", err=True)
    if (note := G.precision_note) is not None:
        typer.echo(note, err=True)
    return G


_HOW_TO_LOAD = (  # (parameter, its typer annotation, default): the flags every loading command has
    ("arch", ArchOpt, None), ("arch_kwargs", ArchKwargsOpt, None), ("output_range", OutputRangeOpt, None),
    ("z_dim", ZDimOpt, None), ("backend", BackendOpt, "auto"), ("device", DeviceOpt, "cpu"),
    ("precision", PrecisionOpt, None), ("trust_code", TrustCodeOpt, False),
)


def load_flags(fn: Callable[..., R]) -> Callable[..., R]:
    """Give a command the flags in _HOW_TO_LOAD (--arch ... --trust-code), declared once here,
    and call it with them parsed into one `how: HowToLoad` keyword argument.

    typer reads a command's parameters with inspect.signature, which returns `__signature__`
    when set (PEP 362): the one way, public in Python, to add the same eight flags to four
    commands without writing them out four times (typer has no option groups)."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "how"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
             for name, ann, default in _HOW_TO_LOAD]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        flags = {name: kwargs.pop(name, default) for name, _, default in _HOW_TO_LOAD}
        options = LoadOptions.from_text(flags.pop("arch"), flags.pop("arch_kwargs"),
                                        flags.pop("output_range"), flags.pop("z_dim"))
        return fn(*args, how=HowToLoad(options, **flags), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + added)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
    return wrapper


def say_choice(G: Generator) -> None:
    """After a command succeeded: what --backend auto chose and how to pin it (errors stay one line)."""
    if (note := G.auto_note) is not None:
        typer.echo(note, err=True)
