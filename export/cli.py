"""`gan-export`: thin typer commands over export/ (every artifact verified before it is kept)."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from gan_serve.generator import Generator

from gan_serve.backends import artifact_kind
from gan_serve.commands.options import ArchKwargsOpt, ArchOpt, OutputRangeOpt, ZDimOpt, friendly, load_model
from gan_serve.errors import CheckpointError, InputError
from gan_serve.extras import require_extras, require_onnxruntime
from gan_serve.fsutil import check_output_dir
from gan_serve.loading import HowToLoad
from gan_serve.spec import LoadOptions
from gan_serve.trust import torchscript_refused

from . import DEFAULT_OPSET, GENERATOR_BACKENDS

# The exporters import torch and onnx: loaded inside the commands, so --help is instant and
# works without them; each command first checks its extras (`needs`), before any work.

app = typer.Typer(
    name="gan-export",
    help="Export a generator checkpoint (any format gan-serve loads) to ONNX, TorchScript or a "
    "Triton model repository. Every artifact is run on fixed seeds and compared with the "
    "original before it is kept: fp32 within 1/255, fp16 within 3/255 and 35 dB PSNR.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

CkptArg = Annotated[str, typer.Argument(
    metavar="CHECKPOINT", help="Generator checkpoint (.pth, .pt, .safetensors) or bundled name.")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", metavar="PATH", help="Output file.")]
Fp16Opt = Annotated[bool, typer.Option(
    "--fp16", help="fp16 weights and compute (for CUDA kernels), fp32 input/output.")]
FoldOpt = Annotated[bool | None, typer.Option(
    "--fold-bn/--no-fold-bn", help="Fold BatchNorm into the convolutions (default: on with --fp16).")]
RecalOpt = Annotated[int, typer.Option("--recalibrate-bn", metavar="N", help="Re-estimate BatchNorm "
                                       "statistics from N batches of 64 latents first.")]
MaxBatchOpt = Annotated[
    int | None, typer.Option("--max-batch", metavar="N", help="Largest batch the artifact is meant for.")
]
DeviceOpt = Annotated[str, typer.Option(metavar="DEVICE",
                                        help="cpu or cuda: where it is traced and verified.")]
RepoOpt = Annotated[Path, typer.Option("--output", "-o", metavar="DIR",
                                       help="Repository folder (created if missing; its parent must exist).")]
NameOpt = Annotated[str | None, typer.Option(metavar="NAME",
                                             help="Model name (default: the checkpoint's stem).")]
FolderOpt = Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Folder for every artifact "
                                         "(created if missing; its parent must exist).")]
GenBackendOpt = Annotated[str, typer.Option(
    "--generator-backend", metavar="python|onnxruntime",
    help="Triton backend of the generator step. python (default): ONNX Runtime inside a Python model; "
    "every Triton build has it, the pip-installable one (nvidia-pytriton) included, and it runs "
    "gan-serve's fixed micro-batch, so pixels equal gan-serve's byte for byte. onnxruntime: "
    "Triton's own ONNX backend, for builds that have it (NGC containers) and for GPUs.")]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="Port on 127.0.0.1.")]


def needs(command: str, extra: str = "onnx", onnxruntime: bool = True) -> None:
    """One line naming every missing extra this command needs, with one install command for
    them all. Every command needs torch and onnx (the onnx extra); triton/all add tritonclient (the
    triton extra); ONNX verification needs ONNX Runtime (the cpu or gpu extra, never in the
    others: see README.md, "Installs")."""
    what = f"gan-export {command}"
    modules = ("torch", "onnx") + (("tritonclient",) if extra == "triton" else ())
    require_extras(what, {extra: modules, **({"cpu": ("onnxruntime",)} if onnxruntime else {})})
    if onnxruntime:  # two ONNX Runtimes at once
        require_onnxruntime(f"{what} (it verifies exports on ONNX Runtime)")


def _load(ckpt: str, arch: str | None, arch_kwargs: str | None, output_range: str | None,
          z_dim: int | None) -> Generator:
    return load_model(ckpt, HowToLoad(LoadOptions.from_text(arch, arch_kwargs, output_range, z_dim),
                                      backend="torch"))


@app.command()
@friendly
def onnx(ckpt: CkptArg, output: OutOpt = None, fp16: Fp16Opt = False, fold_bn: FoldOpt = None,
         opset: Annotated[int, typer.Option(metavar="N", help="ONNX opset.")] = DEFAULT_OPSET,
         max_batch: MaxBatchOpt = None, recalibrate_bn: RecalOpt = 0, arch: ArchOpt = None,
         arch_kwargs: ArchKwargsOpt = None, output_range: OutputRangeOpt = None,
         z_dim: ZDimOpt = None) -> None:
    """ONNX with a dynamic batch: input z (B, z_dim) float32, output images (B, C, H, W)."""
    if max_batch is not None and max_batch < 1:
        raise InputError(f"--max-batch must be at least 1, got {max_batch}")
    needs("onnx")
    from .onnx import export_onnx
    from .prepared import default_output, prepare

    G = _load(ckpt, arch, arch_kwargs, output_range, z_dim)
    out = default_output(G.loaded.name, fp16, ".onnx", output)
    check_output_dir(out.parent)
    p = prepare(G, fp16, fp16 if fold_bn is None else fold_bn, recalibrate_bn)
    report = export_onnx(p, out, opset, max_batch)
    typer.echo(report.render())
    typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes)")


@app.command()
@friendly
def torchscript(ckpt: CkptArg, output: OutOpt = None, fp16: Fp16Opt = False,
                device: DeviceOpt = "cpu",
                recalibrate_bn: RecalOpt = 0, arch: ArchOpt = None, arch_kwargs: ArchKwargsOpt = None,
                output_range: OutputRangeOpt = None, z_dim: ZDimOpt = None) -> None:
    """TorchScript (.pt) taking z (B, z_dim) or (B, z_dim, 1, 1) float32, metadata in its extra files."""
    needs("torchscript", onnxruntime=False)
    from .prepared import default_output, prepare
    from .torchscript import export_torchscript

    G = _load(ckpt, arch, arch_kwargs, output_range, z_dim)
    out = default_output(G.loaded.name, fp16, ".pt", output)
    check_output_dir(out.parent)
    report = export_torchscript(prepare(G, fp16, fp16, recalibrate_bn), out, device)
    typer.echo(report.render())
    typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes)")


@app.command()
@friendly
def triton(ckpt: CkptArg,
           output: RepoOpt = Path("triton_repo"),
           name: NameOpt = None,
           max_batch: Annotated[int, typer.Option("--max-batch", metavar="N",
                                                  help="Triton max_batch_size.")] = 64,
           generator_backend: GenBackendOpt = "python",
           fp16: Fp16Opt = False, arch: ArchOpt = None, arch_kwargs: ArchKwargsOpt = None,
           output_range: OutputRangeOpt = None, z_dim: ZDimOpt = None) -> None:
    """Triton model repository: the generator <name> (z -> images), and <name>_by_seed, an ensemble
    that takes seeds (and psi) and returns gan-serve's uint8 pixels (needs the triton extra)."""
    if max_batch < 1:
        raise InputError(f"--max-batch must be at least 1, got {max_batch}")
    if generator_backend not in GENERATOR_BACKENDS:
        raise InputError(f"--generator-backend must be {' or '.join(GENERATOR_BACKENDS)}, "
                         f"got {generator_backend!r}")
    check_output_dir(output.parent if str(output.parent) else Path("."))
    needs("triton", "triton")
    from .onnx import export_onnx
    from .prepared import prepare
    from .triton import model_config_pb2, write_repository

    model_config_pb2()  # the triton extra, before minutes of export
    G = _load(ckpt, arch, arch_kwargs, output_range, z_dim)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        report = export_onnx(prepare(G, fp16, fp16), model, DEFAULT_OPSET, max_batch)
        dirs = write_repository(output, name or G.loaded.name, model, max_batch, G.spec.output_range,
                                generator_backend)
    typer.echo(report.render())
    typer.echo(f"wrote {output}/: {dirs['onnx'].name} (model.onnx on Triton's {generator_backend} backend), "
               f"{dirs['latents'].name} and "
               f"{dirs['pixels'].name} (Python), {dirs['ensemble'].name} (ensemble: seeds -> uint8 pixels)")


