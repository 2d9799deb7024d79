"""The explorer drawing in the page: the version's ONNX generator on ONNX Runtime Web in headless Chromium. A drag
draws frame after frame without asking the service for an image; the page's pixels are the service's within 2 grey
levels (grey, colour, conditional; the picture and the path to B); a version without an ONNX form is drawn by the
server; the runtime's files are served pinned and cached for good, with the explorer's isolation headers only where
they belong. (How fast: benchmarks/explorer_drawing.py.)"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.api.pages import ISOLATED, RUNTIME_FILES, pinned_runtime
from tests.browser_helpers import CHROMIUM, OFFLINE_ARGS, offline_page
from tests.conftest import train_and_publish
from tests.service_helpers import copy_model, copy_store, publish_trained, service, strip_forms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from explorer_drawing import canvas_image, drag, every_model_loaded, random_state, server_image  # noqa: E402

BOUND = 2  # grey levels: what the service allows between its own precisions


@pytest.fixture(scope="module")
def drawing_store(tmp_path_factory, trained_store, conditional_store, fashion_dir):
    """dcgan (grey, with an ONNX form), gan v1 (without one: an older version) and v2 (with one), cdcgan
    (class-conditional), rgb (a colour DCGAN) and r3gan (its resampling and grouped convolutions), each briefly
    trained."""
    from trainer.training.config import TrainConfig
    from trainer.training.settings import recipe_settings

    root = copy_store(trained_store, tmp_path_factory.mktemp("drawing") / "store")
    strip_forms(root, "gan")
    publish_trained(root, fashion_dir, "gan", seed=1, class_samples=0)
    copy_model(conditional_store / "dcgan", root, "cdcgan")
    train_and_publish(root, TrainConfig(arch="dcgan", name="rgb", channels=3, epochs=1, limit=128, batch_size=64,
                                        data_dir=str(fashion_dir), device="cpu", class_samples=0))
    train_and_publish(root, TrainConfig(arch="r3gan", epochs=1, limit=128, features=8, groups=4, device="cpu",
                                        data_dir=str(fashion_dir), class_samples=0,
                                        **recipe_settings("stable", "r3gan")))
    return root


@pytest.fixture(scope="module")
def served(drawing_store):
    with service(drawing_store) as url:
        every_model_loaded(url)
        yield url


@pytest.fixture(scope="module")
def browser(served):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
        yield browser
        browser.close()


class Explorer:
    """A page of the explorer with everything it did recorded: requests, errors, requests off this host."""

    def __init__(self, browser, url: str, model: str, query: str = "") -> None:
        self.blocked, self.requests, self.errors = [], [], []
        self.page = offline_page(browser, self.blocked, viewport={"width": 1400, "height": 1000})
        self.page.on("request", lambda r: self.requests.append(f"{r.method} {r.url}"))
        # a failed request is a console error too: it is judged by its response below instead
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     and not m.text.startswith("Failed to load resource") else None)
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400
                     and not (r.status == 404 and "/classes?" in r.url) else None)  # 404: a model without classes
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{url}/explore{query}")
        self.page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        self.page.select_option("#model", model)
        self.page.wait_for_function(f"latentlabFrames.at(-1)?.model === '{model}'", timeout=60_000)

    @property
    def drawn_by(self) -> str:
        return self.page.evaluate("latentlabFrames.at(-1).by")

    def close(self) -> None:
        self.page.close()
        assert self.blocked == [] and self.errors == [], (self.blocked, self.errors)


def test_a_drag_draws_in_the_page_every_frame_without_asking_the_service(browser, served):
    explorer = Explorer(browser, served, "dcgan")
    assert explorer.drawn_by == "page"
    assert explorer.page.text_content("#drawn-by").startswith(f"drawn in this page (ONNX Runtime Web {pinned_runtime()}")
    assert explorer.page.evaluate("crossOriginIsolated")  # hence ONNX Runtime's threads
    result = drag(explorer.page, explorer.requests, positions=30)
    assert result["requests"] == []  # no image, no latent: the page had everything it needed
    assert result["by"] == ["page"] and result["frames"] >= 2 and result["repeated"] == 0
    # the last position is the one on the canvas, and it is the service's picture of that latent
    final = [float(x) for x in result["final"].split(",")]
    assert np.abs(canvas_image(explorer.page, "#current").astype(int)
                  - server_image(served, "dcgan", final).astype(int)).max() <= BOUND
    explorer.close()


@pytest.mark.parametrize("model", ["dcgan", "rgb", "cdcgan", "r3gan"])
def test_the_page_draws_the_services_pixels(browser, served, model):
    import random

    explorer = Explorer(browser, served, model)
    assert explorer.drawn_by == "page"
    rng = random.Random(model)
    for _ in range(3):
        latent = random_state(explorer.page, rng)
        here, there = canvas_image(explorer.page, "#current"), server_image(served, model, latent)
        assert here.shape == there.shape and np.abs(here.astype(int) - there.astype(int)).max() <= BOUND
    explorer.close()


def test_the_page_draws_the_path_to_b_as_the_service_does(browser, served):
    """The interpolation strip, its latents computed in the page (slerp) as the service computes them; a strip
    drawn while the state changes shows the state it was asked for, never a mix (the page records its ends)."""
    model = "rgb"
    explorer = Explorer(browser, served, model)
    explorer.page.click("#set-b")
    explorer.page.fill("#index", "5")  # asked while B's strip may still be drawing
    explorer.page.press("#index", "Enter")
    now = "Promise.all([vectorOf(currentLatent()), vectorOf(state.b)]).then((ends) => ends.map(String))"
    for _ in range(300):  # until the page has drawn the strip of the state it shows now
        start, end = explorer.page.evaluate(now)
        drawn = explorer.page.evaluate("latentlabStrips.at(-1) ?? null")
        if drawn and (drawn["start"], drawn["end"]) == (start, end):
            break
        explorer.page.wait_for_timeout(100)
    assert drawn["by"] == "page" and (drawn["start"], drawn["end"]) == (start, end) and start != end
    vector = lambda text: [float(x) for x in text.split(",")]  # noqa: E731
    served_strip = httpx.post(f"{served}/interpolate", json={"model": model, "start": {"latent": vector(start)},
                                                             "end": {"latent": vector(end)}, "steps": 8,
                                                             "padding": 2})
    there = np.asarray(Image.open(io.BytesIO(served_strip.content)).convert("RGB")).astype(int)
    here = canvas_image(explorer.page, "#strip").astype(int)
    assert here.shape == there.shape and np.abs(here - there).max() <= BOUND
    explorer.close()


def test_a_version_without_an_onnx_form_is_drawn_by_the_server(browser, served):
    explorer = Explorer(browser, served, "gan")
    explorer.page.select_option("#version", "1")
    explorer.page.wait_for_function("latentlabFrames.at(-1).by === 'server'")
    assert "v1 has no ONNX form" in explorer.page.text_content("#drawn-by")
    result = drag(explorer.page, explorer.requests, positions=10)
    assert result["by"] == ["server"] and any("/generate" in r for r in result["requests"])
    final = [float(x) for x in result["final"].split(",")]  # the last position drawn last, by the server
    assert np.array_equal(canvas_image(explorer.page, "#current"), server_image(served, "gan", final, version=1))
    explorer.close()


def test_a_compared_version_the_server_draws_waits_for_the_slider_to_rest(browser, served):
    """The latest gan is drawn in the page, every frame; v1 beside it by the server, once the drag stops."""
    explorer = Explorer(browser, served, "gan")
    explorer.page.select_option("#compare", "1")
    explorer.page.wait_for_selector("#compared[data-state=ready][data-drawn-by=server]")
    result = drag(explorer.page, explorer.requests, positions=30)
    assert result["by"] == ["page"] and result["frames"] >= 2
    assert len([r for r in result["requests"] if "/generate" in r]) <= 1  # not one per frame: once, at the end
    explorer.page.wait_for_timeout(1000)  # past the pause, and its answer
    final = [float(x) for x in result["final"].split(",")]
    assert np.array_equal(canvas_image(explorer.page, "#compared"), server_image(served, "gan", final, version=1))
    explorer.close()


def test_asked_for_the_server_the_page_draws_nothing_itself(browser, served):
    explorer = Explorer(browser, served, "dcgan", "?draw=server")
    assert explorer.drawn_by == "server" and "as asked" in explorer.page.text_content("#drawn-by")
    assert not any("generator.onnx" in r or "/static/runtime/" in r for r in explorer.requests)
    explorer.close()


def test_the_runtime_is_served_pinned_and_cached_for_good_with_isolation_only_on_the_explorer(served):
    described = httpx.get(f"{served}/static/runtime/runtime.json").json()
    assert described["installed"] and described["version"] == pinned_runtime()
    for name, media_type in RUNTIME_FILES.items():
        response = httpx.get(f"{served}{described['base']}{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
        assert "immutable" in response.headers["cache-control"]
        assert response.headers["cross-origin-embedder-policy"] == ISOLATED["Cross-Origin-Embedder-Policy"]
    assert httpx.get(f"{served}{described['base']}ort.all.min.js").status_code == 404  # only the three files
    assert httpx.get(f"{served}/static/runtime/0.0.1/ort.wasm.min.mjs").status_code == 404  # only the pinned one
    for page in ("/explore", "/", "/static/explorer/explorer.js", "/static/explorer/drawing-worker.js"):
        headers = httpx.get(f"{served}{page}").headers
        assert all(headers.get(k) == v for k, v in ISOLATED.items()), page
    docs = httpx.get(f"{served}/docs").headers  # Swagger UI keeps working as it always has
    assert not any(k.lower() in docs for k in ISOLATED)
