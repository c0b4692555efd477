"""The lowest-versions CI step (.ci/lowest) installs what pyproject.toml's lower bounds say: its
override pins each package it names to that package's lower bound, so the run is of the bound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.version import Version  # pytest's own dependency

REPO = Path(__file__).resolve().parents[1]


def _lower_bounds() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    bounds = {}
    for req in reqs:
        if m := re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*>=\s*([0-9][^,;\s]*)", req):
            bounds[m[1].lower()] = m[2]
    return bounds


def test_every_override_pins_a_lower_bound():
    bounds = _lower_bounds()
    lines = (REPO / ".ci/lowest-overrides.txt").read_text().splitlines()
    pins = [p for p in (line.split("#")[0].strip() for line in lines) if p]
    assert pins, "no override"
    for pin in pins:
        name, _, version = pin.partition("==")
        name = name.split("[")[0].lower()
        assert name in bounds and Version(bounds[name]) == Version(version), (pin, bounds.get(name))


def test_ci_runs_the_lowest_step_on_the_fast_suite():
    run = (REPO / ".ci/run").read_text()
    lowest = (REPO / ".ci/lowest").read_text()
    assert "bash .ci/lowest" in run
    assert "--resolution lowest-direct" in lowest and "--override .ci/lowest-overrides.txt" in lowest
    assert re.search(r"\.venv-lowest/bin/pytest -m \"not install and not client and not ray\"", lowest)
