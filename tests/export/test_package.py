"""export's package names: the functions it names lazily (PEP 562) stay functions however its
submodules were imported, and `import export` loads no torch (gan-export --help starts fast)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_functions_stay_the_package_names_after_their_modules_load():
    out = _run("import types, export.prepared, export.verification, export.onnx\n"
               "from export import prepare, verify, export_onnx\n"
               "print([isinstance(f, types.ModuleType) or not callable(f) "
               "for f in (prepare, verify, export_onnx)])")
    assert out.strip() == "[False, False, False]"


def test_importing_the_package_loads_no_torch():
    assert _run("import sys, export; print('torch' in sys.modules)").strip() == "False"


def test_every_listed_name_resolves_and_others_raise_attribute_error():
    import export

    for name in export.__all__:
        assert callable(getattr(export, name)), name
    with pytest.raises(AttributeError, match="nothing_here"):
        export.nothing_here  # noqa: B018
