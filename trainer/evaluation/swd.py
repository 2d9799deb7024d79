"""The sliced Wasserstein distance between two image sets on Laplacian-pyramid patches (Karras et al. 2018, the
measure of Progressive GAN): a quality number for any dataset, with no feature network to download.

Each image is split into a Laplacian pyramid (band-pass levels from full size down to 16 pixels, and the low-pass
rest); from every level, random 7x7 neighbourhoods are taken from each image, normalised per colour channel over
the set, and the two sets' neighbourhood distributions are compared by the sliced Wasserstein distance (the
mean, over random unit directions, of the 1-D Wasserstein distance of the projections: sorted values against
sorted values). Low levels say whether the overall shapes and colours match, high ones whether the fine detail
does. Reported x 1,000 per level and averaged, as in the paper; lower is better, and two halves of one dataset
give the floor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH = 7  # neighbourhood side
PATCHES_PER_IMAGE = 16  # 160,000 a level for 10,000 images: sorting them is most of the cost
DIRECTIONS, REPEATS = 128, 4  # random projections per repeat; the result is the mean over repeats
SMALLEST_LEVEL = 16  # pixels: levels go from the image's size down to this one (and no further than 8 for 28)
SEED = 0  # patches and directions are drawn from fixed seeds: the same images give the same number
CHUNK = 1000  # images turned into pyramids at once

_KERNEL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # the binomial filter of Burt & Adelson's pyramid


def _blur(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = _KERNEL.to(x)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), k.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """`levels` images per input, full size first: band-pass differences, then the low-pass rest."""
    pyramid = []
    for _ in range(levels - 1):
        small = F.avg_pool2d(_blur(x), 2)  # blur, then halve
        up = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
        pyramid.append(x - up)
        x = small
    return pyramid + [x]


def level_sizes(size: int) -> list[int]:
    """The pyramid's sides for images of `size`: 32 -> [32, 16], 64 -> [64, 32, 16], 28 -> [28, 14]."""
    sizes = [size]
    while sizes[-1] // 2 >= min(SMALLEST_LEVEL, size // 2) and sizes[-1] // 2 >= PATCH + 1:
        sizes.append(sizes[-1] // 2)
    return sizes


def descriptors(images: torch.Tensor, patches_per_image: int = PATCHES_PER_IMAGE,
                seed: int = SEED) -> list[torch.Tensor]:
    """Per pyramid level, (N x patches_per_image, C x 7 x 7) neighbourhoods of uint8 or [-1, 1] images (N, C, S, S),
    each level normalised per channel to mean 0 and std 1 over the set."""
    generator = torch.Generator().manual_seed(seed)
    sizes = level_sizes(images.shape[-1])
    per_level: list[list[torch.Tensor]] = [[] for _ in sizes]
    for start in range(0, len(images), CHUNK):
        x = images[start:start + CHUNK].float()
        if images.dtype == torch.uint8:
            x = x / 127.5 - 1
        for level, band in enumerate(laplacian_pyramid(x, len(sizes))):
            n, c, h, w = band.shape
            ys = torch.randint(0, h - PATCH + 1, (n, patches_per_image), generator=generator)
            xs = torch.randint(0, w - PATCH + 1, (n, patches_per_image), generator=generator)
            offsets = torch.arange(PATCH)
            rows = (ys[..., None] + offsets).view(n, patches_per_image, PATCH, 1)
            cols = (xs[..., None] + offsets).view(n, patches_per_image, 1, PATCH)
            batch = torch.arange(n).view(n, 1, 1, 1)
            patches = band.permute(0, 2, 3, 1)[batch, rows, cols]  # (n, patches, 7, 7, c)
            per_level[level].append(patches.permute(0, 1, 4, 2, 3).reshape(n * patches_per_image, c, PATCH, PATCH))
    out = []
    for parts in per_level:
        d = torch.cat(parts)
        d = (d - d.mean((0, 2, 3), keepdim=True)) / d.std((0, 2, 3), keepdim=True).clamp(min=1e-8)
        out.append(d.flatten(1))
    return out


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, seed: int = SEED) -> float:
    """Mean over REPEATS x DIRECTIONS random unit directions of the mean |sorted(a.d) - sorted(b.d)| (N, D) sets,
    the larger set subsampled to the smaller's size."""
    n = min(len(a), len(b))
    generator = torch.Generator().manual_seed(seed)
    a = a[torch.randperm(len(a), generator=generator)[:n]]
    b = b[torch.randperm(len(b), generator=generator)[:n]]
    distances = []
    for _ in range(REPEATS):
        directions = torch.randn(a.shape[1], DIRECTIONS, generator=generator)
        directions /= directions.norm(dim=0, keepdim=True)
        projected_a, _ = (a @ directions).T.contiguous().sort(1)  # along rows: faster than down columns
        projected_b, _ = (b @ directions).T.contiguous().sort(1)
        distances.append((projected_a - projected_b).abs().mean())
    return float(torch.stack(distances).mean())


def swd(real: torch.Tensor | list[torch.Tensor], fake: torch.Tensor) -> dict:
    """SWD x 1,000 of `fake` images against `real` ones (images (N, C, S, S), uint8 or [-1, 1]; or `real`'s
    descriptors, computed once for many comparisons): per level (keyed by its side in pixels) and averaged."""
    real_d = descriptors(real) if isinstance(real, torch.Tensor) else real
    fake_d = descriptors(fake)
    per_level = {str(size): 1e3 * sliced_wasserstein(r, f)
                 for size, r, f in zip(level_sizes(fake.shape[-1]), real_d, fake_d)}
    return {"swd": sum(per_level.values()) / len(per_level), "swd_levels": per_level}
