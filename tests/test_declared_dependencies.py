"""Every third-party module the shipped packages import comes from a distribution that
pyproject.toml declares (core or an extra), so no install gets it only by chance through
another package's requirements (starlette and pydantic once came only with fastapi)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("gan_serve", "training", "export")
# modules that the program running a file provides, not an install: Triton's python backend
# gives its models (export/triton_models) this one inside tritonserver
HOSTED = {"triton_python_backend_utils"}
# a module whose distribution has another name, for where that distribution is not installed
DISTRIBUTION_OF = {"PIL": "pillow", "google": "protobuf"}


def _declared() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_canonical(re.match(r"[A-Za-z0-9_.-]+", req)[0]) for req in reqs}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in `path`, but for fallbacks in an `except`
    (an older release's module path, e.g. click's beside typer's vendored copy)."""
    tree = ast.parse(path.read_text())
    fallback = {id(n) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) for n in ast.walk(h)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in fallback:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_imported_distribution_is_declared():
    declared, dists = _declared(), packages_distributions()
    missing = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for name in _imports(path) - set(sys.stdlib_module_names) - set(PACKAGES) - HOSTED:
                # the installed distribution(s) of that module, and its known or own name
                named = [*dists.get(name, []), DISTRIBUTION_OF.get(name, name)]
                candidates = {_canonical(d) for d in named}
                if not candidates & declared:
                    missing.setdefault(name, str(path.relative_to(REPO)))
    assert missing == {}, f"imported but not declared in pyproject.toml (module: first file): {missing}"
