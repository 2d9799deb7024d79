"""A version's networks as torch modules, from the form this torch can read: its TorchScript file where
TorchScript still runs, else its torch.export program (`.pt2`). Every reader (the trainer's figures,
evaluation and projection, the service) loads through `load_network`, so in one environment they all run
the same form and compute the same pixels."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from shared.imaging import torchscript
from shared.store import CLASSIFIER, FORMS, form_file

READABLE = ("torchscript", "export")  # forms torch itself runs, in order of preference


def load_program(path: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A torch.export program (`.pt2`) as a module on `device` (channels-last on the CPU); it was exported in eval
    mode, and stays so."""
    module = torch.export.load(str(path)).module()
    return torchscript.channels_last_on_cpu(module.to(device), device)


def readable_form(files: Mapping[str, object], network: str) -> str | None:
    """The form of `network` a reader loads from a version listing `files`: None if it has none this torch runs."""
    usable = [form for form in READABLE if form != "torchscript" or torchscript.available()]
    return next((form for form in usable if form_file(network, form) in files), None)


def load_network(directory: Path, files: Mapping[str, object], network: str,
                 device: torch.device | str = "cpu") -> torch.nn.Module:
    """`network` (generator, discriminator, encoder) of the version in `directory`, whose manifest lists `files`.
    Raises FileNotFoundError naming what is missing when no form of it can be read here."""
    form = readable_form(files, network)
    if form is None:
        have = [form_file(network, f) for f in FORMS if form_file(network, f) in files]
        why = ("this torch cannot run TorchScript and it has no torch.export form: run "
               "`python -m trainer.upgrade` where TorchScript still runs" if have else f"it has no {network}")
        raise FileNotFoundError(f"cannot load the {network} of {directory}: {why}")
    path = Path(directory) / form_file(network, form)
    return torchscript.load(path, device) if form == "torchscript" else load_program(path, device)


def load_classifier(directory: Path, files: Mapping[str, object],
                    device: torch.device | str = "cpu") -> torch.jit.ScriptModule | None:
    """The version's feature classifier (`classifier.pt`, TorchScript: two methods, which one torch.export program
    cannot hold), or None where the version has none or this torch cannot run TorchScript: then class requests go
    unchecked and projection matches pixels only, as for a version made without classes."""
    if CLASSIFIER not in files or not torchscript.available():
        return None
    return torchscript.load(Path(directory) / CLASSIFIER, device)
