"""Run a generator on latents and render the result: the one path behind the trainer's figures and
the service's /generate and /sweep."""
from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from shared.imaging.grids import render_grid
from shared.imaging.latents import SweepMode, sweep_labels, sweep_latents


def generate(generator: torch.nn.Module, latents: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Images in [-1, 1], (N, C, H, W) on the CPU, from (N, D) latents."""
    with torch.inference_mode():
        return generator(latents.to(device=device, dtype=torch.float32)).float().cpu()


def sample_image(generator: torch.nn.Module, latents: torch.Tensor, *, device: torch.device | str = "cpu",
                 nrow: int = 8, padding: int = 2, scale: int = 1) -> Image.Image:
    return render_grid(generate(generator, latents, device), nrow, padding, scale)


def sweep_image(generator: torch.nn.Module, base: torch.Tensor, dims: Sequence[int], values: Sequence[float], *,
                mode: SweepMode = "set", labels: bool = True, device: torch.device | str = "cpu",
                padding: int = 2, scale: int = 1) -> Image.Image:
    """The seed's sweep: one row per (dim, value), dim-major; one column per base latent."""
    images = generate(generator, sweep_latents(base, dims, values, mode), device)
    row_labels = sweep_labels(dims, values, mode) if labels else None
    return render_grid(images, nrow=base.shape[0], padding=padding, scale=scale, row_labels=row_labels)
