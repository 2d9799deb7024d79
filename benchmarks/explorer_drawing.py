"""How fast the explorer follows a slider: drawn in the page (the version's ONNX generator on ONNX Runtime Web, in a
worker) against drawn by the server (a PNG once the slider rests), in headless Chromium against a service it starts.

    python benchmarks/explorer_drawing.py --store models --model dcgan
    python benchmarks/explorer_drawing.py --store models --model dcgan --pixels dcgan,dcgan64 --states 20

For each way of drawing: a scripted drag of one slider (the strongest semantic direction, else a coordinate)
through --positions positions, one per animation frame: the frames drawn per second, whether every frame's latent
differs from the one before, and the requests to the service during the drag; then --changes single slider changes,
each waited for: the time from the change to its picture on the canvas (p50, p95). Then, for each model of
--pixels, --states random states drawn in the page against the service's PNG of the same latent: the largest
difference in grey levels (the bound is 2). Prints one Markdown table; the machine and browser are named in it.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import start_service, stop  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

# The page's own record of what it drew (window.latentlabFrames: latent, changedAt, drawnAt, by) is what these
# read: times are the page's clock, not the test driver's.
DRAG = """async ({selector, positions}) => {
  const range = document.querySelector(selector);
  const [lo, hi] = [Number(range.min), Number(range.max)];
  const start = latentlabFrames.length, began = performance.now();
  let last = began;
  for (let i = 0; i < positions; i++) {
    range.value = lo + (hi - lo) * (0.1 + 0.8 * i / (positions - 1));
    last = performance.now();
    range.dispatchEvent(new Event("input"));
    await new Promise(requestAnimationFrame);
  }
  while (!latentlabFrames.slice(start).some((f) => f.changedAt >= last)) await new Promise((r) => setTimeout(r, 2));
  const frames = latentlabFrames.slice(start);
  return { frames: frames.length, seconds: (frames.at(-1).drawnAt - began) / 1000,
           repeated: frames.filter((f, i) => i > 0 && f.latent === frames[i - 1].latent).length,
           by: [...new Set(frames.map((f) => f.by))], final: frames.at(-1).latent };
}"""

CHANGES = """async ({selector, count}) => {
  const range = document.querySelector(selector);
  const [lo, hi] = [Number(range.min), Number(range.max)];
  const delays = [];
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, 150));  // everything before has settled
    const start = latentlabFrames.length;
    range.value = lo + (hi - lo) * (i % 2 ? 0.3 : 0.7) + i * 1e-3;
    const changed = performance.now();
    range.dispatchEvent(new Event("input"));
    let frame;
    while (!(frame = latentlabFrames.slice(start).find((f) => f.changedAt >= changed))) {
      await new Promise((r) => setTimeout(r, 1));
    }
    delays.push(frame.drawnAt - changed);
  }
  return delays;
}"""

CANVAS = """(selector) => { const c = document.querySelector(selector);
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height);
  return { width: c.width, height: c.height, pixels: Array.from(data.data) }; }"""


def every_model_loaded(url: str, timeout: float = 300) -> None:
    """Ready means one model is served; wait for all of them (a model loading meanwhile takes the CPU from the
    page, and a picture asked of it waits)."""
    deadline = time.monotonic() + timeout
    while not all(m["loaded"] for m in httpx.get(f"{url}/models", timeout=30).json()["models"]):
        if time.monotonic() > deadline:
            raise SystemExit(f"the store's models did not all load in {timeout:.0f} s")
        time.sleep(0.5)


def open_explorer(browser, url: str, model: str, draw: str = "page"):
    """A page of the explorer on `model`, settled, drawing where asked; the list its requests are recorded in."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.goto(f"{url}/explore" + ("?draw=server" if draw == "server" else ""))
    page.wait_for_selector("body[data-ready=true]", timeout=120_000)
    if page.input_value("#model") != model:
        page.select_option("#model", model)
    page.wait_for_function(f"latentlabFrames.at(-1)?.model === '{model}' && latentlabFrames.at(-1).by === '{draw}'",
                           timeout=120_000)
    return page, requests


def slider_of(page) -> str:
    """The strongest semantic direction's slider, or one coordinate's when the version has no directions."""
    if page.query_selector("#dir-0"):
        return "#dir-0"
    page.fill("#coordinate", "0")
    page.click("#add-coordinate button")
    page.wait_for_selector("#z-0")
    return "#z-0"


def drag(page, requests: list[str], positions: int) -> dict:
    """The drag's frames, frames per second, and the image requests sent while it ran."""
    selector = slider_of(page)
    page.wait_for_timeout(300)
    before = len(requests)
    result = page.evaluate(DRAG, {"selector": selector, "positions": positions})
    result["requests"] = [r for r in requests[before:] if "/static/" not in r]
    result["fps"] = result["frames"] / result["seconds"]
    return result


def change_delays(page, count: int) -> list[float]:
    return page.evaluate(CHANGES, {"selector": slider_of(page), "count": count})


