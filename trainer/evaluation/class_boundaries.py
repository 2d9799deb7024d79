"""What a generator's latent space means: class boundaries found with the project's classifier (InterFaceGAN).

Many latents are drawn, their images labelled by the FashionMNIST classifier, and two things are fitted
on 80% of them and checked on the rest: a softmax over the classes in latent space (which class a latent's
image is likely to be: the service uses it to pick candidates for a class request before it generates any),
and for each class a balanced logistic boundary between it and the rest, whose unit normal is the direction
that moves a latent towards the class (class sweeps, the explorer's class sliders). Each class's mean latent
is kept for truncation towards it. The result is `classes.json` (shared.store.semantics), published with the
version beside `classifier.pt`, the classifier itself, so the service needs no trainer code.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from shared.imaging.latents import LatentLayout
from shared.imaging.precision import FP32
from shared.store import ClassSemantics
from trainer.evaluation.fashion_classifier import (
    BATCH,
    CLASSES,
    batches,
    classifier_card,
    embed,
    generated,
    load_classifier,
)
from trainer.training.phases import Phase

SEED = 777  # latents other than the evaluation's (seed 0)
SAMPLES = 20_000
HELD_OUT = 0.2
WEIGHT_DECAY = 1e-4
MIN_EXAMPLES = 5  # a class rarer than this among the samples gets no boundary worth the name


def label_samples(generator: torch.nn.Module, layout: LatentLayout, samples: int, seed: int,
                  device: torch.device | str, precision: str = FP32,
                  phase: Phase | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, the classifier's labels of their images); the generator runs in `precision`, the classifier in fp32.
    A conditional layout's latents end in a one-hot of a uniformly drawn class."""
    net = load_classifier(device)
    z = layout.seeded(seed, samples)
    with torch.inference_mode():
        images = generated(generator, batches(z), device, precision)
        _, probs = embed(net, phase.track(images) if phase is not None else images)
    return z, probs.argmax(1)


def _minimise(params: list[torch.Tensor], loss_fn) -> None:
    optimizer = torch.optim.LBFGS(params, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn() + WEIGHT_DECAY * sum(p.square().sum() for p in params)
        loss.backward()
        return loss

    optimizer.step(closure)


def fit_softmax(z: torch.Tensor, labels: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.zeros(classes, z.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    _minimise([weights, bias], lambda: F.cross_entropy(z @ weights.T + bias, labels))
    return weights.detach(), bias.detach()


def fit_boundary(z: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A logistic boundary between `positive` latents and the rest, each side weighted half: (unit normal, offset)."""
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    target = positive.float()
    share = target.mean()
    weight = torch.where(positive, 0.5 / share, 0.5 / (1 - share))
    _minimise([w, b], lambda: (F.binary_cross_entropy_with_logits(z @ w + b, target, reduction="none") * weight).mean())
    norm = w.detach().norm()
    return w.detach() / norm, float(b.detach() / norm)


def balanced_accuracy(scores: torch.Tensor, positive: torch.Tensor) -> float | None:
    if positive.all() or not positive.any():
        return None
    said = scores > 0
    return float(0.5 * ((said & positive).sum() / positive.sum() + (~said & ~positive).sum() / (~positive).sum()))


def fit_class_semantics(generator: torch.nn.Module, layout: LatentLayout, samples: int = SAMPLES, seed: int = SEED,
                        device: torch.device | str = "cpu", precision: str = FP32, progress: bool | None = False,
                        log: Callable[[str], None] = print) -> ClassSemantics:
    """The class semantics of `generator`, shown as the phase "classes" (its labelling batches, then one fit per
    class and the softmax's)."""
    steps = math.ceil(samples / BATCH) + 1 + len(CLASSES)
    with Phase("classes", steps, progress, log, detail=f"{samples} samples in {precision}") as phase:
        return _fit(generator, layout, samples, seed, device, precision, phase)


def _fit(generator: torch.nn.Module, layout: LatentLayout, samples: int, seed: int, device: torch.device | str,
         precision: str, phase: Phase) -> ClassSemantics:
    z, labels = label_samples(generator, layout, samples, seed, device, precision, phase)
    split = int(len(z) * (1 - HELD_OUT))
    weights, bias = fit_softmax(z[:split], labels[:split], len(CLASSES))
    phase.advance()
    held_out = float(((z[split:] @ weights.T + bias).argmax(1) == labels[split:]).float().mean())
    classes = []
    for index, name in enumerate(CLASSES):
        phase.advance()
        mine = labels == index
        if mine[:split].sum() >= MIN_EXAMPLES and (~mine[:split]).sum() >= MIN_EXAMPLES:
            direction, offset = fit_boundary(z[:split], mine[:split])
            accuracy = balanced_accuracy(z[split:] @ direction + offset, mine[split:])
        else:  # too rare (or too common) to fit: the softmax's own direction, no boundary to score
            direction = weights[index] - weights.mean(0)
            direction, offset, accuracy = direction / direction.norm(), 0.0, None
        mean = z[mine].mean(0) if mine.any() else torch.zeros(layout.width)
        classes.append({"index": index, "name": name, "share": float(mine.float().mean()), "accuracy": accuracy,
                        "direction": direction.tolist(), "offset": offset, "mean": mean.tolist()})
    card = classifier_card()
    return ClassSemantics(classifier={k: card[k] for k in ("name", "sha256", "test_accuracy")}, samples=samples,
                          latent_seed=seed, latent_dim=layout.width, classes=classes, latent_classifier={
                              "weights": weights.tolist(), "bias": bias.tolist(), "held_out_accuracy": held_out})
