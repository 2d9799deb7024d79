"""How much work after training a run gets, when its flags do not say: scaled with the images it trains on (epochs
x images), between a floor that still gives a usable encoder, class directions and a first FID, and the counts
that keep long runs' quality (docs/results.md's projection and class measurements used them). At the
reference, a 5-epoch FashionMNIST run (300,000 images), and above it, the full counts; a one-epoch run on 2,048
images gets the floor, so a quick look costs about what it trains."""
from __future__ import annotations

import dataclasses

from trainer.training.config import TrainConfig

REFERENCE_IMAGES = 5 * 60_000
FULL = {"encoder_steps": 1000, "class_samples": 20_000, "eval_samples": 10_000}
FLOOR = {"encoder_steps": 100, "class_samples": 2_000, "eval_samples": 2_000}


def scaled(name: str, images_seen: int) -> int:
    full = FULL[name]
    return max(FLOOR[name], min(full, round(full * images_seen / REFERENCE_IMAGES)))


def with_budget(cfg: TrainConfig, num_images: int) -> TrainConfig:
    """`cfg` with every post-training count it leaves open (None) set for a run of `num_images` x epochs."""
    seen = num_images * cfg.epochs
    return dataclasses.replace(cfg, **{k: scaled(k, seen) for k in FULL if getattr(cfg, k) is None})
