"""Provenance (gan_serve.outputs): one builder of its keys, whichever surface asks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gan_serve
from gan_serve import outputs as out
from gan_serve.request import PathRequest, SeedRequest


def test_every_surface_gets_the_keys_outputs_builds(small_ckpt):
    G = gan_serve.load(small_ckpt)
    meta = out.provenance(G, [3, 4, 5, 9], 0.7, method="lerp")
    assert meta == {
        "Software": "gan-serve", "gan_serve.model": G.model_id, "gan_serve.backend": G.backend,
        "gan_serve.micro_batch": str(G.runner.micro_batch), "gan_serve.recipe": "1",
        "gan_serve.truncation_psi": "0.7", "gan_serve.seeds": "3-5,9", "gan_serve.method": "lerp",
    }
    assert G.provenance([3, 4, 5, 9], 0.7, method="lerp") == meta  # the Python API's
    assert SeedRequest.parse(seeds="3-5,9", truncation_psi=0.7).provenance(G) == {
        k: v for k, v in meta.items() if k != "gan_serve.method"}
    path = PathRequest.parse(seeds="3,9", steps=4, truncation_psi=0.7).provenance(G)
    assert path == {**out.provenance(G, [3, 9], 0.7), "gan_serve.method": "slerp",
                    "gan_serve.steps": "4", "gan_serve.loop": "False"}


def test_no_other_runtime_module_spells_a_provenance_key():
    root = Path(out.__file__).parent
    keys = ("Software", "gan_serve.seeds", "gan_serve.truncation_psi", "gan_serve.micro_batch")
    for path in root.rglob("*.py"):
        if path.name == "outputs.py":
            continue
        strings = {n.value for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not strings & set(keys), path


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_single_encoder_gives_single_bytes(small_ckpt, fmt):
    G = gan_serve.load(small_ckpt)
    encode = out.single_encoder(G, 0.7, fmt)
    for s, im in zip([0, 5, 2**32 - 1], G.generate([0, 5, 2**32 - 1], 0.7), strict=True):
        assert encode(s, im) == out.single_bytes(G, s, im, 0.7, fmt)
