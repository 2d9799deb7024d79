"""The FashionMNIST classifier whose penultimate layer is the feature space of latentlab's metrics.

Inception weights cannot be downloaded here, and a domain classifier is the usual substitute for
MNIST-like data (TF-GAN's `mnist_frechet_distance` does the same). Its numbers are on their own
scale: never compare them with Inception FIDs from papers.

Retrain the shipped weights (fixed seed, about 2 minutes on a 2-core CPU):
    python -m trainer.classifier --retrain
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shared.atomic import atomic_write
from shared.store import sha256_file, write_json_atomic
from trainer.data import DEBIAN_FASHION_MNIST, DataError, load_idx_split, locate_idx_dir, to_model_range

ASSETS = Path(__file__).resolve().parent / "assets"
WEIGHTS = ASSETS / "fmnist_classifier.pt"
CARD = ASSETS / "fmnist_classifier.json"  # sha256, accuracy, how it was made
FEATURE_DIM = 128
INPUT_SIZE = 28
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class FashionClassifier(nn.Module):
    """Two conv blocks and a 128-unit feature layer; input (N, 1, 28, 28) in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, len(CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class WeightsError(Exception):
    pass


def load_classifier(device: torch.device | str = "cpu", weights: Path = WEIGHTS, card: Path = CARD) -> FashionClassifier:
    """The shipped classifier, after checking its file against the recorded sha256."""
    if not weights.is_file() or not card.is_file():
        raise WeightsError(f"{weights} is missing: retrain it with `python -m trainer.classifier --retrain`")
    expected = json.loads(card.read_text())["sha256"]
    actual = sha256_file(weights)
    if actual != expected:
        raise WeightsError(f"{weights} has sha256 {actual}, not the recorded {expected}: restore it from git or "
                           "retrain with `python -m trainer.classifier --retrain`")
    net = FashionClassifier()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.to(device).eval()


def classifier_card() -> dict:
    return json.loads(CARD.read_text())


@torch.inference_mode()
def accuracy(net: FashionClassifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    device = next(net.parameters()).device
    correct = 0
    for i in range(0, len(images), batch):
        logits = net(to_model_range(images[i:i + batch].to(device)))
        correct += (logits.argmax(1).cpu() == labels[i:i + batch]).sum().item()
    return correct / len(images)


def retrain(data_dir: str | None, epochs: int = 6, seed: int = 0, batch_size: int = 128, lr: float = 1e-3,
            log=print) -> dict:
    """Train from scratch with a fixed seed, write the weights and their card atomically."""
    torch.manual_seed(seed)
    directory = locate_idx_dir("fashion-mnist", data_dir)
    train_x, train_y = load_idx_split(directory, "train")
    test_x, test_y = load_idx_split(directory, "test")
    net = FashionClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=epochs * -(-len(train_x) // batch_size))
    started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(train_x))
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            x = to_model_range(train_x[idx])
            x = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, x, x.flip(3))  # mirror: clothes are symmetric
            loss = F.cross_entropy(net(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        log(f"epoch {epoch + 1}/{epochs}: test accuracy {accuracy(net, test_x, test_y):.4f}")
    acc = accuracy(net.eval(), test_x, test_y)
    ASSETS.mkdir(exist_ok=True)
    with atomic_write(WEIGHTS) as f:
        torch.save(net.state_dict(), f)
    card = {
        "name": "fmnist-cnn",
        "sha256": sha256_file(WEIGHTS),
        "test_accuracy": round(acc, 4),
        "feature_dim": FEATURE_DIM,
        "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch_version": torch.__version__,
        "command": "python -m trainer.classifier --retrain",
        "note": "a FashionMNIST classifier, not Inception: FIDs on this feature space are not comparable with papers'",
    }
    write_json_atomic(CARD, card)
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.classifier",
                                description="Check, or retrain, the FashionMNIST feature classifier used by trainer.evaluate.")
    p.add_argument("--retrain", action="store_true", help="train it again from scratch (fixed seed) and rewrite "
                                                         f"{WEIGHTS.name} and {CARD.name}")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--data-dir", default=None, help=f"FashionMNIST IDX folder (default: DATA_DIR, then {DEBIAN_FASHION_MNIST})")
    args = p.parse_args(argv)
    import os

    data_dir = args.data_dir or os.environ.get("DATA_DIR")
    try:
        if args.retrain:
            card = retrain(data_dir, epochs=args.epochs)
            print(json.dumps(card, indent=2))
            return 0
        net = load_classifier()
        test_x, test_y = load_idx_split(locate_idx_dir("fashion-mnist", data_dir), "test")
        print(f"{WEIGHTS}: sha256 ok, test accuracy {accuracy(net, test_x, test_y):.4f}")
        return 0
    except (DataError, WeightsError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
