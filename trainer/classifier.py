"""`python -m trainer.classifier`: check the shipped FashionMNIST feature classifier, or retrain it."""
from __future__ import annotations

import argparse
import json
import os

from shared.errors import command
from trainer.evaluation.fashion_classifier import CARD, WEIGHTS, accuracy, load_classifier, retrain
from trainer.training.data import DEBIAN_FASHION_MNIST, load_idx_split, locate_idx_dir

PROG = "python -m trainer.classifier"


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG,
                                description="Check, or retrain, the FashionMNIST feature classifier used by trainer.evaluate.")
    p.add_argument("--retrain", action="store_true", help="train it again from scratch (fixed seed) and rewrite "
                                                         f"{WEIGHTS.name} and {CARD.name}")
    p.add_argument("--epochs", type=int, default=6, help="training epochs with --retrain")
    p.add_argument("--data-dir", default=None, help=f"FashionMNIST IDX folder (default: DATA_DIR, then {DEBIAN_FASHION_MNIST})")
    args = p.parse_args(argv)
    data_dir = args.data_dir or os.environ.get("DATA_DIR")
    if args.retrain:
        card = retrain(data_dir, epochs=args.epochs)
        print(json.dumps(card, indent=2))
        return 0
    net = load_classifier()
    test_x, test_y = load_idx_split(locate_idx_dir("fashion-mnist", data_dir), "test")
    print(f"{WEIGHTS}: sha256 ok, test accuracy {accuracy(net, test_x, test_y):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
