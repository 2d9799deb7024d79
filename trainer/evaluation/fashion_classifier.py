"""The FashionMNIST classifier whose penultimate layer is the feature space of latentlab's metrics.

Inception weights cannot be downloaded here, and a domain classifier is the usual substitute for
MNIST-like data (TF-GAN's `mnist_frechet_distance` does the same). Its numbers are on their own
scale: never compare them with Inception FIDs from papers.

Retrain the shipped weights (fixed seed, about 2 minutes on a 2-core CPU):
    python -m trainer.classifier --retrain
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import UserError
from shared.imaging.pixels import to_model_range
from shared.imaging.precision import FP32, computing_in
from shared.store import sha256_file
from shared.store.atomic import atomic_write, write_json_atomic
from trainer.evaluation.metrics import compare, kth_neighbour_radii
from trainer.training.data import CACHE_ROOT, FASHION_MNIST_CLASSES, load_idx_split, locate_idx_dir

ASSETS = Path(__file__).resolve().parent / "assets"
WEIGHTS = ASSETS / "fmnist_classifier.pt"
CARD = ASSETS / "fmnist_classifier.json"  # sha256, accuracy, how it was made
FEATURE_DIM = 128
INPUT_SIZE = 28
BATCH = 500
FLOOR_SEED = 0
CLASSES = FASHION_MNIST_CLASSES
FEATURES_DIR = CACHE_ROOT / "features"  # reference_features: one file per classifier, image set, k and device


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


class WeightsError(UserError):
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


def batches(tensor: torch.Tensor, size: int = BATCH) -> Iterator[torch.Tensor]:
    for i in range(0, len(tensor), size):
        yield tensor[i:i + size]


def generated(generator: torch.nn.Module, latents: Iterable[torch.Tensor], device: torch.device | str,
              precision: str = FP32) -> Iterator[torch.Tensor]:
    """The generator's images of each batch of latents, computed in `precision` and handed on as fp32 (the
    classifier that measures them always runs in fp32, so numbers stay comparable across precisions)."""
    for z in latents:
        with computing_in(precision, device):
            images = generator(z.to(device))
        yield images.float()


def to_input_size(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Images of any size (the DCGAN's 32x32, 64x64) and colour back to the data's grey 28x28, as the classifier
    was trained."""
    if x.shape[1] == 3:  # ITU-R 601 luma, as PIL's convert("L"): how colour pictures become the data's grey
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class ShippedClassifier(nn.Module):
    """The classifier as a version ships it (`classifier.pt`): images of the model's size in [-1, 1] in,
    class logits out (`forward`) or its 128-d features (`features`), the resize built in."""

    def __init__(self, net: FashionClassifier) -> None:
        super().__init__()
        self.body, self.head = net.body, net.head

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(to_input_size(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def export_classifier(device: torch.device | str = "cpu") -> bytes:
    """`classifier.pt` for a version: the shipped weights as TorchScript (scripted: both methods kept)."""
    import io

    from shared.imaging.torchscript import quiet_jit

    with quiet_jit():
        module = torch.jit.script(ShippedClassifier(load_classifier("cpu")).eval())
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
    return buffer.getvalue()


@torch.inference_mode()
def embed(net: FashionClassifier, images: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, class probabilities) of batches of images in [-1, 1]; resized to 28x28 if needed."""
    feats, probs = [], []
    device = next(net.parameters()).device
    for x in images:
        f = net.features(to_input_size(x.to(device, torch.float32)))
        feats.append(f.float().cpu())
        probs.append(torch.softmax(net.head(f), dim=1).float().cpu())
    return torch.cat(feats), torch.cat(probs)


def embed_dataset(net: FashionClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`embed` for uint8 dataset images."""
    return embed(net, (to_model_range(b) for b in batches(images)))


def reference_features(net: FashionClassifier, classifier_sha256: str, images: torch.Tensor, k: int,
                       log: Callable[[str], None] = print) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's features of `images` (uint8, the test set every evaluation compares with) and each one's
    distance to its k-th nearest neighbour among them (the real manifold of precision and recall): computed once per
    classifier, image set, k and kind of device, then read from FEATURES_DIR (they cost seconds of every evaluation;
    FID tools keep their reference statistics the same way). A damaged file is named and computed again."""
    device = next(net.parameters()).device
    identity = hashlib.sha256(f"{classifier_sha256} {device.type} {tuple(images.shape)} k={k}".encode())
    identity.update(images.numpy().tobytes())
    path = FEATURES_DIR / f"{identity.hexdigest()[:32]}.pt"
    expected = {"features": (len(images), FEATURE_DIM), "radii": (len(images),)}
    if path.is_file():
        try:
            kept = torch.load(path, map_location="cpu", weights_only=True)
            shapes = {name: tuple(kept[name].shape) for name in expected} if isinstance(kept, dict) else None
            if shapes == expected:
                return kept["features"], kept["radii"]
            problem = f"shapes {shapes}, not {expected}"
        except Exception as e:  # a truncated or foreign file: say so, and make it again
            problem = str(e).splitlines()[0]
        log(f"{path} is damaged ({problem}); computing the test set's features again")
    with torch.inference_mode():
        features, _ = embed_dataset(net, images)
        radii = kth_neighbour_radii(features, k)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            torch.save({"features": features, "radii": radii}, f)
    except OSError as e:  # a read-only home: evaluations still work, each paying for the features
        log(f"the test set's features are not kept ({e}); every evaluation computes them")
    return features, radii


def real_floor(net: FashionClassifier, directory: Path) -> dict:
    """The metrics of 10,000 real training images against the test images: what a perfect generator
    would score. A constant of this classifier and the dataset, so `--retrain` records it in the card."""
    test_x, _ = load_idx_split(directory, "test")
    train_x, _ = load_idx_split(directory, "train")
    idx = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(FLOOR_SEED))[:len(test_x)]
    real, _ = embed_dataset(net, test_x)
    feats, probs = embed_dataset(net, train_x[idx])
    return {**compare(real, feats, probs), "images": f"{len(idx)} fashion-mnist training images"}


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
    started = time.perf_counter()
    net, acc = train_classifier(data_dir, epochs, seed, batch_size, lr, log)
    directory = locate_idx_dir("fashion-mnist", data_dir)
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
        "real_floor": real_floor(net.eval(), directory),
    }
    write_json_atomic(CARD, card)
    return card


def train_classifier(data_dir: str | None, epochs: int = 6, seed: int = 0, batch_size: int = 128, lr: float = 1e-3,
                     log=print) -> tuple[FashionClassifier, float]:
    """A classifier trained from scratch with a fixed seed (the shipped one is seed 0), in eval mode, with its test
    accuracy; nothing is written."""
    torch.manual_seed(seed)
    directory = locate_idx_dir("fashion-mnist", data_dir)
    train_x, train_y = load_idx_split(directory, "train")
    test_x, test_y = load_idx_split(directory, "test")
    net = FashionClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=epochs * -(-len(train_x) // batch_size))
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
    return net.eval(), accuracy(net.eval(), test_x, test_y)


