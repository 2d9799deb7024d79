"""Differentiable augmentation (DiffAugment, Zhao et al. 2020): the same random translation and cutout applied
to real and generated images before the discriminator sees them, in both players' losses. D cannot simply
memorise the real images, and G's gradients pass through the (differentiable) transforms.

Randomness comes from torch's generator on the images' device, which the training state saves: a resumed
run draws the same augmentations. No host synchronisation: the step stays capturable in a CUDA graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout")


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size in x and y, filling with zeros (mid-grey in [-1, 1]),
    as DiffAugment's reference code does."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy.unsqueeze(0) + ty + 1, 0, h + 1)
    gx = torch.clamp(gx.unsqueeze(0) + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # a border of zeros to read from when shifted out of the image
    return padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], gy, gx].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of `ratio` of the image's size at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    top, left = oy - ch // 2, ox - cw // 2  # the square may hang over the edge: only its inside part is cut
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (gy >= top) & (gy < top + ch) & (gx >= left) & (gx < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPERATIONS = {"translation": translation, "cutout": cutout}


@dataclass(frozen=True)
class DiffAugment:
    policies: tuple[str, ...]
    probability: float = 1.0  # each image is augmented with this probability (otherwise passed through)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.policies:
            out = OPERATIONS[name](out)
        if self.probability >= 1.0:
            return out
        keep = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.probability).to(x.dtype)
        return keep * out + (1 - keep) * x


def parse_policies(text: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' or 'none' -> ()."""
    names = tuple(p.strip() for p in text.split(",") if p.strip() and p.strip() != "none")
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    return names