@app.command("triton-serve")
@friendly
def triton_serve(
    repo: Annotated[Path, typer.Argument(metavar="REPO", help="A repository written by gan-export triton.")],
    pytriton: Annotated[Path | None, typer.Option(
        "--pytriton", metavar="DIR", help="Folder that holds nvidia-pytriton's pytriton/ (a "
        "site-packages, or a pip install --no-deps --target folder); default: the one this Python imports.")
    ] = None,
    http_port: PortOpt = 8000, grpc_port: PortOpt = 8001, metrics_port: PortOpt = 8002,
    log: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Write Triton's own log to this file.")] = None,
) -> None:
    """Run the tritonserver of the nvidia-pytriton wheel on REPO, on 127.0.0.1 only, until Ctrl-C or
    SIGTERM; it stops with its model processes. Needs the tritonserver extra (or --pytriton)."""
    from .triton_server import TritonInstall, TritonServer, check_repository

    check_repository(repo)  # the argument first, then the install
    server = TritonServer(repo, TritonInstall.find(pytriton), http_port=http_port, grpc_port=grpc_port,
                          metrics_port=metrics_port, log=log)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    try:
        with server:
            typer.echo(f"Triton serves {', '.join(server.models)} from {server.repo}: HTTP "
                       f"http://{server.http_url}, gRPC {server.grpc_url}, metrics "
                       f"http://127.0.0.1:{metrics_port}/metrics (Ctrl-C stops it)")
            code = server.process.wait()
        raise CheckpointError(f"tritonserver exited by itself (code {code})"
                              + (f"; its log is {log}" if log else ""))
    except KeyboardInterrupt:  # leaving `with` stopped the server and its model processes
        typer.echo("stopped", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("all")
@friendly
def all_(ckpt: CkptArg,
         output: FolderOpt = Path("."),
         arch: ArchOpt = None, arch_kwargs: ArchKwargsOpt = None,
         output_range: OutputRangeOpt = None, z_dim: ZDimOpt = None) -> None:
    """ONNX fp32 and fp16, TorchScript fp32, and a Triton repository, each verified."""
    check_output_dir(output.parent if str(output.parent) else Path("."))  # -o is created, like triton's
    if output.exists():
        check_output_dir(output)
    needs("all", "triton")
    from .onnx import export_onnx
    from .prepared import default_output, prepare
    from .torchscript import export_torchscript
    from .triton import model_config_pb2, write_repository

    model_config_pb2()  # the triton extra, before minutes of export
    G = _load(ckpt, arch, arch_kwargs, output_range, z_dim)
    output.mkdir(exist_ok=True)  # after the checkpoint loads: a bad one leaves nothing behind
    stem = G.loaded.name
    for fp16 in (False, True):
        out = output / default_output(stem, fp16, ".onnx", None)
        typer.echo(export_onnx(prepare(G, fp16, fp16), out).render())
    typer.echo(export_torchscript(prepare(G), output / f"{stem}.pt").render())
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(prepare(G), Path(tmp) / "model.onnx", DEFAULT_OPSET, 64)
        write_repository(output / "triton_repo", stem, Path(tmp) / "model.onnx", 64, G.spec.output_range)
    typer.echo(f"wrote {output}/{stem}.onnx, {stem}.fp16.onnx, {stem}.pt and {output}/triton_repo/")


@app.command("verify")
@friendly
def verify_cmd(artifact: Annotated[Path, typer.Argument(metavar="ARTIFACT",
                                                       help="An exported .onnx or .pt file.")],
               ckpt: CkptArg, arch: ArchOpt = None, arch_kwargs: ArchKwargsOpt = None,
               output_range: OutputRangeOpt = None, z_dim: ZDimOpt = None,
               trust_code: Annotated[bool, typer.Option(
                   "--trust-code", help="Needed for a TorchScript artifact: running it runs code "
                   "from the file; use it only for files you trust.")] = False) -> None:
    """Compare an existing artifact with its checkpoint; exit 1 when it is out of tolerance."""
    kind = artifact_kind(artifact)
    if kind == "checkpoint":
        raise InputError(f"{artifact.name!r} is not an exported artifact (.onnx or TorchScript .pt)")
    if kind == "torchscript" and not trust_code:
        raise torchscript_refused(artifact, "gan-export verify --trust-code")
    needs("verify", onnxruntime=kind == "onnx")
    from .onnx import verify_onnx_file
    from .prepared import prepare
    from .verification import verify

    G = _load(ckpt, arch, arch_kwargs, output_range, z_dim)
    p = prepare(G)
    if kind == "onnx":
        report = verify_onnx_file(p, artifact, artifact.name)
    else:
        from gan_serve.backends.torchscript_backend import open_torchscript

        _, runner = open_torchscript(artifact, artifact.stem, "cpu", None)
        report = verify(G, runner.run, runner.precision, artifact.name)
    typer.echo(report.render())
    if not report.passed:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point: thread settings first, before anything loads torch."""
    from gan_serve.runtime import configure_threads

    configure_threads()
    app()
