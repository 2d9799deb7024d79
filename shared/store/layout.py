"""The store's layout: `<root>/<name>/v<N>/` with these file names, and the names allowed for models."""
from __future__ import annotations

import re

from shared.errors import UserError, WriteFailed

# every network of a version in each of its forms: `<network><suffix>`. TorchScript is the contract every version
# has, the other two are written beside it (older versions may lack them), except where the trainer ran on a torch
# without TorchScript: its versions have only the other two
FORMS = {"torchscript": ".pt", "export": ".pt2", "onnx": ".onnx"}
NETWORKS = ("generator", "discriminator", "encoder")
GENERATOR = "generator.pt"  # TorchScript: (N, latent_dim) float32 -> (N, C, H, W) in [-1, 1]
DISCRIMINATOR = "discriminator.pt"  # TorchScript: (N, C, H, W) -> (N,) logits
ENCODER = "encoder.pt"  # TorchScript: (N, C, H, W) images in [-1, 1] -> (N, latent_dim): a first guess of their latents
CLASSES = "classes.json"  # what the latent space means: class boundaries, directions, means (shared.store.semantics)
CLASSIFIER = "classifier.pt"  # TorchScript: the feature classifier the classes were found with (forward: logits,
#                               features: its penultimate layer), for class requests and projection
REPORT_DIR = "report"  # the study's figures and history.csv
HISTORY_CSV = "history.csv"  # in REPORT_DIR: the training curves, one row per step (GET /models/{name}/history)
MANIFEST = "manifest.json"
# hidden entries of a model's directory, which listings skip: writers' lock, the highest number ever
# handed out (a deleted version's number is never reused), and versions being built
LOCK_FILE = ".lock"
HIGH_WATER = ".high-water"
STAGING_PREFIX = ".staging-"

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)
VERSION_DIR_RE = re.compile(r"^v([1-9][0-9]{0,8})$")


class StoreError(UserError):
    """Base class for store problems a caller can report to a user."""


class StoreWriteFailed(StoreError, WriteFailed):
    """Writing to the store failed (disk full, permissions); nothing was published."""


class InvalidName(StoreError, ValueError):
    pass


class NotFound(StoreError, LookupError):
    pass


def form_file(network: str, form: str) -> str:
    """The file of `network` (generator, discriminator, encoder) in `form` (torchscript, export, onnx)."""
    return network + FORMS[form]


def generator_file(files) -> str | None:
    """The file a version's generator is known by (its identity: hashes, the service's reload checks): the
    TorchScript file, else the torch.export program, else ONNX; None if `files` has no generator."""
    return next((name for name in (form_file("generator", form) for form in FORMS) if name in files), None)


def validate_name(name: str) -> str:
    """Return `name` if it is a valid model name, else raise InvalidName (no path tricks possible)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidName(
            f"invalid model name {name!r}: use 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name
