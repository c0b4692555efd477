"""Properties of the request models (hypothesis): any JSON object is either a valid request
whose seeds obey the limits, or refused with a ValidationError/InputError; never a crash."""

from __future__ import annotations

import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

from gan_serve import latents as lat
from gan_serve.errors import InputError
from gan_serve.http.routes import seed_request
from gan_serve.http.schemas import GenerateRequest, InterpolateRequest
from gan_serve.request import Limits

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats()
                    | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
FIELDS = st.sampled_from(["seed", "n", "seeds", "truncation", "psi", "format", "layout", "nrow",
                          "candidates", "model"])
SEEDISH = st.one_of(st.integers(-3, lat.MAX_SEED + 3), st.booleans(), st.text("0123456789-,", max_size=12),
                    st.lists(st.one_of(st.integers(-3, 2**33), st.booleans()), max_size=6), JSON)
fast = settings(max_examples=300, deadline=None, derandomize=True, database=None)


@fast
@given(st.dictionaries(FIELDS, SEEDISH, max_size=4))
def test_generate_bodies_are_valid_within_limits_or_refused(body):
    try:
        req = GenerateRequest.model_validate(body)
        seeds = list(seed_request(req, Limits(max_n=64)).seeds)
    except (pydantic.ValidationError, InputError):
        return
    assert 1 <= len(seeds) <= 64 and all(0 <= s <= lat.MAX_SEED for s in seeds)
    assert not any(isinstance(v, bool) for v in (req.seed, req.n, req.nrow))


@fast
@given(st.dictionaries(st.sampled_from(["seeds", "from", "to", "latents", "steps", "loop",
                                        "truncation_psi", "duration_ms"]), SEEDISH, max_size=4))
def test_interpolate_bodies_never_take_a_bool_for_an_integer(body):
    try:
        req = InterpolateRequest.model_validate(body)
    except pydantic.ValidationError:
        return
    assert not isinstance(req.steps, bool) and not isinstance(req.duration_ms, bool)
    assert req.seeds is None or isinstance(req.seeds, str) or not any(isinstance(s, bool) for s in req.seeds)


@fast
@given(st.one_of(st.booleans(), st.lists(st.booleans(), min_size=1, max_size=3)))
def test_bools_are_never_seeds_or_counts(value):
    for body in ({"n": value}, {"seed": value}, {"seeds": value}):
        try:
            GenerateRequest.model_validate(body)
        except pydantic.ValidationError:
            continue
        raise AssertionError(f"{body} was accepted")
