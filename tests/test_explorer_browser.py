"""The latent explorer in headless Chromium, with every request off this machine blocked: pick a model, drag a
slider and see the picture change, set a second latent and get the path, reopen the shared link and get
the same pixels. With SCREENSHOT_DIR set, its screenshots are kept there; the docs' come from here, with
EXPLORER_STORE and EXPLORER_MODEL naming a store with better-trained models than the test's."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops

from tests.browser_helpers import CHROMIUM, OFFLINE_ARGS, offline_page
from tests.service_helpers import service

KEY = "explorer-key-5be1"


def pixels(page, selector: str) -> Image.Image:
    """The element's picture as the browser decoded or drew it (not a screenshot: no scaling, no antialiasing)."""
    page.wait_for_selector(f"{selector}[data-state=ready]", timeout=30_000)
    data = page.evaluate("""(sel) => { const img = document.querySelector(sel);
        const [width, height] = img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : [img.width, img.height];
        const c = Object.assign(document.createElement('canvas'), {width, height});
        c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL('image/png'); }""", selector)
    import base64
    return Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("L")


def settled(page, selector: str) -> Image.Image:
    page.wait_for_timeout(300)  # past the debounce, so the request in flight is the last one
    return pixels(page, selector)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def keep(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("SCREENSHOT_DIR"):
        shutil.copy(tmp_path / name, Path(os.environ["SCREENSHOT_DIR"]) / name)


@pytest.mark.slow
def test_the_explorer_works_offline_and_its_links_reproduce_the_picture(semantic_store, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    blocked: list[str] = []
    with service(os.environ.get("EXPLORER_STORE", semantic_store), API_KEYS=KEY) as url:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
            page = offline_page(browser, blocked, viewport={"width": 1400, "height": 1000})
            failed: list[str] = []  # every answer of 400 and above the page got (the favicon's 404 was one)
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"{url}/explore")
            page.fill("#key", KEY)  # the service wants a key: the page asks once and sends it from then on
            page.click("#key-form button")
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            page.select_option("#model", os.environ.get("EXPLORER_MODEL", "gan"))
            page.wait_for_selector("#dir-0", timeout=30_000)
            first = settled(page, "#current")
            # drawn in the page: its generator fetched with the key the page was given
            assert page.evaluate("latentlabFrames.at(-1).by") == "page"
            assert not page.is_visible("#strip")  # no broken-image placeholder before a second latent is set
            # each semantic direction says what it does: the classes it moves towards on either side
            meaning = page.text_content("#dir-0-meaning")
            assert meaning.startswith("+ towards ") and "− towards " in meaning, meaning

            # pick image 3 of the seed's grid by clicking it, then drag the strongest direction's slider
            grid = page.locator("#seed-grid").bounding_box()
            cell = grid["width"] / 8
            page.mouse.click(grid["x"] + 3.5 * cell, grid["y"] + 0.5 * cell)
            page.wait_for_function("document.querySelector('#index').value === '3'")
            picked = settled(page, "#current")
            assert not same(first, picked)
            slider = page.locator("#dir-0").bounding_box()
            page.mouse.move(slider["x"] + slider["width"] / 2, slider["y"] + slider["height"] / 2)
            page.mouse.down()
            page.mouse.move(slider["x"] + slider["width"] * 0.95, slider["y"] + slider["height"] / 2, steps=8)
            page.mouse.up()
            dragged = settled(page, "#current")
            assert float(page.input_value("#dir-0-value")) > 5 and not same(picked, dragged)

            # a typed coordinate, a second latent, and the path between them
            page.fill("#coordinate", "25")
            page.click("#add-coordinate button")
            page.fill("#z-25-value", "-2.5")
            page.press("#z-25-value", "Enter")
            page.click("#set-b")
            page.fill("#index", "6")
            page.press("#index", "Enter")
            page.wait_for_function("document.querySelector('#index').value === '6'")
            strip = settled(page, "#strip")
            assert strip.size == (8 * (28 + 2) + 2, 28 + 2 * 2)  # 8 steps, 2 pixels apart
            page.select_option("#compare", "1")
            compared = settled(page, "#compared")
            assert compared.size == dragged.size
            keep(page, "explorer.png", tmp_path)

            with page.expect_download() as gif:
                page.click("#download-gif")
            animation = Image.open(gif.value.path())
            assert animation.format == "GIF" and animation.n_frames == 8

            # the seed grid of one class (the model's second most common), a slider towards the most common one,
            # then truncation
            model = os.environ.get("EXPLORER_MODEL", "gan")
            known = httpx.get(f"{url}/models/{model}/classes", headers={"Authorization": f"Bearer {KEY}"}).json()
            other, common = sorted(known["classes"], key=lambda c: -c["share"])[:2]
            any_grid = settled(page, "#seed-grid")
            page.select_option("#class", common["name"])
            class_grid = settled(page, "#seed-grid")
            assert not same(any_grid, class_grid)
            page.fill("#index", "2")
            page.press("#index", "Enter")
            picked = settled(page, "#current")
            page.fill(f"#cls-{other['index']}-value", "4")
            page.press(f"#cls-{other['index']}-value", "Enter")
            assert not same(picked, settled(page, "#current"))  # moved towards the other class
            page.fill("#psi-value", "0.6")
            page.press("#psi-value", "Enter")
            assert not same(class_grid, settled(page, "#seed-grid"))  # pulled towards the class's mean

            # your own picture: found in latent space, its latent the current one, moved by a slider
            picture = tmp_path / "picture.png"
            picture.write_bytes(httpx.post(f"{url}/generate", json={"model": model, "seed": 12, "count": 1, "padding": 0},
                                           headers={"Authorization": f"Bearer {KEY}"}).content)
            page.fill("#project-steps", "40")
            page.set_input_files("#project-file", str(picture))
            page.wait_for_function("document.querySelector('#status').textContent.startsWith('found')", timeout=60_000)
            assert page.is_visible("#uploaded")
            projected = settled(page, "#current")
            page.fill(f"#cls-{common['index']}-value", "3")
            page.press(f"#cls-{common['index']}-value", "Enter")
            assert not same(projected, settled(page, "#current"))
            compared = settled(page, "#compared")

            # the shared link, opened in a fresh page, shows exactly the same pictures
            link, current, strip = page.url, settled(page, "#current"), settled(page, "#strip")
            again = offline_page(browser, blocked, viewport={"width": 1400, "height": 1000})
            again.goto(link)
            again.fill("#key", KEY)
            again.click("#key-form button")
            again.wait_for_selector("body[data-ready=true]", timeout=60_000)
            assert same(settled(again, "#current"), current)
            assert same(settled(again, "#strip"), strip)
            assert same(settled(again, "#compared"), compared)
            assert again.input_value("#z-25-value") == page.input_value("#z-25-value")  # the new latent's value
            assert again.input_value("#class") == common["name"] and again.input_value("#psi-value") == "0.6"
            browser.close()
        assert [f for f in failed if not f.startswith("401 ")] == []  # 401: asked for the key, as it should
    assert blocked == [], f"the explorer tried to reach the network: {blocked}"
