"""Run a generator on latents and lay the result out: the one path behind the trainer's figures and
the service's /generate and /sweep."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from shared.imaging.grids import render_grid
from shared.imaging.latents import SweepMode, row_labels, sweep_along, sweep_labels, sweep_latents, with_classes


def generate(generator: torch.nn.Module, latents: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Images in [-1, 1], (N, C, H, W) on the CPU, from (N, D) latents."""
    with torch.inference_mode():
        return generator(latents.to(device=device, dtype=torch.float32)).float().cpu()


@dataclass(frozen=True)
class SweepLayout:
    """The study's sweep as a grid: one row per (dim, value), dim-major; one column per base latent."""

    latents: torch.Tensor  # (rows * nrow, latent_dim)
    nrow: int
    row_labels: list[str] | None


def sweep_layout(base: torch.Tensor, dims: Sequence[int], values: Sequence[float], mode: SweepMode = "set",
                 labels: bool = True) -> SweepLayout:
    return SweepLayout(sweep_latents(base, dims, values, mode), base.shape[0],
                       sweep_labels(dims, values, mode) if labels else None)


def direction_sweep_layout(base: torch.Tensor, directions: torch.Tensor, names: Sequence[str],
                           values: Sequence[float], mode: SweepMode = "set", labels: bool = True) -> SweepLayout:
    """The same grid along `directions` (K, D) unit vectors, each group of rows labelled by its name: 'd[0]=-3'
    for a semantic direction, 'Sneaker+=3' for a class's."""
    return SweepLayout(sweep_along(base, directions, values, mode), base.shape[0],
                       row_labels(names, values, mode) if labels else None)


def sample_image(generator: torch.nn.Module, latents: torch.Tensor, *, device: torch.device | str = "cpu",
                 nrow: int = 8, padding: int = 2, scale: int = 1) -> Image.Image:
    return render_grid(generate(generator, latents, device), nrow, padding, scale)


def sweep_image(generator: torch.nn.Module, base: torch.Tensor, dims: Sequence[int], values: Sequence[float], *,
                mode: SweepMode = "set", labels: bool = True, device: torch.device | str = "cpu",
                padding: int = 2, scale: int = 1) -> Image.Image:
    layout = sweep_layout(base, dims, values, mode, labels)
    images = generate(generator, layout.latents, device)
    return render_grid(images, nrow=layout.nrow, padding=padding, scale=scale, row_labels=layout.row_labels)


def class_layout(styles: torch.Tensor, classes: Sequence[int], names: Sequence[str], n_classes: int,
                 labels: bool = True) -> SweepLayout:
    """A conditional generator's "style x class" grid: one row per class of `classes`, one column per z of
    `styles` (B, style_dim): the same styles in every row, so a column is one style drawn as each class."""
    latents = torch.cat([with_classes(styles, c, n_classes) for c in classes])
    return SweepLayout(latents, styles.shape[0], list(names) if labels else None)
