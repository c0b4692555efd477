"""The one `Limits` (gan_serve.limits): each limit declared once, lowered within the same bounds
by a server, and never held a second time by gan_serve.latents."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from gan_serve import latents as lat
from gan_serve.errors import InputError
from gan_serve.http.settings import SERVER_LIMITS, ServeSettings
from gan_serve.limits import DEFAULT_LIMITS, Limits, bounds


def test_each_limit_goes_from_its_lowest_to_its_default():
    for name, (low, top) in bounds().items():
        assert getattr(DEFAULT_LIMITS, name) == top
        assert getattr(Limits(**{name: low}), name) == low
        for bad in (low - 1, top + 1, True, float(top)):
            with pytest.raises(InputError, match=f"{name} must be an integer from {low} to {top}"):
                Limits(**{name: bad})


def test_a_server_lowers_each_limit_within_the_same_bounds():
    fields = ServeSettings.model_fields
    for name in SERVER_LIMITS:
        low, top = bounds()[name]
        given = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in fields[name].metadata}
        assert (fields[name].default, given) == (top, {"Ge": low, "Le": top})
        assert getattr(ServeSettings(**{name: low}).limits, name) == low
        with pytest.raises(ValueError, match=name):
            ServeSettings(**{name: top + 1})
    assert ServeSettings().limits == DEFAULT_LIMITS


def test_latents_take_every_limit_as_an_argument():
    for name, fn in inspect.getmembers(lat, inspect.isfunction):
        for param in inspect.signature(fn).parameters.values():
            if param.name in ("limit", "max_steps", "max_frames"):
                assert param.default is inspect.Parameter.empty, f"{name}({param.name}=...)"
    # Triton models run a copy of latents.py beside errors.py only: it may import nothing else
    tree = ast.parse(Path(inspect.getfile(lat)).read_text())
    local = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert local == ["errors"]
