"""gan_serve.request: the one place seeds, limits, latents and provenance of a request are decided."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from gan_serve import latents as lat
from gan_serve import outputs as out
from gan_serve.errors import InputError
from gan_serve.request import (
    DEFAULT_LIMITS,
    SEEDS_XOR,
    Limits,
    PathRequest,
    SeedRequest,
    decode_latents,
    read_latents,
)


def test_seed_or_n_or_seeds_with_the_defaults_0_and_16():
    assert list(SeedRequest.parse().seeds) == list(range(16))
    assert list(SeedRequest.parse(seed=7, n=3).seeds) == [7, 8, 9]
    assert list(SeedRequest.parse(n=2).seeds) == [0, 1]
    assert list(SeedRequest.parse(seeds="3-5,100").seeds) == [3, 4, 5, 100]
    assert list(SeedRequest.parse(seeds=[9, 2]).seeds) == [9, 2]
    for bad in ({"seeds": "1", "seed": 4}, {"seeds": [1], "n": 2}, {"seeds": "1-3", "seed": 0, "n": 1}):
        with pytest.raises(InputError) as exc:
            SeedRequest.parse(**bad)
        assert str(exc.value) == SEEDS_XOR  # one text, whatever the surface


def test_candidates_keep_n_of_a_pool():
    req = SeedRequest.parse(seed=10, n=4, candidates=20)
    assert list(req.seeds) == list(range(10, 30)) and req.keep == 4 and len(req) == 20
    req = SeedRequest.parse(seeds="0-9", n=3, candidates=512)  # seeds are the pool, n what is kept
    assert list(req.seeds) == list(range(10)) and req.keep == 3
    with pytest.raises(InputError, match="only 2"):
        SeedRequest.parse(seeds="0-1", n=3, candidates=8)
    with pytest.raises(InputError, match="candidates must be an integer from 1 to 8"):
        SeedRequest.parse(candidates=9, n=1, limits=Limits(max_n=8))


def test_limits_may_be_lowered_never_raised():
    small = Limits(max_n=4, max_steps=3, max_keys=2)
    with pytest.raises(InputError, match="from 1 to 4, got 5"):
        SeedRequest.parse(n=5, limits=small)
    with pytest.raises(InputError, match="steps must be from 2 to 3"):
        PathRequest.parse(seeds=[1, 2], steps=4, limits=small)
    with pytest.raises(InputError, match="names more than 2 seeds"):
        PathRequest.parse(seeds="1-3", steps=2, limits=small)
    with pytest.raises(InputError, match="make 4 frames; the limit is 3 per interpolation"):
        PathRequest.parse(seeds=[1, 2], steps=3, loop=True, limits=Limits(max_n=3))
    for bad in ({"max_n": DEFAULT_LIMITS.max_n + 1}, {"max_steps": 1}, {"max_keys": True}):
        with pytest.raises(InputError):
            Limits(**bad)
    huge = SeedRequest.parse(seed=0, n=10**9, stream=True)  # files stream: any count, no list
    assert isinstance(huge.seeds, range) and len(huge) == 10**9


def test_latents_are_recipe_v1_truncated():
    req = SeedRequest.parse(seeds=[3, 17], truncation_psi=0.5)
    expected = np.stack([np.random.RandomState(s).randn(100).astype(np.float32) for s in (3, 17)])
    assert np.array_equal(req.latents(100), lat.truncate(expected, 0.5))
    with pytest.raises(InputError, match="psi"):
        SeedRequest.parse(truncation_psi=2.5)


def test_a_path_through_seeds_or_latents():
    by_seed = PathRequest.parse(from_seed=3, to_seed=17, steps=5, truncation_psi=0.7)
    assert by_seed.keys == (3, 17) and len(by_seed) == 5
    z = by_seed.latents(100)
    keys = lat.latents_for_seeds([3, 17], 100)
    assert np.array_equal(z, lat.truncate(lat.interpolation_path(keys, 5, max_steps=5, max_frames=5), 0.7))
    by_latents = PathRequest.parse(latents=keys, steps=5, truncation_psi=0.7)
    assert np.array_equal(by_latents.latents(100), z)
    with pytest.raises(InputError, match=r"shape \(K, 64\)"):
        by_latents.check_model(64)
    assert len(PathRequest.parse(seeds="1,2,3", steps=4, loop=True)) == 9
    for bad, match in [({"from_seed": 1}, "go together"), ({}, "exactly one"),
                       ({"seeds": [1, 2], "latents": keys}, "exactly one"),
                       ({"seeds": [1, 2], "method": "cubic"}, "unknown interpolation method"),
                       ({"latents": np.full((2, 4), np.nan, np.float32)}, "finite")]:
        with pytest.raises(InputError, match=match):
            PathRequest.parse(**bad)


def test_provenance_carries_the_recipe_and_renders_as_headers(small_ckpt):
    import gan_serve

    G = gan_serve.load(small_ckpt)
    meta = SeedRequest.parse(seeds="0-9", n=2, candidates=10).provenance(G, [4, 1])
    assert meta["gan_serve.seeds"] == "4,1" and meta["gan_serve.ranked_from"] == "0-9"
    assert meta["gan_serve.recipe"] == "1"
    h = out.headers(meta)
    assert h["X-Gan-Serve-Recipe"] == "1" and h["X-Gan-Serve-Ranked-From"] == "0-9"
    assert h["X-Seeds"] == "4,1" and h["X-Truncation"] == h["X-Gan-Serve-Truncation-Psi"] == "1.0"
    path = PathRequest.parse(latents=G.latents([1, 2]), steps=3).provenance(G)
    assert "gan_serve.seeds" not in path and path["gan_serve.steps"] == "3"


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_key_latents_from_files_and_bodies(tmp_path):
    z = np.random.RandomState(0).randn(3, 8).astype(np.float32)
    (tmp_path / "a.npy").write_bytes(_npy(z[:2]))
    (tmp_path / "b.npy").write_bytes(_npy(z[2]))
    assert np.array_equal(read_latents([tmp_path / "a.npy", tmp_path / "b.npy"]), z)
    assert np.array_equal(decode_latents(base64.b64encode(_npy(z)).decode()), z)
    assert np.array_equal(decode_latents(z.tolist()), z)
    # a header that declares 4e12 floats is refused before anything is allocated for it
    lie = _npy(np.zeros((2, 2), np.float32)).replace(b"(2, 2)", b"(2000000, 2000000)", 1)
    with pytest.raises(InputError, match="latents are at most"):
        decode_latents(base64.b64encode(lie).decode())
    (tmp_path / "lie.npy").write_bytes(lie)
    with pytest.raises(InputError, match="cannot read latents from .*latents are at most"):
        read_latents([tmp_path / "lie.npy"])
    with pytest.raises(InputError, match="not base64 of a .npy"):
        decode_latents(base64.b64encode(_npy(np.array(["x"]))).decode())
