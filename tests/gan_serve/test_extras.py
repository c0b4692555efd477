"""A feature whose extra is missing says so in one line, with both install commands, exit 2.

Each case runs a console script in a subprocess with some packages made unimportable (as if
that extra were not installed); tests/test_install.py checks the same in a real slim venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gan_serve.errors import GanServeError
from gan_serve.extras import (
    EXTRA_OF,
    from_import_error,
    install_command,
    missing,
    missing_extra,
    model_needs,
)

ROOT = Path(__file__).resolve().parents[2]
ENTRY = {"gan-serve": "gan_serve.commands.cli", "gan-export": "export.cli", "gan-train": "training.cli"}


def run_without(hidden: list[str], script: str, *args: str, path: Path | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run console script `script` with `hidden` packages unimportable."""
    code = textwrap.dedent(f"""
        import sys
        HIDDEN = {hidden!r}
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in HIDDEN:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Hide())
        sys.argv = [{script!r}] + {list(args)!r}
        from {ENTRY[script]} import main
        main()
    """)
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def one_line_naming(proc: subprocess.CompletedProcess, extra: str, needs: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f"needs {needs} (the {extra} extra" in lines[0], lines[0]
    assert lines[0].endswith(install_command(extra)), lines[0]


def test_the_message_names_the_extra_and_both_install_commands():
    exc = missing_extra("serve", "gan-serve serve", "fastapi")
    assert isinstance(exc, GanServeError) and isinstance(exc, ImportError)
    assert str(exc) == ('gan-serve serve needs fastapi (the serve extra): pip install -e ".[serve]" '
                        'in a clone, or pip install "gan-serve[serve]"')
    assert "the gpu extra instead" in str(missing_extra("cpu", "x", "ONNX Runtime"))


def test_only_missing_optional_packages_become_the_message():
    assert missing("numpy", "no_such_package_x") == ["no_such_package_x"]
    assert from_import_error(ModuleNotFoundError("x", name="no_such_package_x"), "x") is None
    assert from_import_error(ModuleNotFoundError("x", name="numpy"), "x") is None  # installed

def test_every_named_extra_exists_and_none_but_all_pulls_in_an_onnx_runtime():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_OF.values()) <= set(extras)

    def closure(name: str) -> set[str]:  # the requirements an extra brings, through gan-serve[...]
        out = set()
        for req in extras[name]:
            inner = req.partition("[")[2].partition("]")[0] if req.startswith("gan-serve[") else ""
            out |= set().union(*(closure(e) for e in inner.split(","))) if inner else {req}
        return out

    for name in extras:
        runtimes = {r.partition(">")[0] for r in closure(name) if r.startswith("onnxruntime")}
        expected = {"cpu": {"onnxruntime"}, "all": {"onnxruntime"}, "gpu": {"onnxruntime-gpu"}}
        assert runtimes == expected.get(name, set()), (name, runtimes)


def test_a_checkpoint_without_torch(small_ckpt):
    proc = run_without(["torch"], "gan-serve", "generate", "-m", str(small_ckpt))
    one_line_naming(proc, "torch", "torch")
    assert f"loading {small_ckpt.name!r}" in proc.stderr


def test_the_bundled_model_with_no_runtime_at_all(tmp_path):
    proc = run_without(["torch", "onnxruntime"], "gan-serve", "generate", "--n", "4", cwd=tmp_path)
    one_line_naming(proc, "cpu", "ONNX Runtime")
    assert not (tmp_path / "grid.png").exists()


def test_an_onnx_file_without_onnxruntime(artifacts):
    proc = run_without(["onnxruntime"], "gan-serve", "generate", "-m", str(artifacts["onnx"]))
    one_line_naming(proc, "cpu", "ONNX Runtime")


def test_rank_with_without_torch_is_caught_by_the_safety_net(artifacts, small_ckpt, tmp_path):
    proc = run_without(["torch"], "gan-serve", "generate", "-m", str(artifacts["onnx"]), "--n", "2",
                       "--candidates", "4", "--rank-with", str(small_ckpt), "-o", str(tmp_path / "g.png"))
    one_line_naming(proc, "torch", "torch")


