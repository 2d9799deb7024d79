"""How well a version's latent space knows its classes: `class` requests, class sweeps and truncation, measured
through the service's own routes (in process, on a copy of nothing: the store is only read).

For each class: 256 images asked for with `"class"` (seed 1), and how many of them are of the class. Judged
twice: by the project's classifier (the one the service checks candidates with, so its verdict on requested
images is close to 100% by construction), and by an independent classifier (same architecture, another seed,
trained here: `--judge` keeps it for later runs). Beside it, the same for the latent space alone (the first
256 candidates the latent softmax puts in the class, no image checked), and the images' diversity (mean
pairwise distance in the classifier's feature space) against 256 real test images of the class. Class
sweeps: 64 latents of seed 0 moved towards each class by the largest value, and how often the image then is
of that class. Truncation: FID, precision and recall of 10,000 samples at psi 1.0, 0.8 and 0.6.

A class-conditional version is given the class, so there are no candidates (no "latent space alone"); its
samples draw their classes uniformly, truncation pulls z alone, and the one-image latency of a class request is
measured against an unconditional request to the same version (medians of 200 each, alternated).

    python benchmarks/class_semantics.py --store ./models --model dcgan --judge /tmp/judge.pt --picture dcgan-classes.png
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from latentlab.results import ImageResult  # noqa: E402
from service.api.app import create_app  # noqa: E402
from service.api.settings import Settings  # noqa: E402
from service.operations.found_classes import class_candidates  # noqa: E402
from shared.imaging import torchscript  # noqa: E402
from shared.imaging.grids import grid_array  # noqa: E402
from shared.imaging.latents import LatentLayout  # noqa: E402
from shared.imaging.pixels import to_model_range  # noqa: E402
from shared.store import CLASSES, ClassSemantics, Store  # noqa: E402
from trainer.evaluation.evaluator import Evaluator  # noqa: E402
from trainer.evaluation.fashion_classifier import (  # noqa: E402
    FashionClassifier,
    batches,
    embed,
    load_classifier,
    train_classifier,
)
from trainer.training.data import load_idx_split, locate_idx_dir  # noqa: E402

COUNT, SEED, SWEEP_BASE = 256, 1, 64


def cells(response) -> np.ndarray:
    """The images of a grid answer, (n, H, W) uint8: the client's exact split (the X-Grid header)."""
    assert response.status_code == 200, response.text
    return ImageResult.from_response(response.content, dict(response.headers)).images


