"""What a training step costs for each architecture size: images per second of the real training step (the
recipe's loss, penalties and precision) on this machine, beside the parameter counts, so that a size can be
matched to a time budget.

    python benchmarks/step_cost.py                                      # r3gan's sizes against the DCGAN's stable
    python benchmarks/step_cost.py --sizes 32x1x8,64x1x8,64x2x8,96x1x16 --seconds 20

Each size trains for `--seconds` after a warm-up of a few steps, one at a time; the printed table is in Markdown.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.imaging.pixels import to_model_range  # noqa: E402
from shared.imaging.precision import BF16, resolve_precision  # noqa: E402
from trainer.training.architectures import count_parameters, get_architecture  # noqa: E402
from trainer.training.config import TrainConfig  # noqa: E402
from trainer.training.nets import Nets  # noqa: E402
from trainer.training.recipe import build_recipe  # noqa: E402
from trainer.training.settings import resolve_recipe  # noqa: E402
from trainer.training.step import train_step  # noqa: E402


def images_per_second(cfg: TrainConfig, seconds: float) -> tuple[float, int, int]:
    arch = get_architecture(cfg.arch).at(cfg.channels, cfg.image_size, cfg.features, cfg.depth, cfg.groups)
    device = torch.device("cpu")
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(0)
    nets = Nets.build(arch, build_recipe(cfg), device, channels_last=precision == BF16)
    real = to_model_range(torch.randint(0, 256, (cfg.batch_size, *arch.image_shape), dtype=torch.uint8))
    for _ in range(3):  # warm-up: oneDNN picks its kernels
        train_step(nets, build_recipe(cfg), real, torch.randn(cfg.batch_size, arch.latent_dim), precision)
    recipe, steps, started = build_recipe(cfg), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        train_step(nets, recipe, real, torch.randn(cfg.batch_size, arch.latent_dim), precision)
        steps += 1
    rate = steps * cfg.batch_size / (time.perf_counter() - started)
    return rate, count_parameters(nets.G_local), count_parameters(nets.D_local)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32x1x8,48x1x8,64x1x8,64x2x8,64x1x16,96x1x8,128x1x16",
                   help="r3gan sizes, each FEATURESxDEPTHxGROUPS")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--no-dcgan", action="store_true", help="leave out the DCGAN's stable reference")
    args = p.parse_args()

    runs = [] if args.no_dcgan else [("dcgan", {}, "DCGAN, stable (features 64)")]
    for size in args.sizes.split(","):
        features, depth, groups = map(int, size.split("x"))
        runs.append(("r3gan", {"features": features, "depth": depth, "groups": groups},
                     f"r3gan {features} wide, depth {depth}, {groups} groups"))
    print(f"training steps on {torch.get_num_threads()} CPU threads, {args.channels}x{args.image_size}x"
          f"{args.image_size}, each size's stable recipe, {args.seconds:g} s each\n")
    print("| network | batch | images/s | G parameters | D parameters |\n|---|---|---|---|---|")
    for arch, size, label in runs:
        recipe = resolve_recipe("stable", arch)
        cfg = TrainConfig(arch=arch, channels=args.channels, image_size=args.image_size, **size,
                          **recipe.config_fields(False, {}))
        rate, g, d = images_per_second(cfg, args.seconds)
        print(f"| {label} | {cfg.batch_size} | {rate:.0f} | {g:,} | {d:,} |", flush=True)


if __name__ == "__main__":
    main()
