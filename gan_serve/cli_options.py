"""What the three CLIs (`gan-serve`, `gan-export`, `gan-train`) share: the options that say
which model to load and how, the one loader behind them, and the error wrapper.

Light on purpose: importing it loads typer and nothing heavy (no torch, no HTTP stack).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, get_args

import typer
from typer.core import TyperArgument

from .errors import GanServeError, InputError
from .extras import from_import_error
from .spec import LoadOptions

if TYPE_CHECKING:
    from .generator import Generator
    from .protocols import ImageGenerator

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


def env_names(names: dict[str, str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Show `[env var: NAME]` in the --help of the options `names` maps (parameter -> variable),
    for options that something else than typer reads from the environment (pydantic-settings,
    for serve): typer itself must not read them, its parsing of lists differs."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        sig = inspect.signature(fn, eval_str=True)
        params = []
        for p in sig.parameters.values():
            if p.name in names:
                base, info, *_ = get_args(p.annotation)  # Annotated[T, OptionInfo]
                info = copy.copy(info)  # the annotation may be shared with other commands
                info.help = f"{info.help or ''}  [env var: {names[p.name]}]"
                p = p.replace(annotation=Annotated[base, info])
            params.append(p)
        fn.__signature__ = sig.replace(parameters=params)  # what typer reads
        return fn

    return decorate


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


@contextlib.contextmanager
def option_names() -> Iterator[None]:
    """Re-word the errors of the rules every surface shares (gan_serve.request), which name the
    HTTP fields (`from/to`), with the CLI's option names (`--from/--to`)."""
    from . import request as rq

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


def _command_path(default: str) -> str:
    """`gan-serve generate` while a command runs, else `default`."""
    try:  # recent typer vendors click
        from typer._click.globals import get_current_context
    except ImportError:
        from click.globals import get_current_context
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else default


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", "--network", envvar="GAN_SERVE_MODEL", show_default=False,
                 metavar="PATH", help="Generator checkpoint (.pth, .pt, .safetensors), exported "
                 "artifact (.onnx, TorchScript .pt) or bundled model name (--network: StyleGAN's "
                 "name for it). Default: the bundled 'default' model."),
]
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", metavar="MODULE:CLASS", help="Your generator class, for checkpoints "
                 "that are not DCGAN-style: module:Class, found in the current folder first "
                 "(my_models:Gen is ./my_models.py). This imports and runs that code: name only "
                 "code you trust. Built with --arch-kwargs."),
]
ArchKwargsOpt = Annotated[
    str | None, typer.Option("--arch-kwargs", metavar="JSON",
                             help="JSON object of constructor kwargs for --arch.")
]
OutputRangeOpt = Annotated[
    str | None,
    typer.Option("--output-range", metavar="LOW,HIGH", help="Value range of the raw output: -1,1 "
                 "for tanh (the DCGAN default), 0,1 for sigmoid or x/2+0.5. Required with --arch."),
]
ZDimOpt = Annotated[
    int | None, typer.Option("--z-dim", metavar="N", help="Latent size for --arch models (default 100).")
]
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
    typer.Option("--precision", metavar="PRECISION", help="fp32, bf16 (torch, CPU or CUDA) or "
                 "fp16 (CUDA). Default: "
                 "what --backend auto chooses for checkpoints (bf16 on CPUs with bf16 hardware, "
                 "else fp32), the exported precision for .onnx/.pt artifacts."),
]


def load_model(model: str | None, options: LoadOptions, backend: str = "auto",
               device: str = "cpu", precision: str | None = None, trust_code: bool = False,
               allow_nonfinite: bool = False) -> Generator:
    """Load the generator every command works on, with one-line notes on stderr."""
    from .generator import Generator

    G = Generator.load(model, backend=backend, device=device, precision=precision,
                       options=options, trust_code=trust_code, allow_nonfinite=allow_nonfinite)
    if G.is_placeholder:
        typer.echo("note: this model is an untrained placeholder (random weights); "
                   "pass --model PATH to use your generator", err=True)
    if (note := G.precision_note) is not None:
        typer.echo(note, err=True)
    return G


@dataclass(frozen=True)
class HowToLoad:
    """The options that say how a command loads its model (all but which file), as one value."""

    options: LoadOptions = field(default_factory=LoadOptions)
    backend: str = "auto"
    device: str = "cpu"
    precision: str | None = None
    trust_code: bool = False

    def load(self, model: str | None, allow_nonfinite: bool = False) -> Generator:
        return load_model(model, self.options, self.backend, self.device, self.precision,
                          self.trust_code, allow_nonfinite)

    def pinned_to(self, G: ImageGenerator) -> HowToLoad:
        """These options with what loading `G` chose (backend, precision, device) fixed, so that
        another process or machine loads the same path instead of choosing again."""
        r = G.runner
        return replace(self, backend=r.kind, precision=r.precision, device=r.device)


_HOW_TO_LOAD = (  # (parameter, its typer annotation, default): the flags every loading command has
    ("arch", ArchOpt, None), ("arch_kwargs", ArchKwargsOpt, None), ("output_range", OutputRangeOpt, None),
    ("z_dim", ZDimOpt, None), ("backend", BackendOpt, "auto"), ("device", DeviceOpt, "cpu"),
    ("precision", PrecisionOpt, None), ("trust_code", TrustCodeOpt, False),
)


def load_flags(fn: Callable[..., R]) -> Callable[..., R]:
    """Give a command the flags in _HOW_TO_LOAD (--arch ... --trust-code), declared once here,
    and call it with them parsed into one `how: HowToLoad` keyword argument."""
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