def judged(net: FashionClassifier, images: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """(classes, features) of uint8 (n, H, W) images."""
    x = to_model_range(torch.from_numpy(images).unsqueeze(1))
    feats, probs = embed(net, [x])
    return probs.argmax(1).numpy(), feats


def judge_net(path: Path | None, data_dir: str | None) -> FashionClassifier:
    if path and path.exists():
        net = FashionClassifier()
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    print("training the independent judge (seed 1, about 2-5 minutes on a CPU)", file=sys.stderr, flush=True)
    net, accuracy = train_classifier(data_dir, seed=1, log=lambda m: print(m, file=sys.stderr))
    print(f"judge: test accuracy {accuracy:.4f}", file=sys.stderr)
    if path:
        torch.save(net.state_dict(), path)
    return net


class Truncated(torch.nn.Module):
    """The generator with its z pulled towards 0 by psi (a conditional one's class weights left as they are)."""

    def __init__(self, generator: torch.nn.Module, psi: float, layout: LatentLayout) -> None:
        super().__init__()
        self.generator, self.psi, self.layout = generator, psi, layout

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(self.layout.truncated(z, self.psi))


def one_image_latency(client: TestClient, base: dict, requests: int = 200) -> tuple[float, float]:
    """Median milliseconds of a one-image class request and of a one-image seed request, alternated."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(requests * 2):
        with_class = i % 2 == 0
        body = {**base, "seed": i, "count": 1, **({"class": i // 2 % 10} if with_class else {})}
        started = time.perf_counter()
        assert client.post("/generate", json=body).status_code == 200
        times[with_class].append((time.perf_counter() - started) * 1000)
    return float(np.median(times[True])), float(np.median(times[False]))


def measure_class(client, base: dict, cls, semantics: ClassSemantics, conditional: int, shipped, judge,
                  real_feats: torch.Tensor, test_y: torch.Tensor, args: argparse.Namespace) -> dict:
    """One class: a class request of COUNT images judged by both classifiers, the latent space's candidates
    alone, the images' diversity against the real ones', and a class sweep."""
    r = client.post("/generate", json={**base, "class": cls.index, "seed": SEED, "count": COUNT, "nrow": 16})
    if r.status_code != 200:
        return {"class": cls, "missing": r.json()["detail"][0]["msg"]}
    images = cells(r)
    said, feats = judged(shipped, images)
    by_judge, _ = judged(judge, images)
    if not conditional:
        candidates = torch.cat(list(class_candidates(semantics, cls, SEED, None, 200 * COUNT)))[:COUNT]
        latent_only = cells(client.post("/generate", json={**base, "latents": candidates.tolist(), "nrow": 16}))
    else:  # the label is the class: no latent space to find it in
        latent_only = images
    real = real_feats[(test_y == cls.index).nonzero().squeeze(1)[:COUNT]]
    sweep = client.post("/sweep", json={**base, "classes": [cls.index], "values": [args.sweep_value],
                                        "mode": "add", "seed": 0, "count": SWEEP_BASE, "labels": False})
    swept = cells(sweep)
    return {
        "class": cls, "verified": r.headers["x-class-verified"],
        "shipped": float((said == cls.index).mean()), "judge": float((by_judge == cls.index).mean()),
        "latent_shipped": float((judged(shipped, latent_only)[0] == cls.index).mean()),
        "latent_judge": float((judged(judge, latent_only)[0] == cls.index).mean()),
        "diversity": float(torch.pdist(feats).mean()), "real_diversity": float(torch.pdist(real).mean()),
        "sweep_shipped": float((judged(shipped, swept)[0] == cls.index).mean()),
        "sweep_judge": float((judged(judge, swept)[0] == cls.index).mean()),
        "images": images,
    }


def print_class_table(rows: list[dict], conditional: int, sweep_value: float) -> None:
    print("| class | share of samples | boundary accuracy | class request: of the class | latent space alone | "
          "diversity (real) | sweep +%g: of the class |" % sweep_value)
    print("|---|---|---|---|---|---|---|")
    found = [r for r in rows if "missing" not in r]
    latent_cell = lambda r: "-" if conditional else f"{r['latent_shipped']:.0%} / {r['latent_judge']:.0%}"  # noqa: E731
    for r in rows:
        c = r["class"]
        accuracy = "-" if c.accuracy is None else f"{c.accuracy:.2f}"
        if "missing" in r:
            print(f"| {c.name} | {c.share:.1%} | {accuracy} | {r['missing']} | | | |")
            continue
        print(f"| {c.name} | {c.share:.1%} | {accuracy} | {r['shipped']:.0%} / {r['judge']:.0%} "
              f"({r['verified']} verified) | {latent_cell(r)} | "
              f"{r['diversity']:.1f} ({r['real_diversity']:.1f}, {r['diversity'] / r['real_diversity']:.2f}x) | "
              f"{r['sweep_shipped']:.0%} / {r['sweep_judge']:.0%} |")
    if found:
        mean = lambda key: np.mean([r[key] for r in found])  # noqa: E731
        worst = lambda key: min(r[key] for r in found)  # noqa: E731
        print(f"| **mean** (worst) | | | {mean('shipped'):.0%} / {mean('judge'):.0%} ({worst('shipped'):.0%} / "
              f"{worst('judge'):.0%}) | "
              + ("-" if conditional else f"{mean('latent_shipped'):.0%} / {mean('latent_judge'):.0%} "
                                         f"({worst('latent_shipped'):.0%} / {worst('latent_judge'):.0%})") + " | "
              f"{min(r['diversity'] / r['real_diversity'] for r in found):.2f}x at worst | "
              f"{mean('sweep_shipped'):.0%} / {mean('sweep_judge'):.0%} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--model", default="dcgan")
    p.add_argument("--version", default="latest")
    p.add_argument("--judge", type=Path, default=None, help="where the independent classifier is kept (trained if absent)")
    p.add_argument("--sweep-value", type=float, default=5.0, help="how far the class sweep moves (mode add)")
    p.add_argument("--picture", type=Path, default=None, help="a PNG with one row of 8 images per class")
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR"))
    args = p.parse_args()

    version = Store(args.store).get(args.model, args.version)
    conditional = version.manifest.input_classes
    semantics = ClassSemantics.model_validate_json((version.path / CLASSES).read_bytes())
    shipped, judge = load_classifier(), judge_net(args.judge, args.data_dir)
    test_x, test_y = load_idx_split(locate_idx_dir("fashion-mnist", args.data_dir), "test")
    real_feats, _ = embed(shipped, (to_model_range(b) for b in batches(test_x)))
    started = time.perf_counter()
    rows, picture_rows = [], []
    settings = Settings(model_dir=args.store, device="cpu", max_images=4096, max_queue_delay_ms=600_000,
                        max_queued_latents=8192)
    with TestClient(create_app(settings)) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.1)
        base = {"model": args.model, "version": version.version}
        for cls in semantics.classes:
            row = measure_class(client, base, cls, semantics, conditional, shipped, judge, real_feats, test_y, args)
            rows.append(row)
            if "missing" not in row:
                picture_rows.append(row.pop("images")[:8])
                print(f"  {cls.name}: {row['shipped']:.0%} / {row['judge']:.0%}", file=sys.stderr, flush=True)
        latency = one_image_latency(client, base) if conditional else None

    print(f"{args.model} v{version.version}: {COUNT} images per class from seed {SEED}; judged by the shipped "
          f"classifier / an independent one (seed 1); {time.perf_counter() - started:.0f}s\n")
    print_class_table(rows, conditional, args.sweep_value)

    print("\n| truncation | FID | precision | recall | class entropy |\n|---|---|---|---|---|")
    evaluator = Evaluator("cpu", args.data_dir)
    generator = torchscript.load(version.generator_path)
    for psi in (1.0, 0.8, 0.6):
        layout = LatentLayout.of(version.manifest)
        m = evaluator.measure(Truncated(generator, psi, layout), layout)
        print(f"| {psi} | {m['fid']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['class_entropy']:.3f} |",
              flush=True)

    if latency:
        print(f"\none image, p50 of 200 requests each (alternated): class request {latency[0]:.2f} ms, seed request "
              f"{latency[1]:.2f} ms ({latency[0] / latency[1]:.2f}x)")
    if args.picture and picture_rows:
        images = torch.from_numpy(np.concatenate(picture_rows)).unsqueeze(1)
        names = [r["class"].name for r in rows if "missing" not in r]
        Image.fromarray(grid_array(images, 8, 2, 3, names)[:, :, 0]).save(args.picture)
        print(f"\npicture: {args.picture}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
