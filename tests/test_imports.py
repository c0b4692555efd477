"""Every module of gan_serve, training and export imports on its own, in a process that has
imported none of the project's modules (an import circle or a broken import fails here, not
in the one order a command happens to import in), and typer stays in the command modules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gan_serve", "training", "export")
# modules whose import runs something: a command line (`python -m`), or a model file that runs
# inside Triton only (it imports Triton's own triton_python_backend_utils)
NOT_IMPORTED = {"gan_serve.__main__", "training.__main__", "export.triton_models.model"}
# the modules that may import typer (or click under it): the command lines
COMMAND_LINES = ("gan_serve/commands/", "export/cli.py", "training/cli.py")

# Third-party packages are imported once, then each module is imported in a process forked from
# that one (a fresh process for each: nothing of the project is loaded before it), so the test
# costs one torch import, not one per module.
IMPORT_EACH = """
import importlib, json, multiprocessing, sys
for name in ("numpy", "PIL.Image", "torch", "safetensors", "typer", "tqdm", "fastapi", "uvicorn",
             "pydantic_settings", "prometheus_client", "onnx", "onnxruntime", "matplotlib"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
ours = ("gan_serve", "training", "export")
assert not [m for m in sys.modules if m.partition(".")[0] in ours], "the project was imported"

def import_one(module):
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return [module, type(exc).__name__, getattr(exc, "name", None) or "", str(exc)]
    return [module, "", "", ""]

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
        print(json.dumps(pool.map(import_one, sys.argv[1:], chunksize=1)))
"""


def project_modules() -> list[str]:
    names = []
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if "__pycache__" not in parts and name not in NOT_IMPORTED:
                names.append(name)
    return names


def test_every_module_imports_on_its_own():
    modules = project_modules()
    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH, *modules], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r[0] for r in results] == modules
    # a ModuleNotFoundError of a package that is not ours is an optional extra not installed here
    # (the modules that import one at the top are not part of the core); anything else is a fault
    faults = [r for r in results if r[1] and not (r[1] == "ModuleNotFoundError" and r[2]
                                                   and r[2].partition(".")[0] not in PACKAGES)]
    assert not faults, "\n".join(f"{m}: {kind}: {text}" for m, kind, _, text in faults)


def imported_names(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it, with relative imports made absolute."""
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_command_lines_import_typer():
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            found = {n for n in imported_names(path) if n.partition(".")[0] in ("typer", "click")}
            if not rel.startswith(COMMAND_LINES):
                assert not found, f"{rel} imports {sorted(found)}"


def test_the_library_imports_no_command_module():
    shims = ("gan_serve/cli.py", "gan_serve/__main__.py")  # the entry points of older installs
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(COMMAND_LINES) or rel in shims:
                continue
            found = {n for n in imported_names(path) if n.startswith("gan_serve.commands")}
            assert not found, f"{rel} imports {sorted(found)}"
