"""What users check first: /docs without internet, the key in OpenAPI, process metrics and
end-to-end request latency in /metrics."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from gan_serve.http import ServeSettings, create_app


def test_docs_page_loads_swagger_ui_from_the_app_only(client):
    html = client.get("/docs").text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in urls and "/static/swagger-ui/swagger-ui.css" in urls
    assert "/openapi.json" in urls
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls  # no CDN, no host
    assert "http://" not in html and "https://" not in html
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 0, url
    bundle = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text and "javascript" in bundle.headers["content-type"]


def test_openapi_declares_the_bearer_key_only_on_a_server_with_one(client, G, monkeypatch):
    keyless = client.get("/openapi.json").json()
    assert "securitySchemes" not in keyless.get("components", {})
    operations = [op for path in keyless["paths"].values() for op in path.values()]
    assert all("security" not in op and "401" not in op["responses"] for op in operations)

    monkeypatch.setenv("TEST_GAN_KEY", "s3cret")
    with TestClient(create_app(ServeSettings(api_key_env="TEST_GAN_KEY"), generators={"g": G})) as c:
        spec = c.get("/openapi.json", headers={"authorization": "Bearer s3cret"}).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "The key of --api-key-env, when the server was started with one."}
    paths = spec["paths"]
    for path, method in (("/generate", "post"), ("/interpolate", "post"), ("/models", "get"),
                         ("/metrics", "get")):
        assert paths[path][method]["security"] == [{"apiKey": []}], path
        assert "401" in paths[path][method]["responses"], path
    for path in ("/healthz", "/readyz"):
        assert "security" not in paths[path]["get"], path


def test_openapi_declares_files_as_binary_and_the_json_layout_apart(client):
    paths = client.get("/openapi.json").json()["paths"]
    binary = {"schema": {"type": "string", "format": "binary"}}
    generate = paths["/generate"]["post"]["responses"]["200"]["content"]
    assert list(generate) == ["image/png", "image/jpeg", "image/webp", "application/zip",
                              "application/octet-stream", "application/json"]
    assert all(generate[t] == binary for t in list(generate)[:-1])
    assert generate["application/json"] == {"schema": {"$ref": "#/components/schemas/GenerateJSON"}}
    interpolate = paths["/interpolate"]["post"]["responses"]["200"]["content"]
    assert interpolate == {t: binary for t in ("image/png", "image/jpeg", "image/webp", "image/gif",
                                               "video/mp4", "video/webm")}
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert paths["/generate"]["post"]["operationId"] == "generate"  # generated clients: api.images.generate


def test_declaring_the_key_keeps_401_before_422(G, monkeypatch):
    monkeypatch.setenv("TEST_GAN_KEY", "s3cret")
    with TestClient(create_app(ServeSettings(api_key_env="TEST_GAN_KEY"), generators={"g": G})) as c:
        r = c.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 401 and r.json()["error"].startswith("missing or wrong API key")
        assert c.get("/static/swagger-ui/swagger-ui.css").status_code == 200  # assets hold no data
        key = {"authorization": "Bearer s3cret"}
        spec = c.get("/openapi.json", headers=key).json()
        assert "apiKey" in spec["components"]["securitySchemes"]


def test_metrics_show_process_metrics_and_request_latency(client):
    client.post("/generate", json={"seed": 1, "n": 2})
    client.post("/generate", json={"n": 0})
    text = client.get("/metrics").text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds", "python_info"):
        assert re.search(rf"^{name}(\{{[^}}]*\}})? ", text, re.M), name
    assert "# TYPE gan_serve_request_seconds histogram" in text
    for status in ("200", "422"):
        count = re.search(rf'^gan_serve_request_seconds_count{{route="/generate",status="{status}"}} (\S+)',
                          text, re.M)
        assert count and float(count.group(1)) == 1.0, status
        inf = f'gan_serve_request_seconds_bucket{{le="+Inf",route="/generate",status="{status}"}} 1.0'
        assert inf in text
