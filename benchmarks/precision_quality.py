"""What bf16 serving does to the pixels and to quality, against fp32 on the same latents, per published version.

For each version: the service's own runner (service.engine.runner) in fp32 and in bf16 on N latents (default
10,000): the largest and the mean grey-level difference, how many pixels differ at all, and FID, KID and
precision/recall of the bf16-served images against the fp32-served ones, in the project's classifier's feature
space, beside the real floor (10,000 real training images against the test images: what "the same
distribution" scores there). The bound that tests/test_precision.py enforces is shared.imaging.precision's.

    python benchmarks/precision_quality.py --store ./models --models dcgan gan
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.engine.runner import GeneratorRunner  # noqa: E402
from shared.imaging import torchscript  # noqa: E402
from shared.imaging.latents import seeded_latents  # noqa: E402
from shared.imaging.pixels import to_model_range  # noqa: E402
from shared.imaging.precision import BF16_MAX_GREY_DIFF, BF16_MEAN_GREY_DIFF  # noqa: E402
from shared.store import Store  # noqa: E402
from trainer.evaluation.fashion_classifier import batches, classifier_card, embed, load_classifier  # noqa: E402
from trainer.evaluation.metrics import compare  # noqa: E402


def served(generator: Path, precision: str, latents: torch.Tensor) -> torch.Tensor:
    runner = GeneratorRunner(torchscript.load(generator), torch.device("cpu"), latents.shape[1], 256,
                             precision=precision)
    return torch.cat([runner(chunk).clone() for chunk in latents.split(256)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--models", nargs="+", default=["dcgan", "gan"])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    net = load_classifier("cpu")
    floor = classifier_card()["real_floor"]
    print(f"{args.samples} latents of seed {args.seed}, the service's runner on the CPU ({torch.get_num_threads()} "
          f"threads); bound enforced by the tests: max {BF16_MAX_GREY_DIFF}, mean < {BF16_MEAN_GREY_DIFF}\n")
    print("| version | epochs | max grey diff | mean grey diff | pixels differing | FID bf16 vs fp32 | KID | "
          "precision | recall | seconds |\n|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        version = Store(args.store).get(name)
        z = seeded_latents(args.seed, args.samples, version.latent_dim)
        started = time.perf_counter()
        fp32, bf16 = served(version.generator_path, "fp32", z), served(version.generator_path, "bf16", z)
        diff = (bf16.int() - fp32.int()).abs()
        with torch.inference_mode():
            real, _ = embed(net, (to_model_range(b) for b in batches(fp32)))
            fake, probs = embed(net, (to_model_range(b) for b in batches(bf16)))
        m = compare(real, fake, probs)
        print(f"| {name} v{version.version} | {version.manifest.epochs} | {int(diff.max())} | {float(diff.float().mean()):.4f}"
              f" | {float((diff > 0).float().mean()):.2%} | {m['fid']:.4f} | {m['kid']:.4f} | {m['precision']:.3f} | "
              f"{m['recall']:.3f} | {time.perf_counter() - started:.0f} |", flush=True)
    print(f"\nreal floor (10,000 real training images vs the test images): FID {floor['fid']:.4f}, KID "
          f"{floor['kid']:.4f}, precision {floor['precision']:.3f}, recall {floor['recall']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
