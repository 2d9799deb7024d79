"""`python -m trainer.evaluate`: measure a published generator and record the numbers in its manifest.

For every dataset: the sliced Wasserstein distance on Laplacian-pyramid patches (`trainer.evaluation.swd`)
between N generated images (default 10,000, from a fixed latent seed) and the dataset's test images (a folder's
own images, which have no test split), at the model's shape.

For FashionMNIST models also: the generated images and the 10,000 test images are embedded by the project's
FashionMNIST classifier (`trainer.classifier`; not Inception, so the numbers are not comparable with papers).
Reported: FID, KID (+- std over subsets), precision/recall (k=3), class histogram, its normalised entropy and
the mean confidence, beside the same metrics for 10,000 real training images: the floor a perfect generator
would reach (a constant of the classifier, measured by its `--retrain` and read from its card).
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import torch

from shared.errors import UserError
from shared.imaging import torchscript
from shared.imaging.devices import resolve_device
from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.imaging.networks import load_network
from shared.imaging.precision import FP32
from shared.store import CLASSES, CLASSIFIER, Store, Version, utc_now_iso
from trainer.evaluation import inception
from trainer.evaluation.fashion_classifier import (
    BATCH,
    batches,
    classifier_card,
    embed,
    generated,
    load_classifier,
    reference_features,
)
from trainer.evaluation.metrics import compare, minimum_samples
from trainer.evaluation.swd import descriptors, swd
from trainer.training.data import load_idx_split, load_reference_images, locate_idx_dir
from trainer.training.phases import Phase

K = 3  # precision/recall neighbourhood size

ROWS = (("FID", "fid"), ("KID", "kid"), ("KID std", "kid_std"), ("precision", "precision"), ("recall", "recall"),
        ("class entropy", "class_entropy"), ("confidence", "mean_confidence"))


class EvaluationError(UserError):
    """The version cannot be measured as asked."""


def check_samples(samples: int) -> int:
    if samples < minimum_samples(K):
        raise EvaluationError(f"{samples} samples are too few: precision/recall need at least {minimum_samples(K)} "
                              f"(k={K} neighbours each), and FID/KID mean little below a few thousand")
    return samples


def check_evaluable(version: Version) -> Version:
    """A version the evaluator can measure: one whose manifest says what it was trained on."""
    if version.manifest.dataset is None and version.manifest.image_shape[0] != 1:
        raise EvaluationError(f"{version.name} v{version.version} does not say what it was trained on (no dataset in "
                              "its manifest), so there are no real images to measure it against")
    return version


class Evaluator:
    """Measures generators of one dataset and image shape against its test images; the real images' descriptors
    (and for FashionMNIST the classifier and the test set's features) are computed once, so a training run can
    measure its generator every few epochs cheaply."""

    def __init__(self, device: str | torch.device = "auto", data_dir: str | None = None,
                 dataset: str = "fashion-mnist", image_shape: tuple[int, int, int] = (1, 28, 28),
                 use_inception: bool = False, log: Callable[[str], None] = print) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        channels, size = image_shape[0], image_shape[-1]
        reference, self.reference = load_reference_images(dataset, data_dir, size, channels)
        self.swd_real = descriptors(reference)
        self.inception = None  # FID/KID in Inception's feature space: only with its weights on the machine
        if use_inception and inception.available():
            self.inception = inception.load_inception(self.device)
            self.inception_real = inception.inception_features(self.inception, reference, self.device)
        elif use_inception:
            log(f"Inception FID/KID skipped: no weights at {inception.weights_path()} ({inception.HOW_TO_GET}); "
                "the SWD stands for them")
        self.net = None
        if dataset == "fashion-mnist":  # the classifier's feature space is FashionMNIST's
            self.net = load_classifier(self.device)
            self.card = classifier_card()
            test_x, _ = load_idx_split(locate_idx_dir("fashion-mnist", data_dir), "test")
            self.real, self.real_radii = reference_features(self.net, self.card["sha256"], test_x, K, log)

    def measure(self, generator: torch.nn.Module, layout: LatentLayout, samples: int = 10_000, seed: int = 0,
                precision: str = FP32, phase: Phase | None = None) -> dict:
        """Every metric of `generator` (in eval mode, on this evaluator's device) from `samples` latents of `seed`
        drawn in its `layout`, the generator run in `precision` (the classifier always in fp32); `phase` advances
        once per batch. A conditional generator makes its classes uniformly, as FashionMNIST has them."""
        check_samples(samples)
        started = time.perf_counter()
        z = layout.seeded(seed, samples)
        with torch.inference_mode():
            images = generated(generator, batches(z), self.device, precision)
            images = [x.cpu() for x in (phase.track(images) if phase is not None else images)]
        pixels = to_uint8(torch.cat(images))  # what a user gets, as served: SWD and Inception measure these
        record = {"samples": samples, "latent_seed": seed, "reference": self.reference, "generator_precision": precision,
                  **swd(self.swd_real, pixels)}
        if self.inception is not None:
            record |= inception.inception_metrics(self.inception_real, pixels, self.inception, self.device)
        if self.net is not None:
            with torch.inference_mode():
                fake, fake_probs = embed(self.net, images)
            record |= {**compare(self.real, fake, fake_probs, K, self.real_radii), "k": K,
                       "feature_net": {k: self.card[k] for k in ("name", "sha256", "test_accuracy", "note")},
                       "real_floor": self.card["real_floor"]}  # measured once per classifier by --retrain
        return record | {"device": str(self.device), "seconds": round(time.perf_counter() - started, 2),
                         "evaluated_at": utc_now_iso()}


def evaluate_version(store: Store, version: Version, samples: int = 10_000, seed: int = 0, device: str = "auto",
                     data_dir: str | None = None, log: Callable[[str], None] = print, precision: str = FP32,
                     progress: bool | None = False, use_inception: bool = True) -> dict:
    """Compute the metrics of `version` and write them into its manifest (atomically); returns them. Shown as the
    phase "evaluation": the test set's features, then the generated batches."""
    check_samples(samples)
    check_evaluable(version)
    started = time.perf_counter()
    with Phase("evaluation", 1 + math.ceil(samples / BATCH), progress, log,
               detail=f"{samples} samples in {precision}") as phase:
        evaluator = Evaluator(device, data_dir, version.manifest.dataset or "fashion-mnist", version.image_shape,
                              use_inception, log)
        phase.advance()
        generator = load_network(version.path, version.manifest.files, "generator", evaluator.device)
        record = evaluator.measure(generator, LatentLayout.of(version.manifest), samples, seed, precision, phase)
    record["seconds"] = round(time.perf_counter() - started, 2)  # with loading the classifier and the test set
    store.update_manifest(version, metrics=record)
    log(format_table(f"{version.name} v{version.version}", record))
    return record


def add_semantics(store: Store, version: Version, samples: int = 20_000, device: str = "auto",
                  log: Callable[[str], None] = print, precision: str = FP32, progress: bool | None = False) -> Version:
    """Give a version made without them `classes.json` and `classifier.pt` (what its latent space means)."""
    from trainer.evaluation.class_boundaries import fit_class_semantics
    from trainer.evaluation.fashion_classifier import export_classifier

    started = time.perf_counter()
    dev = resolve_device(device)
    semantics = fit_class_semantics(load_network(version.path, version.manifest.files, "generator", dev), LatentLayout.of(version.manifest),
                                    samples, device=dev, precision=precision, progress=progress, log=log)
    files = {CLASSES: (semantics.model_dump_json(indent=1) + "\n").encode()}
    if torchscript.available():  # the classifier is TorchScript only (see shared.imaging.networks.load_classifier)
        files[CLASSIFIER] = export_classifier()
    version = store.add_files(version, files)
    log(f"{version.name} v{version.version}: the directions of {len(semantics.classes)} classes found in "
        f"{time.perf_counter() - started:.0f}s from {samples} labelled samples (latent softmax held-out accuracy "
        f"{semantics.latent_classifier.held_out_accuracy:.2f}); {' and '.join(files)} added")
    return version


def format_table(label: str, record: dict) -> str:
    floor = record.get("real_floor", {})
    lines = [f"{'metric':<14} {label:>14} {'real floor':>12}"]
    for title, key in ROWS if "fid" in record else ():
        lines.append(f"{title:<14} {record[key]:>14.4f} {floor[key]:>12.4f}")
    for title, key in (("Inception FID", "inception_fid"), ("Inception KID", "inception_kid")):
        if key in record:
            lines.append(f"{title:<14} {record[key]:>14.4f}")
    for level, value in record["swd_levels"].items():
        lines.append(f"{'SWD ' + level + 'px':<14} {value:>14.4f}")
    lines.append(f"{'SWD':<14} {record['swd']:>14.4f}")
    lines.append(f"({record['samples']} samples vs {record['reference']}; {record['seconds']}s on {record['device']})")
    return "\n".join(lines)


def version_spec(text: str) -> int | str:
    if text != "latest" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a number or latest, not {text!r}")
    return text
