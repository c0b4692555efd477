"""The web page in headless Chromium against a real `gan-serve serve` process:
a grid on open, generate another, click two avatars, watch their interpolation, download."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium browser on this machine (.ci/run installs Debian's chromium: "
    "apt-get install -y chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def test_a_grid_on_open_then_generate_click_two_and_watch_them_interpolate(serve_process, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            serve_process.url) else route.abort())  # nothing but our server: no CDN
        page.goto(serve_process.url + "/")
        page.wait_for_selector("figure[data-seed='57'] img")  # a grid on open: the form's 42..57
        assert page.locator("figure").count() == 16 and page.is_visible("#downloads")
        page.fill("#seed", "40")
        page.fill("#n", "9")
        page.click("#generate")
        page.wait_for_selector("figure[data-seed='40'] img")  # not in the first grid
        assert page.locator("figure").count() == 9
        assert page.eval_on_selector("figure[data-seed='40'] img", "img => img.naturalWidth") == 64

        page.click("figure[data-seed='41']")
        assert page.locator("figure.selected").count() == 1
        page.click("figure[data-seed='45']")
        page.wait_for_function("document.getElementById('interpolation').naturalWidth > 0")
        assert page.get_attribute("#interpolation", "data-seeds") == "41,45"
        assert page.is_visible("#interp-panel")
        assert page.text_content("#interp-seeds") == "seed 41 ↔ seed 45"

        with page.expect_download() as download:
            page.click("#download-grid")
        assert download.value.suggested_filename == "seeds-40-48.png"
        assert download.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        if os.environ.get("GAN_SERVE_SCREENSHOT"):  # to look at the page: GAN_SERVE_SCREENSHOT=page.png
            shutil.copy(tmp_path / "page.png", os.environ["GAN_SERVE_SCREENSHOT"])
        browser.close()
        assert errors == []


def test_docs_render_the_api_with_no_network_but_our_server(serve_process):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            serve_process.url) else route.abort())  # offline: Swagger UI must come from the app
        page.goto(serve_process.url + "/docs")
        page.wait_for_selector("#operations-images-generate")
        assert page.locator(".opblock").count() >= 6  # generate, interpolate, models, metrics, health
        assert page.locator("button.authorize").count() == 0  # a server without a key declares none
        browser.close()
        assert errors == []
