"""`python -m trainer.evaluate`: measure a published version and record its metrics in its manifest."""
from __future__ import annotations

import argparse
import os

from shared.errors import command
from shared.imaging.precision import FP32, PRECISIONS
from shared.store import CLASSES, Store, validate_name
from trainer.evaluation import inception
from trainer.evaluation.evaluator import (
    K,
    add_semantics,
    check_evaluable,
    check_samples,
    evaluate_version,
    minimum_samples,
    version_spec,
)

PROG = "python -m trainer.evaluate"


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Measure a published generator (the sliced Wasserstein distance on Laplacian-pyramid patches "
                    "against the dataset's test images, for any dataset; for FashionMNIST models also FID, KID, "
                    "precision/recall and class coverage in the feature space of latentlab's FashionMNIST "
                    "classifier) and record the numbers under `metrics` in its manifest; "
                    "give a version made without them the directions of the data's classes in its latent space.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"), help="model store (env MODEL_DIR)")
    p.add_argument("--model", required=True, help="model name in the store")
    p.add_argument("--version", type=version_spec, default="latest", help="version number, or latest")
    p.add_argument("--samples", type=int, default=10_000,
                   help=f"generated images to measure (at least {minimum_samples(K)}; thousands for a meaningful FID)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated images' latents")
    p.add_argument("--device", default=os.environ.get("DEVICE", "auto"), help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR"), help="FashionMNIST IDX folder (env DATA_DIR)")
    p.add_argument("--no-classes", action="store_true",
                   help="do not add classes.json and classifier.pt to a version that has none (what its latent space "
                        "means: class requests, class sweeps, truncation towards a class)")
    p.add_argument("--class-samples", type=int, default=20_000, help="generated images labelled to find the classes")
    p.add_argument("--precision", choices=PRECISIONS, default=FP32,
                   help="what the generator computes in (bf16: autocast, as the service serves it with PRECISION=bf16); "
                        "the classifier that measures it always runs in fp32")
    p.add_argument("--no-inception", action="store_true",
                   help="skip FID/KID on Inception-v3 features, which are computed when torchvision's ImageNet "
                        f"weights are in torch's hub cache ({inception.WEIGHTS_FILE}; slow on a CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, one log line per phase")
    args = p.parse_args(argv)
    check_samples(args.samples)  # before loading anything
    store = Store(args.store)
    version = check_evaluable(store.get(validate_name(args.model), args.version))
    progress = False if args.no_progress else None
    if not args.no_classes and CLASSES not in version.manifest.files:
        version = add_semantics(store, version, args.class_samples, args.device, precision=args.precision,
                                progress=progress)
    evaluate_version(store, version, args.samples, args.seed, args.device, args.data_dir, precision=args.precision,
                     progress=progress, use_inception=not args.no_inception)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
