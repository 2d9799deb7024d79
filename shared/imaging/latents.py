"""Latent vectors: what a generator's input holds (`LatentLayout`), drawn from a seed, and swept one coordinate at
a time (the study's experiment)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

import numpy as np
import torch

STUDY_SWEEP_DIMS = (5, 25, 45, 65, 85)  # 0-based, as in the seed's figure
STUDY_SWEEP_VALUES = (-3.0, 0.0, 3.0)

SweepMode = Literal["set", "add"]


CLASS_STREAM = 1  # a conditional latent's class comes from its own stream of the seed: z stays the seed's z


def seeded_latents(seed: int, count: int, latent_dim: int, classes: int = 0) -> torch.Tensor:
    """`count` N(0, 1) latents from `seed`, float32 on the CPU.

    Drawn by NumPy's PCG64 on the CPU, element after element: a seed gives the same latents on every
    machine and device, and asking for more images keeps the first ones (torch's CPU randn fills in
    vectorised chunks, so its first rows change with the count). Move the result to the model's device.

    With `classes` (a conditional generator's input: z then one weight per class), the last `classes` of the
    `latent_dim` columns are the one-hot of a class drawn uniformly from the seed's second stream, and z is
    the same as an unconditional model's for the seed.
    """
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.standard_normal((count, latent_dim - classes), dtype=np.float32))
    if not classes:
        return z
    labels = np.random.default_rng([seed, CLASS_STREAM]).integers(0, classes, count)
    return with_classes(z, torch.from_numpy(labels), classes)


def with_classes(z: torch.Tensor, labels: torch.Tensor | int, classes: int) -> torch.Tensor:
    """A conditional generator's input: each z (N, style) followed by the one-hot of its label (or of one label
    for all)."""
    labels = torch.as_tensor(labels, dtype=torch.long, device=z.device).expand(z.shape[0])
    return torch.cat([z, torch.nn.functional.one_hot(labels, classes).to(z.dtype)], 1)


class DescribesInput(Protocol):
    """What a manifest says of its generator's input (shared.store.Manifest)."""

    latent_dim: int
    input_classes: int


