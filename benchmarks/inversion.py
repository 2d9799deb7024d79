"""How well a version finds pictures it never saw: 500 FashionMNIST *test* images projected into its latent
space (`shared.imaging.projection`, as POST /project and `python -m trainer.project` do it).

Rows: the encoder's guess alone; the guess refined by 50 and by 200 steps; 200 steps from the mean latent (no
encoder); and the baseline any method must beat, the nearest (in pixels) of 1,024 random samples. For each:
the reconstructions' mean squared error (pixels in [0, 1]) and PSNR, the share the classifier puts in the
original's class, the share that beats the nearest random sample, and seconds per image on this machine
(pictures projected 100 at a time: each loss is its own, so each gets the answer it would get alone).

With `--stall`: the service's p99 for one-image requests at 1 connection (wrk, 10 s), alone and while 4
clients project pictures in a loop (200 steps each), alternating, medians of 3 rounds: what a slider's user
feels while others upload.

    python benchmarks/inversion.py --store ./models --model dcgan --picture dcgan-inversion.png --stall
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serve_compare import wrk  # noqa: E402  (this folder is on sys.path when run as a script)
from servers import start_service, stop  # noqa: E402

from shared.imaging import torchscript  # noqa: E402
from shared.imaging.grids import render_grid  # noqa: E402
from shared.imaging.latents import seeded_latents  # noqa: E402
from shared.imaging.pixels import to_model_range  # noqa: E402
from shared.imaging.projection import Projection, mean_latent  # noqa: E402
from shared.store import CLASSIFIER, ENCODER, Store  # noqa: E402
from trainer.evaluation.fashion_classifier import embed, load_classifier  # noqa: E402
from trainer.training.data import load_idx_split, locate_idx_dir  # noqa: E402

IMAGES, CHUNK, RANDOM = 500, 100, 1024


def test_images(size: int, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_idx_split(locate_idx_dir("fashion-mnist", data_dir), "test")
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:IMAGES]
    images = to_model_range(x[pick])
    if size != images.shape[-1]:  # the DCGAN's 32x32, as the trainer reads the data
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images, y[pick]


def reconstruct(generator, encoder, features, targets, steps: int, from_encoder: bool) -> tuple[torch.Tensor, float]:
    """(reconstructions, seconds per image)."""
    started, out = time.perf_counter(), []
    for chunk in targets.split(CHUNK):
        with torch.no_grad():
            start = encoder(chunk) if from_encoder else mean_latent(len(chunk), 100)
        search = Projection(generator, chunk, start.clone(), steps, seed=0, features=features)
        with torch.no_grad():
            out.append(generator(search.run()))
    return torch.cat(out), (time.perf_counter() - started) / len(targets)


def nearest_random(generator, targets) -> torch.Tensor:
    with torch.no_grad():
        samples = generator(seeded_latents(0, RANDOM, 100))
    flat = samples.flatten(1)
    best = [flat[torch.cdist(t.flatten(1), flat).argmin(1)] for t in targets.split(CHUNK)]
    return torch.cat(best).view_as(targets)


def stall(store: str, model: str, port: int = 8797, rounds: int = 3) -> tuple[float, float]:
    """p99 (ms) of one-image requests at 1 connection: alone, and while 4 clients project in a loop; the two
    alternate for `rounds` rounds of 10 s each, and the medians are returned (a shared machine is noisy)."""
    proc = start_service(store, port, "cpu")
    try:
        wrk(port, model, 1, 1, 3)
        picture = httpx.post(f"http://127.0.0.1:{port}/generate", json={"model": model, "seed": 3, "count": 1,
                                                                       "padding": 0}, timeout=60).content
        alone, busy = [], []
        for _ in range(rounds):
            alone.append(wrk(port, model, 1, 1, 10)["p99_ms"])
            done = threading.Event()

            def projector():
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
                    while not done.is_set():
                        http.post("/project", data={"model": model, "steps": "200"},
                                  files={"file": ("p.png", picture)})

            clients = [threading.Thread(target=projector) for _ in range(4)]
            for c in clients:
                c.start()
            time.sleep(2)
            busy.append(wrk(port, model, 1, 1, 10)["p99_ms"])
            done.set()
            for c in clients:
                c.join()
        print(f"p99 alone {alone}, while projecting {busy} (ms, round by round)", file=sys.stderr)
        return statistics.median(alone), statistics.median(busy)
    finally:
        stop(proc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--model", default="dcgan")
    p.add_argument("--version", default="latest")
    p.add_argument("--picture", type=Path, default=None, help="a PNG: 8 originals above their reconstructions")
    p.add_argument("--stall", action="store_true", help="also a lone client's p99 while 4 clients project")
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR"))
    args = p.parse_args()
    torch.manual_seed(0)
    version = Store(args.store).get(args.model, args.version)
    generator = torchscript.load(version.generator_path)
    encoder = torchscript.load(version.path / ENCODER) if ENCODER in version.manifest.files else None
    classifier = torchscript.load(version.path / CLASSIFIER) if CLASSIFIER in version.manifest.files else None
    features = classifier.features if classifier is not None else None
    targets, labels = test_images(version.image_shape[1], args.data_dir)
    judge = load_classifier()

    def row(name: str, rebuilt: torch.Tensor, seconds: float | None, baseline: torch.Tensor) -> str:
        mse = ((rebuilt - targets) / 2).square().flatten(1).mean(1)  # pixels in [0, 1]
        base = ((baseline - targets) / 2).square().flatten(1).mean(1)
        _, probs = embed(judge, [rebuilt])
        kept = (probs.argmax(1) == labels).float().mean()
        psnr = (10 * torch.log10(1 / mse.clamp(min=1e-12))).mean()
        beats = "" if rebuilt is baseline else f"{(mse < base).float().mean():.0%}"
        return (f"| {name} | {mse.mean():.4f} | {psnr:.2f} dB | {kept:.0%} | {beats} | "
                f"{'' if seconds is None else f'{seconds:.3f}'} |")

    started = time.perf_counter()
    baseline = nearest_random(generator, targets)
    results = {"nearest of 1,024 random samples": (baseline, None)}
    if encoder is not None:
        for steps in (0, 50, 200):
            results[f"encoder + {steps} steps" if steps else "encoder only"] = reconstruct(
                generator, encoder, features, targets, steps, True)
    results["mean latent + 200 steps"] = reconstruct(generator, encoder, features, targets, 200, False)
    print(f"{args.model} v{version.version}: {IMAGES} FashionMNIST test images; {os.cpu_count()} CPUs; "
          f"{time.perf_counter() - started:.0f}s\n")
    print("| method | MSE (pixels in [0, 1]) | PSNR | class kept | beats the nearest random sample | seconds/image |")
    print("|---|---|---|---|---|---|")
    for name, (rebuilt, seconds) in results.items():
        print(row(name, rebuilt, seconds, baseline), flush=True)
    if args.picture:
        best = results.get("encoder + 200 steps", results["mean latent + 200 steps"])[0]
        render_grid(torch.cat([targets[:8], best[:8]]), nrow=8, padding=2, scale=3).save(args.picture)
        print(f"\npicture: {args.picture}", file=sys.stderr)
    if args.stall:
        alone, busy = stall(args.store, args.model)
        print(f"\none-image requests at 1 connection: p99 {alone:.1f} ms alone, {busy:.1f} ms while 4 clients project "
              "(200 steps each, in a loop)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
