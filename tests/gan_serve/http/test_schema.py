"""The OpenAPI document against the app (schemathesis): any 5xx, any status the document does
not list, or a response that breaks its declared schema fails. Bounded: a fixed number of
generated cases per operation (valid and invalid bodies), a few seconds in all."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gan_serve.ganspace import find_directions
from gan_serve.http import ServeSettings, create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def test_the_openapi_document_holds_for_generated_requests(G, tmp_path):
    # small limits keep every valid request cheap (a few 16x16 images); directions to edit along
    dirs = find_directions(G, samples=32, components=2, layer="pixels").save(tmp_path / "d.safetensors")
    app = create_app(ServeSettings(max_n=4, max_steps=4, max_keys=3, directions=[str(dirs)]),
                     generators={"g": G})
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    tried = set()
    for result in api.get_all_operations():
        operation = result.ok()
        bodies = operation.method.upper() == "POST"  # a GET without parameters has no invalid form
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[: 2 if bodies else 1]:

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=40, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def holds(case: schemathesis.Case) -> None:
                response = case.call_and_validate(checks=CHECKS)
                tried.add((case.operation.label, response.status_code))

            holds()
    labels = {label for label, _ in tried}
    assert {"POST /generate", "POST /interpolate", "POST /walk", "GET /models",
            "GET /metrics"} <= labels, tried
    assert ("POST /generate", 422) in tried and ("POST /interpolate", 422) in tried
    assert ("POST /walk", 422) in tried  # its 200s: tests/gan_serve/http/test_directions.py
