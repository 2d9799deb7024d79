"""`python -m trainer.project`: the latents of pictures, without a server (the search POST /project runs).

    python -m trainer.project --store ./models --model dcgan shirt.png trousers.jpg --steps 200 --out projected/

For each picture: `<out>/<name>.png`, the picture as fed to the model beside the generator's reconstruction,
and one `<out>/latents.json` with every picture's latent and its losses at the start and at the end. The
pictures are searched for together (each loss is its own, so each gets the answer it would get alone).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from shared.errors import UserError, command
from shared.imaging.devices import resolve_device
from shared.imaging.grids import render_grid
from shared.imaging.latents import LatentLayout
from shared.imaging.networks import load_classifier, load_network, readable_form
from shared.imaging.pixels import fit_image, to_model_range
from shared.imaging.precision import FP32, PRECISIONS
from shared.imaging.projection import Projection, WithClass, mean_latent, picture_classes, pixel_psnr
from shared.store import Store, Version, validate_name
from shared.store.atomic import write_json_atomic
from trainer.evaluation.evaluator import version_spec

PROG = "python -m trainer.project"


def read_picture(path: Path, size: int, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return fit_image(image, size, channels)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path} is not a picture this can read (PNG, JPEG, ...): {e}") from None


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 0:
        raise UserError(f"--steps must be 0 or more, not {args.steps}")
    version = Store(args.store).get(validate_name(args.model), args.version)
    device = resolve_device(args.device)
    channels, size = version.image_shape[0], version.image_shape[1]
    pictures = np.stack([read_picture(path, size, channels) for path in args.pictures])
    targets = to_model_range(torch.from_numpy(pictures).permute(0, 3, 1, 2).to(device))
    files = version.manifest.files
    generator = load_network(version.path, files, "generator", device)
    encoder = load_network(version.path, files, "encoder", device) if readable_form(files, "encoder") else None
    classifier = load_classifier(version.path, files, device)
    layout = LatentLayout.of(version.manifest)
    with torch.inference_mode():
        start = encoder(targets) if encoder is not None else mean_latent(len(targets), layout.width, device)
    labels = None
    if layout.conditional:  # z alone is searched, each picture's class held
        labels = held_classes(version, args.class_, targets, start, classifier, encoder)
        generator = WithClass(generator, labels, layout.classes)
    elif args.class_ is not None:
        raise UserError(f"--class: {version.name} v{version.version} is not class-conditional; leave --class out")
    search = Projection(generator, targets, layout.style_of(start).clone(), args.steps, args.seed,
                        classifier.features if classifier is not None else None, args.precision)
    latents = search.run()
    with torch.inference_mode():
        rebuilt = search.generate(latents)
    latents = layout.labelled(latents, labels)
    write_results(args, version, search, targets, rebuilt, latents, labels, encoder is not None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pictures", nargs="+", type=Path, help="PNG, JPEG or any picture, any size")
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"), help="model store (env MODEL_DIR)")
    p.add_argument("--model", required=True, help="model name in the store")
    p.add_argument("--version", type=version_spec, default="latest", help="version number, or latest")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps after the encoder's guess (0: the guess)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search's noise")
    p.add_argument("--out", type=Path, default=Path("projected"), help="folder for the pictures and latents.json")
    p.add_argument("--device", default=os.environ.get("DEVICE", "auto"), help="auto, cpu, cuda or cuda:N")
    p.add_argument("--class", dest="class_", default=None, metavar="CLASS",
                   help="a class-conditional model: the pictures' class (a name or an index), held while z is "
                        "searched (default: each picture's, as the version's classifier sees it)")
    p.add_argument("--precision", choices=PRECISIONS, default=FP32,
                   help="what the generator computes in during the search (bf16: autocast, as a service with "
                        "PRECISION=bf16 projects)")
    return p


def held_classes(version: Version, class_: str | None, targets: torch.Tensor, start: torch.Tensor,
                 classifier: torch.nn.Module | None, encoder: torch.nn.Module | None) -> torch.Tensor:
    """A conditional version's class for each picture: the one given, else the one its classifier (or the
    encoder's guess) sees."""
    if class_ is not None:
        try:
            label = version.manifest.class_index(class_)
        except LookupError as e:
            raise UserError(f"--class: {e}") from None
        return torch.full((len(targets),), label, device=targets.device)
    if classifier is None and encoder is None:
        raise UserError(f"{version.name} v{version.version} has neither a classifier nor an encoder to find "
                        "the pictures' class: give --class")
    with torch.inference_mode():
        return picture_classes(classifier, targets, start, version.manifest.input_classes)


def write_results(args: argparse.Namespace, version: Version, search: Projection, targets: torch.Tensor,
                  rebuilt: torch.Tensor, latents: torch.Tensor, labels: torch.Tensor | None, encoded: bool) -> None:
    """Each picture beside its reconstruction, and latents.json with every latent and its losses."""
    final = search.losses()
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"model": version.name, "version": version.version, "steps": args.steps, "seed": args.seed,
              "precision": args.precision, "start": "encoder" if encoded else "mean latent", "pictures": {}}
    stems = [path.stem for path in args.pictures]
    for i, path in enumerate(args.pictures):
        name = path.stem if stems.count(path.stem) == 1 else f"{path.stem}-{i}"  # two shirt.png of two folders
        pair = torch.stack([targets[i], rebuilt[i]]).cpu()
        render_grid(pair, nrow=2, padding=2, scale=4).save(args.out / f"{name}.png")
        record["pictures"][str(path)] = {"latent": latents[i].cpu().tolist(), "start": search.start_losses.of(i),
                                         "final": final.of(i), "psnr": float(pixel_psnr(final.pixel[i])),
                                         **({"class": version.manifest.class_names[int(labels[i])]}
                                            if labels is not None else {})}
        print(f"{path}: pixel error {search.start_losses.of(i)['pixel']:.4f} -> {final.of(i)['pixel']:.4f} "
              f"(PSNR {float(pixel_psnr(final.pixel[i])):.1f} dB) -> {args.out / (name + '.png')}")
    write_json_atomic(args.out / "latents.json", record)
    print(f"latents: {args.out / 'latents.json'}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