@dataclass(frozen=True)
class LatentLayout:
    """A generator's input vector: `style` numbers of z, then, when the generator is class-conditional, one weight
    per class (a one-hot for one class; any weights over the classes work). Whether a version is conditional is
    decided here: every reader draws, truncates, relabels and splits its latents through its layout, and an
    unconditional layout (classes 0) does each of those to z alone."""

    style: int
    classes: int = 0

    @classmethod
    def of(cls, manifest: DescribesInput) -> "LatentLayout":
        return cls(manifest.latent_dim - manifest.input_classes, manifest.input_classes)

    @property
    def width(self) -> int:
        """The generator's input width: what the store calls `latent_dim`."""
        return self.style + self.classes

    @property
    def conditional(self) -> bool:
        return self.classes > 0

    def seeded(self, seed: int, count: int) -> torch.Tensor:
        """`count` latents of `seed` (`seeded_latents`): a conditional layout's classes drawn from the seed too."""
        return seeded_latents(seed, count, self.width, self.classes)

    def random(self, count: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """`count` latents from torch's RNG (training's draws): N(0, 1) z, and a uniformly drawn class."""
        z = torch.randn(count, self.style, device=device, generator=generator)
        if not self.conditional:
            return z
        return self.labelled(z, torch.randint(self.classes, (count,), device=device, generator=generator))

    def labelled(self, z: torch.Tensor, labels: torch.Tensor | int | None) -> torch.Tensor:
        """Full latents from styles (N, style) and their classes (ignored by an unconditional layout)."""
        return with_classes(z, labels, self.classes) if self.conditional else z

    def style_of(self, latents: torch.Tensor) -> torch.Tensor:
        return latents[:, :self.style]

    def class_weights(self, latents: torch.Tensor) -> torch.Tensor:
        """The class part of latents: (N, classes), empty for an unconditional layout."""
        return latents[:, self.style:]

    def truncated(self, latents: torch.Tensor, psi: float | None, center: torch.Tensor | None = None) -> torch.Tensor:
        """StyleGAN's truncation in z: center + psi * (z - center) (the prior's mean, 0, unless a `center` is
        given); psi 1 (or None) leaves the latents as they are. Only the style moves: a class stays its class."""
        if psi is None or psi == 1:
            return latents
        style = self.style_of(latents)
        if center is None:
            pulled = style * psi
        else:
            center = center[..., :self.style]
            pulled = center + psi * (style - center)
        return torch.cat([pulled, self.class_weights(latents)], 1)


def sweep_latents(
    base: torch.Tensor,
    dims: Sequence[int],
    values: Sequence[float],
    mode: SweepMode = "set",
) -> torch.Tensor:
    """Rows of `base` with one coordinate changed: dim-major, then value, then base latent.

    Result shape `(len(dims) * len(values) * B, D)`; laid out with `nrow=B`, each grid row is one
    (dim, value) pair applied to every base latent, as in the seed's figure.
    """
    if base.ndim != 2:
        raise ValueError(f"base latents must be (B, D), got shape {tuple(base.shape)}")
    b, d = base.shape
    dims_t = torch.as_tensor(list(dims), dtype=torch.long, device=base.device)
    vals_t = torch.as_tensor(list(values), dtype=base.dtype, device=base.device)
    if dims_t.numel() == 0 or vals_t.numel() == 0:
        raise ValueError("dims and values must not be empty")
    if int(dims_t.min()) < 0 or int(dims_t.max()) >= d:
        raise ValueError(f"dims must lie in [0, {d - 1}]")
    n_dims, n_vals = dims_t.numel(), vals_t.numel()
    out = base.expand(n_dims, n_vals, b, d).clone()  # (dims, values, B, D)
    index = dims_t.view(n_dims, 1, 1, 1).expand(n_dims, n_vals, b, 1)
    new = vals_t.view(1, n_vals, 1, 1).expand(n_dims, n_vals, b, 1)
    if mode == "add":
        new = out.gather(3, index) + new
    elif mode != "set":
        raise ValueError(f"mode must be 'set' or 'add', not {mode!r}")
    out.scatter_(3, index, new)
    return out.reshape(n_dims * n_vals * b, d)


def sweep_along(base: torch.Tensor, directions: torch.Tensor, values: Sequence[float],
                mode: SweepMode = "set") -> torch.Tensor:
    """`sweep_latents` along unit vectors instead of coordinates: row order as there. `set` moves each base
    latent along direction u until its projection on u is the value (z + (v - z.u) u); `add` moves it by
    the value (z + v u). For u a basis vector e_d, these are setting and offsetting coordinate d."""
    b, d = base.shape
    k, vals = directions.shape[0], torch.as_tensor(list(values), dtype=base.dtype)
    u = directions.to(base.dtype).view(k, 1, 1, d)
    step = vals.view(1, -1, 1, 1).expand(k, len(vals), b, 1)
    if mode == "set":
        step = step - (base.view(1, 1, b, d) * u).sum(-1, keepdim=True)
    elif mode != "add":
        raise ValueError(f"mode must be 'set' or 'add', not {mode!r}")
    return (base.view(1, 1, b, d) + step * u).reshape(k * len(vals) * b, d)


def sweep_labels(dims: Sequence[int], values: Sequence[float], mode: SweepMode = "set", prefix: str = "z") -> list[str]:
    """One label per sweep row, e.g. 'z[5]=-3' (or 'z[5]+=3' when adding; 'd[0]=2' for directions)."""
    return row_labels([f"{prefix}[{d}]" for d in dims], values, mode)


def row_labels(names: Sequence[str], values: Sequence[float], mode: SweepMode = "set") -> list[str]:
    """One label per sweep row of named groups, e.g. 'Sneaker+=3'."""
    op = "=" if mode == "set" else "+="
    return [f"{name}{op}{_fmt(v)}" for name in names for v in values]


def _fmt(value: float) -> str:
    return f"{value:g}"