def test_serve_without_the_http_stack():
    proc = run_without(["fastapi"], "gan-serve", "serve")
    one_line_naming(proc, "serve", "fastapi")
    assert run_without(["fastapi"], "gan-serve", "serve", "--help").returncode == 0


@pytest.mark.parametrize("command", ["onnx", "torchscript", "verify"])
def test_export_without_onnx(command, small_ckpt, artifacts):
    args = [str(artifacts["onnx"]), str(small_ckpt)] if command == "verify" else [str(small_ckpt)]
    proc = run_without(["onnx"], "gan-export", command, *args)
    one_line_naming(proc, "onnx", "onnx")
    assert proc.stderr.startswith(f"error: gan-export {command} needs")


def test_export_without_onnxruntime(small_ckpt, tmp_path):
    proc = run_without(["onnxruntime"], "gan-export", "onnx", str(small_ckpt), "-o", str(tmp_path / "g.onnx"))
    one_line_naming(proc, "cpu", "ONNX Runtime")
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("hidden,command,line", [
    (["onnx", "onnxruntime"], ["gan-export", "onnx", "{ckpt}"],
     "gan-export onnx needs onnx (the onnx extra) and ONNX Runtime (the cpu extra; on a CUDA machine the "
     "gpu extra instead): " + install_command("onnx,cpu")),
    (["tritonclient", "onnxruntime"], ["gan-export", "all", "{ckpt}"],
     "gan-export all needs tritonclient (the triton extra) and ONNX Runtime (the cpu extra; on a CUDA "
     "machine the gpu extra instead): " + install_command("triton,cpu")),
    (["fastapi", "torch"], ["gan-serve", "serve", "-m", "{ckpt}"],
     "gan-serve serve needs fastapi (the serve extra) and torch (the torch extra): "
     + install_command("serve,torch")),
    (["fastapi", "torch", "onnxruntime"], ["gan-serve", "serve"],
     "gan-serve serve needs fastapi (the serve extra) and ONNX Runtime (the cpu extra; on a CUDA machine "
     "the gpu extra instead): " + install_command("serve,cpu")),
])
def test_a_command_names_every_missing_extra_at_once(hidden, command, line, small_ckpt, tmp_path):
    script, *args = command
    proc = run_without(hidden, script, *[a.format(ckpt=small_ckpt) for a in args], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {line}", proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_models_named_by_the_environment_are_not_taken_for_the_default(monkeypatch):
    assert set(model_needs(["g.onnx", "g.pth"])) == {"cpu", "torch"}
    monkeypatch.setenv("GAN_SERVE_MODELS", '["g.pth"]')
    assert model_needs(None) == {}  # named when it loads, not guessed here


@pytest.mark.parametrize("hidden", [["torch"], ["matplotlib"]])
def test_train_without_its_extra(hidden, tmp_path):
    proc = run_without(hidden, "gan-train", "--dry-run", "--data", "builtin:avatars", "--out",
                       str(tmp_path / "run"))
    one_line_naming(proc, "train", hidden[0])
    assert not (tmp_path / "run").exists()
    assert run_without(hidden, "gan-train", "--help").returncode == 0


def test_two_onnx_runtimes_in_one_environment_are_refused(artifacts, tmp_path):
    """`pip install "gan-serve[cpu,gpu]"` (or [all,gpu]) would install both: they overwrite
    each other's files, so gan-serve says which to keep instead of running on whichever won."""
    dist = tmp_path / "onnxruntime_gpu-1.20.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.20.0\n")
    proc = run_without([], "gan-serve", "generate", "-m", str(artifacts["onnx"]), "-o",
                       str(tmp_path / "g.png"), path=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == (
        "error: onnxruntime and onnxruntime-gpu are installed together and overwrite each other's "
        "files; keep one: pip uninstall -y onnxruntime onnxruntime-gpu && pip install "
        "onnxruntime-gpu (CUDA machines) or onnxruntime (CPU)")
    code = f"import gan_serve; gan_serve.load({str(artifacts['onnx'])!r})"  # the Python API too
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert "gan_serve.errors.MissingExtraError: onnxruntime and onnxruntime-gpu" in proc.stderr
