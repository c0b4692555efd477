"""Every bad input gets a 4xx JSON body {"error": ...} with the CLI's message, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gan_serve.http import ServeSettings, create_app

BAD_GENERATE = [
    ({"n": 0}, "n must be an integer from 1 to 64, got 0"),
    ({"n": 65}, "n must be an integer from 1 to 64, got 65"),
    ({"seed": -1}, "seed -1 is outside [0, 4294967295]"),
    ({"seed": 4294967295, "n": 2}, "seeds 4294967295..4294967296 run past the largest seed 4294967295"),
    ({"seeds": "1-x"},
     "malformed seed list item '1-x' in '1-x'; write seeds like '42', '0-35' or '0-35,100'"),
    ({"seeds": "0-99"}, "seed list '0-99' names more than 64 seeds"),
    ({"seeds": "5-3"}, "runs backwards"),
    ({"seeds": [1, 2], "seed": 3}, "give either seeds or seed/n, not both"),
    ({"seeds": []}, "no seeds given"),
    ({"truncation": 3}, "truncation psi must be in [0.0, 2.0] (1 = off), got 3.0"),
    ({"format": "bmp"}, "format: Input should be 'png', 'jpeg', 'jpg' or 'webp'"),
    ({"truncation": 0.5, "psi": 0.5}, "give one of truncation, truncation_psi, psi"),
    ({"psi": 2.5}, "truncation psi must be in [0.0, 2.0]"),
    ({"candidates": 32, "n": 4}, "start it with `gan-serve serve --rank-with D.pth`"),
    ({"candidates": 0}, "candidates must be an integer from 1 to 64"),
    ({"candidates": 3, "n": 4}, "ranking keeps n (4) images of the candidates, but there are only 3"),
    ({"layout": "pdf"}, "layout"),
    ({"nrow": 0}, "nrow"),
    ({"sed": 1}, "sed: Extra inputs are not permitted"),
    ({"seed": "abc"}, "seed: Input should be a valid integer"),
    ({"seed": 1.5}, "seed"),
    ({"model": "x" * 300}, "model"),
    ({"n": True}, "n: Input should be a valid integer"),  # strict, like the Python API
    ({"seeds": [True, False]}, "seeds.list[int]: Input should be a valid integer"),
    ({"seed": "3"}, "seed: Input should be a valid integer"),
    ({"nrow": True}, "nrow"),
]


@pytest.mark.parametrize("body,message", BAD_GENERATE)
def test_generate_bad_input_is_422_json(client, body, message):
    r = client.post("/generate", json=body)
    assert r.status_code == 422 and message in r.json()["error"], r.text


@pytest.mark.parametrize("body,message", [
    ({"seeds": [3]}, "interpolation needs at least two seeds or latents"),
    ({"seeds": [3, 4], "steps": 1}, "steps must be from 2 to 32 (endpoints included), got 1"),
    ({"seeds": [3, 4], "steps": 33}, "steps must be from 2 to 32 (endpoints included), got 33"),
    ({"seeds": [3, 4], "method": "cubic"}, "method"),
    ({"seeds": [3, 4], "format": "gif", "animate": False},
     "unknown format 'gif'; choose one of png, jpeg, webp"),
    ({"seeds": [3, 4], "format": "jpeg", "animate": True}, "unknown format 'jpeg'; choose one of gif, webp"),
    ({"seeds": [3, 4], "format": "gif", "duration_ms": 1}, "frame duration must be 10..10000 ms, got 1"),
    ({"from": 3}, "from and to go together"),
    ({"from": 3, "to": 4, "seeds": [1, 2]}, "give exactly one of from/to, seeds or latents"),
    ({"latents": "not base64!"}, "latents: not base64 of a .npy file"),
    ({"latents": "AAAA"}, "latents: not base64 of a .npy file"),
    ({"latents": [[0.0] * 100]}, "at least two"),
    ({"latents": [[0.0] * 7, [0.0] * 7]}, "latents must have shape (K, 100) for this model, got (2, 7)"),
    ({"latents": [[1.0, 2.0], [1.0]]}, "equally long lists"),
    ({"latents": []}, "equally long lists"),
    ({"seeds": "0-40", "steps": 3}, "41 keys with 3 steps make 81 frames; the limit is 64 per interpolation"),
    ({"seeds": "0-99"}, "names more than 64 seeds"),
    ({"seeds": [3, 4], "steps": True}, "steps: Input should be a valid integer"),
    ({"seeds": [3, 4], "loop": 1}, "loop: Input should be a valid boolean"),
    ({}, "give exactly one of from/to, seeds or latents"),
])
def test_interpolate_bad_input_is_422_json(client, body, message):
    r = client.post("/interpolate", json=body)
    assert r.status_code == 422 and message in r.json()["error"], r.text


def test_malformed_bodies_unknown_routes_and_models(client):
    json_type = {"content-type": "application/json"}
    for content, message in ((b"{not json", "JSON decode error"), (b"[1]", "valid dictionary"),
                             (b"", "body: Field required"), (b'{"seeds": "\xff\xfe"}', "not UTF-8"),
                             (b"[" * 5000, "nested too deeply")):
        r = client.post("/interpolate", content=content, headers=json_type)
        assert r.status_code == 422 and message in r.json()["error"], r.text
    r = client.post("/generate", json={"model": "nope"})
    assert r.status_code == 404 and r.json() == {"error": "unknown model 'nope'; loaded: netG_epoch_24"}
    assert client.get("/nope").json() == {"error": "Not Found"}
    r = client.get("/generate")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert client.get("/healthz").status_code == 200


def test_bodies_over_the_limit_get_413_even_without_content_length(client):
    big = b"[" + b"1," * 40000 + b"1]"
    r = client.post("/generate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {"error": "request body over 65536 bytes"}
    chunks = (b" " * 8192 for _ in range(10))  # a generator body goes out chunked
    r = client.post("/generate", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {"error": "request body over 65536 bytes"}
    assert client.post("/generate", json={"n": 1}).status_code == 200


def test_api_key_on_every_route_but_health_and_the_page(G, monkeypatch):
    monkeypatch.setenv("TEST_GAN_KEY", "s3cret")
    app = create_app(ServeSettings(api_key_env="TEST_GAN_KEY", naive_endpoint=True), generators={"g": G})
    with TestClient(app) as c:
        for path in ("/generate", "/interpolate", "/generate-naive"):
            r = c.post(path, json={"seeds": [1, 2]})
            assert r.status_code == 401 and "Bearer" in r.json()["error"], path
            assert r.headers["www-authenticate"] == "Bearer"
        for path in ("/models", "/metrics", "/openapi.json", "/docs"):
            assert c.get(path).status_code == 401, path
        for header in ("Bearer nope", "s3cret", "Basic s3cret"):
            assert c.post("/generate", json={"n": 1}, headers={"authorization": header}).status_code == 401
        for body in (b"{not json", b'{"n": "\xff"}', b'{"n": true}', b"[" * 1000):  # auth first
            r = c.post("/generate", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 401, (body, r.text)
        key = {"authorization": "Bearer s3cret"}
        assert c.post("/generate", json={"n": 1}, headers=key).status_code == 200
        r = c.post("/generate", content=b"{not json", headers={**key, "content-type": "application/json"})
        assert r.status_code == 422
        assert c.get("/models", headers=key).status_code == 200
        assert c.get("/openapi.json", headers=key).status_code == 200
        for path in ("/healthz", "/readyz", "/", "/static/app.js"):
            assert c.get(path).status_code == 200, path


def test_an_unset_api_key_variable_is_refused(G, monkeypatch):
    monkeypatch.delenv("UNSET_GAN_KEY", raising=False)
    with pytest.raises(Exception, match="UNSET_GAN_KEY"):
        create_app(ServeSettings(api_key_env="UNSET_GAN_KEY"), generators={"g": G})


def test_cors_is_off_unless_configured(G):
    origin = {"origin": "https://example.org"}
    with TestClient(create_app(ServeSettings(), generators={"g": G})) as c:
        assert "access-control-allow-origin" not in c.get("/models", headers=origin).headers
    app = create_app(ServeSettings(cors_origins=["https://example.org"]), generators={"g": G})
    with TestClient(app) as c:
        assert c.get("/models", headers=origin).headers["access-control-allow-origin"] == "https://example.org"
        other = c.get("/models", headers={"origin": "https://evil.example"}).headers
        assert "access-control-allow-origin" not in other


def test_metrics_count_413s_refused_by_content_length(client):
    r = client.post("/generate", content=b"x" * 70000, headers={"content-type": "application/json"})
    assert r.status_code == 413
    text = client.get("/metrics").text
    assert 'gan_serve_requests_total{route="unmatched",status="413"} 1.0' in text, text


def test_openapi_lists_every_error_status_the_routes_give(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/generate", "/interpolate"):
        # 401 too, on a server with a key (tests/gan_serve/http/test_conventions.py)
        assert {"413", "422", "429", "503"} <= set(paths[route]["post"]["responses"]), route
