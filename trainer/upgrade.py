"""`python -m trainer.upgrade`: give every version of a store the forms it lacks (a torch.export program and ONNX
of each network), made from the weights in its TorchScript files and checked as publishing checks them.

Each version's files are added through the store's own way of adding files (atomic, hash-listed, under the
model's writer lock), so a service reading the store sees a version without them or with them, never half; a
version that already has every form is left alone, so running it twice does nothing the second time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from shared.errors import UserError, command
from shared.imaging import torchscript
from shared.imaging.latents import LatentLayout
from shared.store import FORMS, NETWORKS, Store, Version, form_file, validate_name
from trainer.publishing.encoder import Encoder
from trainer.publishing.publish import export_networks
from trainer.training.architectures import Architecture, run_architecture
from trainer.training.config import TrainConfig

PROG = "python -m trainer.upgrade"


def missing_forms(version: Version) -> list[str]:
    """The files of `version`'s networks that its TorchScript files have and the other forms lack."""
    files = version.manifest.files
    return [form_file(network, form) for network in NETWORKS if form_file(network, "torchscript") in files
            for form in FORMS if form_file(network, form) not in files]


def eager_networks(version: Version, arch: Architecture, d_norm: str) -> dict[str, nn.Module]:
    """The version's networks as eager modules, their weights read from its TorchScript files."""
    files = version.manifest.files
    builders = {"generator": arch.generator, "discriminator": lambda: arch.discriminator(batch_norm=d_norm == "batch"),
                "encoder": lambda: Encoder(arch.channels, arch.layout.width)}
    networks = {}
    with torch.random.fork_rng(devices=[]):  # building a module initialises weights that are overwritten below
        for network, build in builders.items():
            if form_file(network, "torchscript") in files:
                module = build()
                module.load_state_dict(torchscript.load(version.path / form_file(network, "torchscript")).state_dict())
                networks[network] = module.eval()
    return networks


def upgrade_version(store: Store, version: Version, log=print) -> Version:
    """`version` with every form of its networks, the missing ones exported and added; as it was if none is."""
    missing = missing_forms(version)
    if not missing:
        return version
    if not version.manifest.config:
        raise UserError(f"{version.name} v{version.version} has no training config in its manifest to rebuild its "
                        "networks from (it was not published by the trainer)")
    cfg = TrainConfig.from_dict(version.manifest.config)
    arch = run_architecture(cfg)
    layout = arch.layout
    if layout != LatentLayout.of(version.manifest) or arch.image_shape != version.image_shape:
        raise UserError(f"{version.name} v{version.version}: its config describes another network than its manifest")
    with tempfile.TemporaryDirectory() as tmp:
        export_networks(eager_networks(version, arch, cfg.d_norm), layout, Path(tmp))
        added = {name: (Path(tmp) / name).read_bytes() for name in missing}
    version = store.add_files(version, added)
    log(f"{version.name} v{version.version}: added {', '.join(sorted(added))}")
    return version


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 every version has every form; 1 a write failed; 2 bad input (a version that cannot be "
               "rebuilt is named and the others are still upgraded).")
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"), help="model store (env MODEL_DIR)")
    p.add_argument("--model", default=None, help="only this model (default: every model of the store)")
    return p


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = Store(args.store)
    names = [validate_name(args.model)] if args.model else store.model_names()
    versions = [v for name in names for v in store.versions(name)]
    if not versions:
        raise UserError(f"no complete version{' of ' + args.model if args.model else ''} in {args.store}")
    failed = []
    for version in versions:
        try:
            upgrade_version(store, version)
        except UserError as e:
            print(f"{version.name} v{version.version}: not upgraded: {e}", file=sys.stderr)
            failed.append(version)
    if failed:
        raise UserError(f"{len(failed)} of {len(versions)} versions could not be upgraded (above)")
    print(f"{len(versions)} version{'s have' if len(versions) != 1 else ' has'} every form")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
