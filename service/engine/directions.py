"""Semantic directions in closed form (SeFa, Shen & Zhou 2021): the latent directions the generator's first
layer stretches most. With the first layer's weight A as a map from the latent (y = A z), they are the
eigenvectors of AᵀA, by decreasing eigenvalue. Found on the loaded module itself (either form torch runs): its first Linear
or ConvTranspose2d taking the latent, with a BatchNorm's scale folded in when one follows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Directions:
    vectors: np.ndarray  # (style, latent_dim) float32: row i is direction i, unit length (style: latent_dim, or a
    #                     conditional generator's z)
    eigenvalues: np.ndarray  # (latent_dim,) float64, descending
    layer: str  # the module they come from, e.g. "main.0 (ConvTranspose2d)"


def first_layer_map(module: torch.nn.Module, latent_dim: int) -> tuple[np.ndarray, str] | None:
    """A (out, latent_dim) of the first layer that reads the latent, normalisation folded in; None if none."""
    leaves = [(name, m) for name, m in module.named_modules() if not list(m.children())]
    for i, (name, m) in enumerate(leaves):
        kind = _kind(m)
        weight = getattr(m, "weight", None)
        if kind == "Linear" and weight is not None and weight.shape[1] == latent_dim:
            a = weight.detach().double().cpu().numpy()  # (out, in)
            channels = np.arange(a.shape[0])
        elif kind == "ConvTranspose2d" and weight is not None and weight.shape[0] == latent_dim:
            w = weight.detach().double().cpu().numpy()  # (in, out, kh, kw)
            a = w.reshape(latent_dim, -1).T  # (out*kh*kw, in)
            channels = np.repeat(np.arange(w.shape[1]), w.shape[2] * w.shape[3])
        else:
            continue
        if i + 1 < len(leaves):
            a = a * _batchnorm_scale(leaves[i + 1][1], channels)
        return a, f"{name} ({kind})"
    return None


def _kind(m: torch.nn.Module) -> str:
    """A layer's class: TorchScript keeps its name; a torch.export program keeps only its weights, which tell."""
    kind = getattr(m, "original_name", type(m).__name__)
    if kind != "Module":
        return kind
    weight = getattr(m, "weight", None)
    if hasattr(m, "running_var"):
        return "BatchNorm"
    return {2: "Linear", 4: "ConvTranspose2d"}.get(weight.dim() if weight is not None else 0, kind)


def _batchnorm_scale(m: torch.nn.Module, channels: np.ndarray) -> np.ndarray | float:
    """gamma / sqrt(var + eps) per output row, if `m` is a BatchNorm; 1 otherwise."""
    if not _kind(m).startswith("BatchNorm") or len(m.running_var) <= channels.max():
        return 1.0  # (a Linear whose rows are reshaped into channels: not this BatchNorm's rows)
    var = m.running_var.detach().double().cpu().numpy()
    gamma = m.weight.detach().double().cpu().numpy() if m.weight is not None else np.ones_like(var)
    eps = float(getattr(m, "eps", 1e-5))
    return (gamma / np.sqrt(var + eps))[channels][:, None]


def semantic_directions(module: torch.nn.Module, latent_dim: int, classes: int = 0) -> Directions | None:
    """The directions of `module`'s latents; a conditional generator's (its last `classes` inputs one weight per
    class) in z alone, the class held fixed: their class weights are 0."""
    found = first_layer_map(module, latent_dim)
    if found is None:
        return None
    a, layer = found
    a = a[:, :latent_dim - classes]
    eigenvalues, eigenvectors = np.linalg.eigh(a.T @ a)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    vectors = np.zeros((latent_dim - classes, latent_dim), dtype=np.float32)
    vectors[:, :latent_dim - classes] = eigenvectors[:, order].T
    return Directions(vectors, eigenvalues[order], layer)
