"""Properties of the seed, truncation and frame-count rules (hypothesis): every input either
gives what the contract says or an InputError, never another exception."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gan_serve import latents as lat
from gan_serve.errors import InputError
from gan_serve.limits import DEFAULT_LIMITS as TOP

SEEDS = st.integers(0, lat.MAX_SEED)
SEED_LISTS = st.lists(SEEDS, min_size=1, max_size=64)
fast = settings(max_examples=300, deadline=None, derandomize=True, database=None)


@fast
@given(SEED_LISTS)
def test_format_then_parse_gives_the_seeds_back(seeds):
    assert lat.parse_seeds(lat.format_seeds(seeds), TOP.max_n) == seeds


@fast
@given(st.text(alphabet="0123456789-, x", max_size=40), st.integers(1, 300))
def test_any_seed_text_parses_within_limits_or_is_refused(text, limit):
    try:
        seeds = lat.parse_seeds(text, limit)
    except InputError:
        return
    assert 1 <= len(seeds) <= limit
    assert all(0 <= s <= lat.MAX_SEED for s in seeds)


@fast
@given(st.integers(-5, lat.MAX_SEED + 5), st.integers(-5, 300), st.integers(1, 300))
def test_seed_ranges_are_consecutive_and_prefix_stable(seed, n, limit):
    try:
        seeds = lat.seed_range(seed, n, limit)
    except InputError:
        assert not (seed >= 0 and 1 <= n <= limit and seed + n - 1 <= lat.MAX_SEED)
        return
    assert seeds == list(range(seed, seed + n))
    assert lat.seed_range(seed, 1, limit) == seeds[:1]  # image i of a grid is seed S+i


@fast
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                 st.booleans(), st.text(max_size=5), st.none()))
def test_truncation_psi_is_a_number_in_range_or_refused(psi):
    try:
        value = lat.check_psi(psi)
    except InputError:
        return
    assert 0.0 <= value <= 2.0 and not math.isnan(value)


@fast
@given(st.floats(0.0, 2.0), st.integers(1, 6), st.integers(1, 16))
def test_truncate_scales_the_latents(psi, n, z_dim):
    z = np.random.RandomState(0).randn(n, z_dim).astype(np.float32)
    out = lat.truncate(z, psi)
    assert out.dtype == np.float32 and out.shape == z.shape
    np.testing.assert_allclose(out, z * np.float32(psi), rtol=1e-6)


@fast
@given(st.integers(2, 5), st.integers(-2, 20), st.booleans(), st.sampled_from(lat.METHODS),
       st.integers(2, 20))
def test_frame_counts_match_the_path(keys, steps, loop, method, max_steps):
    k = np.random.RandomState(keys).randn(keys, 8).astype(np.float32)
    caps = {"max_steps": max_steps, "max_frames": TOP.max_n}
    if not 2 <= steps <= max_steps:
        with pytest.raises(InputError):
            lat.interpolation_path(k, steps, method, loop, **caps)
        return
    path = lat.interpolation_path(k, steps, method, loop, **caps)
    assert len(path) == lat.path_frames(keys, steps, loop)
    assert np.array_equal(path[0], k[0])  # the endpoints are the keys' own latents
    if not loop:
        assert np.array_equal(path[-1], k[-1])


@fast
@given(st.one_of(st.booleans(), st.floats(), st.text(max_size=3), st.integers(-3, 5000)))
def test_counts_are_strict_integers(n):
    try:
        assert lat.check_n(n, TOP.max_n) == n
    except InputError:
        assert isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TOP.max_n
