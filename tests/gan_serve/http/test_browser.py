"""The web page in headless Chromium against a real `gan-serve serve` process:
a grid on open, generate another, click two avatars, watch their interpolation, download it
(a GIF, a grid, an MP4); with `serve --directions`: sliders that re-render the chosen image;
drop an image to project it, edit the projection and interpolate between projections."""

from __future__ import annotations

import base64
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from playwright import sync_api  # the test extra's

import gan_serve
from gan_serve.ganspace import find_directions
from tests.gan_serve.http.conftest import ServeProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium browser on this machine (.ci/run installs Debian's chromium: "
    "apt-get install -y chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def dirs_server(small_ckpt, tmp_path_factory):
    """`gan-serve serve` with a directions file found on the served model (pc0..pc3)."""
    folder = tmp_path_factory.mktemp("served-dirs")
    dirs = find_directions(gan_serve.load(small_ckpt), samples=64, components=4)
    server = ServeProcess("--model", str(small_ckpt), "--max-n", "64",
                          "--directions", str(dirs.save(folder / "dirs.safetensors")))
    yield server
    server.stop()


def open_page(p, server):
    """A page on `server` that can reach nothing else (no CDN), and the page errors it raises."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        server.url) else route.abort())
    return browser, page, errors


def test_a_grid_on_open_then_generate_click_two_and_watch_them_interpolate(serve_process, tmp_path):
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, serve_process)
        page.goto(serve_process.url + "/")
        page.wait_for_selector("figure[data-seed='57'] img")  # a grid on open: the form's 42..57
        assert page.locator("#grid figure").count() == 16 and page.is_visible("#downloads")
        assert page.is_hidden("#edit-panel")  # no directions served: no sliders
        page.fill("#seed", "40")
        page.fill("#n", "9")
        page.click("#generate")
        page.wait_for_selector("figure[data-seed='40'] img")  # not in the first grid
        assert page.locator("#grid figure").count() == 9
        assert page.eval_on_selector("figure[data-seed='40'] img", "img => img.naturalWidth") == 64

        page.click("figure[data-seed='41']")
        assert page.locator("figure.selected").count() == 1
        page.click("figure[data-seed='45']")
        page.wait_for_function("document.getElementById('interpolation').naturalWidth > 0")
        assert page.get_attribute("#interpolation", "data-seeds") == "41,45"
        assert page.is_visible("#interp-panel")
        assert page.text_content("#interp-seeds") == "seed 41 ↔ seed 45"
        with page.expect_download() as video:  # this server has the video extra
            page.click("#download-video")
        assert video.value.suggested_filename == "interpolation-41-45.mp4"
        assert video.value.path().read_bytes()[4:8] == b"ftyp"  # an MP4 file

        with page.expect_download() as download:
            page.click("#download-grid")
        assert download.value.suggested_filename == "seeds-40-48.png"
        assert download.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        if os.environ.get("GAN_SERVE_SCREENSHOT"):  # to look at the page: GAN_SERVE_SCREENSHOT=page.png
            shutil.copy(tmp_path / "page.png", os.environ["GAN_SERVE_SCREENSHOT"])
        browser.close()
        assert errors == []


def test_sliders_move_the_chosen_image_along_the_served_directions(dirs_server):
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, dirs_server)

        def without_video(route):  # the real answer, as a server without the video extra gives it
            models = route.fetch().json()
            route.fulfill(json=[{**m, "video": False} for m in models])

        page.route(dirs_server.url + "/models", without_video)
        page.goto(dirs_server.url + "/")
        page.wait_for_function("document.getElementById('edited').dataset.subject === 'seed 42'")
        sliders = page.locator("#sliders input")
        assert [sliders.nth(i).get_attribute("data-direction") for i in range(4)] == [
            "pc0", "pc1", "pc2", "pc3"]  # ganspace: most variance first
        plain = page.eval_on_selector("#edited", "c => c.toDataURL()")
        move = "(i, v) => { i.value = v; i.dispatchEvent(new Event('input')); }"
        sliders.nth(0).evaluate(move, "1")
        sliders.nth(0).evaluate(move, "2.5")  # debounced: one render for the resting position
        page.wait_for_function("document.getElementById('edited').dataset.edit === 'pc0=+2.5'")
        assert page.eval_on_selector("#edited", "c => c.toDataURL()") != plain
        page.click("figure[data-seed='45']")  # the edit follows the chosen image
        page.wait_for_function("document.getElementById('edited').dataset.subject === 'seed 45'")
        assert page.get_attribute("#edited", "data-edit") == "pc0=+2.5"
        page.click("#reset")
        page.wait_for_function("document.getElementById('edited').dataset.edit === ''")
        page.click("figure[data-seed='46']")
        page.wait_for_function("document.getElementById('interpolation').naturalWidth > 0")
        assert page.is_hidden("#download-video")  # no video extra: no video button
        browser.close()
        assert errors == []


DROP = """([b64, name]) => {  // what a drag from the desktop hands the page
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const files = new DataTransfer();
  files.items.add(new File([bytes], name, { type: "image/png" }));
  document.getElementById("drop").dispatchEvent(
    new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true }));
}"""


def test_drop_an_image_to_project_it_then_edit_it_and_interpolate_between_projections(
        dirs_server, small_ckpt, tmp_path):
    made = tmp_path / "made.png"  # small: sent as it is
    Image.fromarray(gan_serve.load(small_ckpt).generate([7])[0]).save(made)
    photo = tmp_path / "photo.png"  # over the server's 64 KiB body as base64: fitted by the page
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 300, 3), np.uint8)).save(photo)
    assert photo.stat().st_size > 64 * 1024
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, dirs_server)
        page.goto(dirs_server.url + "/")
        page.wait_for_function("document.getElementById('edited').dataset.subject === 'seed 42'")
        page.fill("#project-steps", "5")
        page.evaluate(DROP, [base64.b64encode(made.read_bytes()).decode(), "made.png"])
        page.wait_for_function("document.getElementById('edited').dataset.subject === "
                               "'projection 1 (made.png)'", timeout=120_000)
        assert page.eval_on_selector("#reconstruction", "img => img.naturalWidth") == 64
        assert page.eval_on_selector("#target", "img => img.naturalWidth") == 64
        assert page.text_content("#psnr").endswith(" dB") and "PSNR" in page.text_content("#status")
        page.locator("#sliders input").nth(1).evaluate(
            "i => { i.value = 1.5; i.dispatchEvent(new Event('input')); }")  # pc1 moves the projection
        page.wait_for_function("document.getElementById('edited').dataset.edit === 'pc1=+1.5'")
        assert page.get_attribute("#edited", "data-subject") == "projection 1 (made.png)"

        page.set_input_files("#file", str(photo))  # picked instead of dropped
        page.wait_for_selector("figure[data-name='p2']", timeout=120_000)
        assert "fitted to the model's size here" in page.text_content("#status")
        page.click("figure[data-seed='42']")
        page.click("figure[data-name='p1']")  # a seed and a projection: a path through latents
        page.wait_for_function("document.getElementById('interpolation').dataset.seeds === '42,p1'")
        assert page.text_content("#interp-seeds") == "seed 42 ↔ projection 1"
        page.click("figure[data-name='p1']")
        page.click("figure[data-name='p2']")
        page.wait_for_function("document.getElementById('interpolation').dataset.seeds === 'p1,p2'")
        assert page.text_content("#interp-seeds") == "projection 1 ↔ projection 2"
        with page.expect_download() as video:
            page.click("#download-video")
        assert video.value.suggested_filename == "interpolation-p1-p2.mp4"
        browser.close()
        assert errors == []


def test_docs_render_the_api_with_no_network_but_our_server(serve_process):
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
