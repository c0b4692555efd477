"""Seed recipe v1, seed lists, truncation and interpolation paths."""

from __future__ import annotations

import numpy as np
import pytest

from gan_serve import latents as lat
from gan_serve.errors import InputError
from gan_serve.limits import DEFAULT_LIMITS as TOP

CAPS = {"max_steps": TOP.max_steps, "max_frames": TOP.max_n}  # a path's caps, as a request passes them


def test_recipe_v1_is_randomstate_randn_as_float32():
    z = lat.seed_to_latent(42, 100)
    assert z.dtype == np.float32 and z.shape == (100,)
    assert np.array_equal(z, np.random.RandomState(42).randn(100).astype(np.float32))
    assert np.array_equal(lat.latents_for_seeds([42, 43], 100)[1], lat.seed_to_latent(43, 100))


@pytest.mark.parametrize("z_dim", [100, 101, 1])  # odd sizes leave a cached Gaussian behind
def test_reused_randomstate_gives_the_bits_of_a_fresh_one(z_dim):
    rng = np.random.RandomState(1234)
    seeds = [0, 1, 2, 41, 42, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
    seeds += [int(s) for s in rng.randint(0, 2**32, size=2000, dtype=np.uint64)]
    fresh = np.stack([np.random.RandomState(s).randn(z_dim).astype(np.float32) for s in seeds])
    assert np.array_equal(lat.latents_for_seeds(seeds, z_dim), fresh)
    assert all(np.array_equal(lat.seed_to_latent(s, z_dim), fresh[i]) for i, s in enumerate(seeds))


def test_each_thread_gets_the_same_latents():
    from concurrent.futures import ThreadPoolExecutor

    ref = lat.latents_for_seeds(range(500), 100)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda k: lat.latents_for_seeds(range(500), 100), range(8)))
    assert all(np.array_equal(o, ref) for o in outs)


def test_seed_range_is_s_to_s_plus_n_minus_1():
    assert lat.seed_range(42, 4, TOP.max_n) == [42, 43, 44, 45]
    assert lat.seed_range(lat.MAX_SEED, 1, TOP.max_n) == [lat.MAX_SEED]
    with pytest.raises(InputError, match="run past"):
        lat.seed_range(lat.MAX_SEED, 2, TOP.max_n)


@pytest.mark.parametrize("text,expected", [
    ("42", [42]), ("0-3,100", [0, 1, 2, 3, 100]), (" 5 , 1-2 ", [5, 1, 2]),
    ("4294967295", [4294967295]),
])
def test_parse_seeds(text, expected):
    assert lat.parse_seeds(text, TOP.max_n) == expected
    assert lat.parse_seeds(lat.format_seeds(expected), TOP.max_n) == expected


@pytest.mark.parametrize("text,message", [
    ("", "empty"), ("1-x", "malformed"), ("1,,2", "malformed"), ("-3", "malformed"),
    ("1.5", "malformed"), ("9-3", "backwards"), ("4294967296", "outside"), ("0-5000", "more than"),
])
def test_malformed_seed_lists_say_what_is_allowed(text, message):
    with pytest.raises(InputError, match=message):
        lat.parse_seeds(text, TOP.max_n)


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, True, "3"])
def test_seeds_outside_range_or_not_integers(bad):
    with pytest.raises(InputError):
        lat.check_seed(bad)


@pytest.mark.parametrize("n", [0, -3, TOP.max_n + 1])
def test_n_out_of_range(n):
    with pytest.raises(InputError, match=f"1 to {TOP.max_n}"):
        lat.check_n(n, TOP.max_n)


def test_truncation():
    z = lat.seed_to_latent(1, 8)
    assert lat.truncate(z, 1.0) is z
    assert np.allclose(lat.truncate(z, 0.5), z * 0.5)
    assert not lat.truncate(z, 0.0).any()
    for bad in (-0.1, 2.01, float("nan"), "x"):
        with pytest.raises(InputError, match="psi"):
            lat.truncate(z, bad)


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_interpolation_endpoints_are_the_keys(method):
    keys = lat.latents_for_seeds([3, 17, 42], 100)
    path = lat.interpolation_path(keys, steps=5, method=method, **CAPS)
    assert path.shape == (2 * 4 + 1, 100)
    for i, k in zip((0, 4, 8), keys, strict=True):
        assert np.array_equal(path[i], k)
    looped = lat.interpolation_path(keys, steps=5, method=method, loop=True, **CAPS)
    assert looped.shape == (3 * 4, 100) and np.array_equal(looped[0], keys[0])


def test_slerp_keeps_the_norm_between_equal_norm_keys():
    a, b = lat.seed_to_latent(1, 512), lat.seed_to_latent(2, 512)
    b = b / np.linalg.norm(b) * np.linalg.norm(a)
    mid = lat.slerp(a, b, np.array([0.5]))[0]
    assert np.isclose(np.linalg.norm(mid), np.linalg.norm(a), rtol=1e-5)
    assert np.linalg.norm(lat.lerp(a, b, np.array([0.5]))[0]) < 0.8 * np.linalg.norm(a)


@pytest.mark.parametrize("steps", [1, 0, TOP.max_steps + 1])
def test_steps_out_of_range(steps):
    with pytest.raises(InputError, match="steps"):
        lat.interpolation_path(np.zeros((2, 4)), steps, **CAPS)


def test_unknown_method_and_too_few_keys():
    with pytest.raises(InputError, match="slerp"):
        lat.interpolation_path(np.zeros((2, 4)), 4, method="cubic", **CAPS)
    with pytest.raises(InputError, match="at least two"):
        lat.interpolation_path(np.zeros((1, 4)), 4, **CAPS)


def test_one_frame_cap_for_every_interpolation():
    assert lat.check_frames(4096, 2, False, TOP.max_n) == 4096 == TOP.max_n
    assert lat.check_frames(2, 1024, True, TOP.max_n) == 2046
    with pytest.raises(InputError, match="4096 keys with 1024 steps make 4,189,186 frames; the limit "
                                         "is 4,096 per interpolation"):
        lat.check_frames(4096, 1024, False, TOP.max_n)
    keys = np.zeros((4096, 100), np.float32)  # the path would be 1.7 GB: refused before it exists
    with pytest.raises(InputError, match="the limit is 4,096"):
        lat.interpolation_path(keys, 1024, **CAPS)
