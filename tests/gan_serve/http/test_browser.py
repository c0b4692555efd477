"""The web page in headless Chromium: generate, click two avatars, see the interpolation."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright

from gan_serve.http import ServeSettings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--disable-component-update", "--disable-sync", "--disable-quic"]


@pytest.mark.skipif(CHROMIUM is None,
                    reason="no Chromium on this machine (.ci/run installs Debian's chromium)")
def test_generate_click_two_and_watch_them_interpolate(G, live, tmp_path):
    app = create_app(ServeSettings(), generators={"netG": G})
    with live(app) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        page.fill("#seed", "40")
        page.fill("#n", "9")
        page.click("#generate")
        page.wait_for_selector("figure[data-seed='48']")
        assert page.locator("figure").count() == 9
        page.click("figure[data-seed='41']")
        page.click("figure[data-seed='45']")
        page.wait_for_function("document.getElementById('interpolation').naturalWidth > 0", timeout=30000)
        assert page.get_attribute("#interpolation", "data-seeds") == "41,45"
        assert page.is_visible("#interp-panel")
        assert "41 ↔ 45" in page.text_content("#status")
        page.screenshot(path=str(tmp_path / "page.png"))
        browser.close()
