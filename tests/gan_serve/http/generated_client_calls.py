"""Run by tests/gan_serve/http/test_generated_client.py in the generator's own venv, with the
client that openapi-python-client generated (package `gan_serve_client`) on sys.path.

    python generated_client_calls.py URL OUT_DIR [KEY]

Calls every route through the generated functions and writes what each returned into OUT_DIR:
bytes as files, everything else in answers.json. Not a test module: it imports only the client.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gan_serve_client import AuthenticatedClient, Client
from gan_serve_client.api.benchmark import generate_naive
from gan_serve_client.api.health import healthz, readyz
from gan_serve_client.api.images import generate, interpolate
from gan_serve_client.api.service import metrics, models
from gan_serve_client.models import (
    ErrorBody,
    GenerateRequest,
    GenerateRequestFormat,
    GenerateRequestLayout,
    InterpolateRequest,
    InterpolateRequestFormat,
)
from gan_serve_client.types import File


def main(url: str, out: Path, key: str | None) -> None:
    client = AuthenticatedClient(base_url=url, token=key) if key else Client(base_url=url)
    files = {
        "generate.png": generate.sync(client=client, body=GenerateRequest()),
        "generate-7.webp": generate.sync(client=client, body=GenerateRequest(
            seed=7, n=4, format_=GenerateRequestFormat.WEBP)),
        "generate.zip": generate.sync(client=client, body=GenerateRequest(
            seeds="3,5", layout=GenerateRequestLayout.ZIP)),
        "generate.json": generate.sync(client=client, body=GenerateRequest(
            seeds=[3, 5], layout=GenerateRequestLayout.JSON)),
        "interpolate.png": interpolate.sync(client=client, body=InterpolateRequest(from_=1, to=5, steps=4)),
        "interpolate.gif": interpolate.sync(client=client, body=InterpolateRequest(
            seeds=[1, 5], steps=3, format_=InterpolateRequestFormat.GIF)),
        "naive.png": generate_naive.sync(client=client, body=GenerateRequest(seed=2, n=4)),
    }
    for name, answer in files.items():
        assert isinstance(answer, File), (name, answer)
        (out / name).write_bytes(answer.payload.read())
    refused = generate.sync(client=client, body=GenerateRequest(n=10**6))
    assert isinstance(refused, ErrorBody), refused
    ready = readyz.sync(client=client)
    answers = {
        "models": [m.to_dict() for m in models.sync(client=client)],
        "metrics": metrics.sync(client=client),
        "healthz": healthz.sync(client=client).to_dict(),
        "readyz": ready.to_dict(),
        "refused": refused.error,
        "generate_status": generate.sync_detailed(client=client, body=GenerateRequest()).status_code,
    }
    if key:  # the same call without the key
        keyless = generate.sync_detailed(client=Client(base_url=url), body=GenerateRequest())
        answers["without_key"] = [keyless.status_code, keyless.parsed.error]
    (out / "answers.json").write_text(json.dumps(answers))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
