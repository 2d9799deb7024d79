"""`python -m trainer.tinted OUT`: FashionMNIST in colour, one tint per class, as a folder of PNGs (one subfolder
per class): a colour dataset that exists offline, on which a model's colours can be checked against the data's
(a sneaker should come out in the sneakers' colour).

Each picture is the FashionMNIST image's grey level times its class's colour, on black."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from shared.errors import command
from trainer.training.data import load_idx_split, locate_idx_dir

PROG = "python -m trainer.tinted"
CLASS_NAMES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
# ten well-separated colours (RGB, 0-255), one per class in label order
TINTS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
         (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def tint(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """uint8 grey (N, 1, H, W) and labels (N,) -> uint8 RGB (N, 3, H, W): grey level x the class's colour."""
    colours = torch.tensor(TINTS, dtype=torch.float32)[labels].view(-1, 3, 1, 1) / 255
    return (images.float() * colours).round().clamp(0, 255).to(torch.uint8)


def write_folder(out: Path, images: torch.Tensor, labels: torch.Tensor) -> int:
    """One PNG per image under out/<class name>/; returns how many were written."""
    from PIL import Image

    for name in CLASS_NAMES:
        (out / name).mkdir(parents=True, exist_ok=True)
    pixels = images.permute(0, 2, 3, 1).numpy()
    for i, (picture, label) in enumerate(zip(pixels, labels.tolist())):
        Image.fromarray(np.ascontiguousarray(picture)).save(out / CLASS_NAMES[label] / f"{i:05d}.png")
    return len(pixels)


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder to write (class subfolders of PNGs)")
    p.add_argument("--count", type=int, default=60_000, help="training images to tint (the first N)")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR"), help="FashionMNIST IDX folder (env DATA_DIR)")
    args = p.parse_args(argv)
    images, labels = load_idx_split(locate_idx_dir("fashion-mnist", args.data_dir), args.split)
    written = write_folder(args.out, tint(images[:args.count], labels[:args.count]), labels[:args.count])
    print(f"{written} tinted images in {args.out} ({len(CLASS_NAMES)} class folders)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