def canvas_image(page, selector: str) -> np.ndarray:
    """The canvas's pixels, (H, W, 3) uint8."""
    data = page.evaluate(CANVAS, selector)
    return np.array(data["pixels"], np.uint8).reshape(data["height"], data["width"], 4)[..., :3]


def server_image(url: str, model: str, latent: list[float], version: int | str = "latest") -> np.ndarray:
    """The service's picture of `latent`, (H, W, 3) uint8."""
    response = httpx.post(f"{url}/generate", json={"model": model, "version": version, "latent": latent,
                                                   "padding": 0, "scale": 1}, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"POST /generate answered {response.status_code}: {response.text}")
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def random_state(page, rng: random.Random) -> list[float]:
    """Move to a random latent (seed, image, two semantic directions or a coordinate), wait for it to be drawn;
    the latent the page drew."""
    start = page.evaluate("latentlabFrames.length")
    page.fill("#seed", str(rng.randrange(10_000)))
    page.press("#seed", "Enter")
    page.wait_for_function(f"latentlabFrames.length > {start}", timeout=60_000)
    selector = slider_of(page)
    start = page.evaluate("latentlabFrames.length")
    value = rng.uniform(-3, 3)
    page.fill(f"{selector}-value", f"{value:.3f}")
    page.press(f"{selector}-value", "Enter")
    page.wait_for_function(f"latentlabFrames.length > {start} && "
                           "document.querySelector('#current').dataset.state === 'ready'", timeout=60_000)
    page.wait_for_timeout(200)  # past any frame in flight
    return [float(x) for x in page.evaluate("latentlabFrames.at(-1).latent").split(",")]


def largest_difference(browser, url: str, model: str, states: int, seed: int = 0) -> int:
    page, _ = open_explorer(browser, url, model)
    rng = random.Random(seed)
    worst = 0
    for _ in range(states):
        latent = random_state(page, rng)
        here, served = canvas_image(page, "#current").astype(int), server_image(url, model, latent).astype(int)
        worst = max(worst, int(np.abs(here - served).max()))
    page.close()
    return worst


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, required=True, help="a model store")
    p.add_argument("--model", default="dcgan", help="the model the drag and the changes use")
    p.add_argument("--pixels", default=None, help="models whose page pixels are checked against the service's "
                                                  "(comma-separated; default: --model)")
    p.add_argument("--positions", type=int, default=60, help="slider positions in the drag")
    p.add_argument("--changes", type=int, default=20, help="single changes timed")
    p.add_argument("--states", type=int, default=20, help="random states whose pixels are compared, per model")
    p.add_argument("--rounds", type=int, default=3, help="drags per way of drawing (the median is printed)")
    p.add_argument("--port", type=int, default=8040)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{args.port}"
    proc = start_service(str(args.store.resolve()), args.port, "cpu", RUNTIME=os.environ.get("RUNTIME", "auto"))
    every_model_loaded(url)
    rows, pixel_rows = {}, []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            version = browser.version
            for draw in ("page", "server"):
                page, requests = open_explorer(browser, url, args.model, draw)
                drags = [drag(page, requests, args.positions) for _ in range(args.rounds)]
                delays = change_delays(page, args.changes)
                rows[draw] = {"fps": statistics.median(d["fps"] for d in drags),
                              "frames": statistics.median(d["frames"] for d in drags),
                              "repeated": max(d["repeated"] for d in drags),
                              "requests": statistics.median(len(d["requests"]) for d in drags),
                              "p50": float(np.percentile(delays, 50)), "p95": float(np.percentile(delays, 95)),
                              "threads": page.text_content("#drawn-by")}
                print(f"{draw}: {json.dumps(rows[draw])}", file=sys.stderr, flush=True)
                page.close()
            for model in (args.pixels or args.model).split(","):
                pixel_rows.append((model, largest_difference(browser, url, model, args.states)))
                print(f"pixels {model}: {pixel_rows[-1][1]}", file=sys.stderr, flush=True)
            browser.close()
    finally:
        stop(proc)

    print(f"{args.model}, {args.positions}-position drag (median of {args.rounds}), {args.changes} single changes; "
          f"headless Chromium {version}, {os.cpu_count()} CPUs ({cpu_name()})\n")
    print("| drawn | frames per second | frames drawn | repeated latents | image requests during the drag | "
          "change to canvas p50 | p95 |")
    print("|---|---|---|---|---|---|---|")
    for draw, r in rows.items():
        print(f"| {'in the page' if draw == 'page' else 'by the server'} | {r['fps']:.1f} | {r['frames']:.0f} | "
              f"{r['repeated']} | {r['requests']:.0f} | {r['p50']:.1f} ms | {r['p95']:.1f} ms |")
    print(f"\n{rows['page']['threads']}\n")
    print("| model | random states | largest difference, page vs service (grey levels) |")
    print("|---|---|---|")
    for model, worst in pixel_rows:
        print(f"| {model} | {args.states} | {worst} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
