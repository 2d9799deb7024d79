"""Paths between two latents. Gaussian latents live near a sphere of radius sqrt(latent_dim), so the
default walks the great circle between their directions (slerp) while the length changes linearly: every
point has a typical norm, unlike the straight line (lerp), whose middle is shorter than its ends."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from service.engine.registry import LoadedModel
from service.operations.generation import Source, latents_of
from service.operations.rejections import MODEL_MISMATCH, Refused
from shared.imaging.latents import LatentLayout

Method = Literal["slerp", "lerp"]
PARALLEL = 1e-6  # radians: closer than this, the directions are one and slerp is lerp


def interpolate(start: np.ndarray, end: np.ndarray, steps: int, method: Method = "slerp") -> np.ndarray:
    """(steps, D) float32 points from `start` to `end`, both included."""
    a, b = np.asarray(start, np.float64), np.asarray(end, np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "lerp":
        return ((1 - t) * a + t * b).astype(np.float32)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:  # the zero vector has no direction
        return ((1 - t) * a + t * b).astype(np.float32)
    ua, ub = a / na, b / nb
    angle = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    if angle < PARALLEL:
        direction = np.repeat(ua[None], steps, axis=0)
    else:
        if np.pi - angle < PARALLEL:  # antipodal: every great circle joins them; take a fixed one
            ub = _orthogonal(ua)
            angle = np.pi
            # walk half a turn through ub, the direction orthogonal to ua, ending at -ua
            direction = np.cos(t * angle) * ua + np.sin(t * angle) * ub
        else:
            direction = (np.sin((1 - t) * angle) * ua + np.sin(t * angle) * ub) / np.sin(angle)
    return (((1 - t) * na + t * nb) * direction).astype(np.float32)


def _orthogonal(u: np.ndarray) -> np.ndarray:
    """A unit vector orthogonal to unit `u`: the basis vector least aligned with it, minus its projection."""
    e = np.zeros_like(u)
    e[np.argmin(np.abs(u))] = 1.0
    w = e - (e @ u) * u
    return w / np.linalg.norm(w)


def interpolate_latents(layout: LatentLayout, start: torch.Tensor, end: torch.Tensor, steps: int,
                        method: Method = "slerp") -> torch.Tensor:
    """The path between two (1, width) latents of `layout`: z as `method` says, a conditional latent's class
    weights along the straight line (from one class to the other)."""
    a, b = start[0].numpy(), end[0].numpy()
    style = interpolate(a[:layout.style], b[:layout.style], steps, method)
    weights = interpolate(a[layout.style:], b[layout.style:], steps, "lerp")
    return torch.from_numpy(np.concatenate([style, weights], 1))


def path_between(model: LoadedModel, start: Source, end: Source, steps: int, method: Method = "slerp") -> torch.Tensor:
    """The path between the latents two sources name: each its last row (the `count`-th its seed draws), with a class
    only where the class is given (one found in a latent space is a set of latents, not one)."""
    ends = []
    for source in (start, end):
        if source.cls is not None and not model.layout.conditional:
            raise Refused(list(source.field), f"{model.name} v{model.version} is not class-conditional: give a latent "
                                              "(GET /models/{name}/classes/{class}/latents finds a class's)",
                          MODEL_MISMATCH)
        ends.append(latents_of(model, source).latents[-1:])
    return interpolate_latents(model.layout, *ends, steps, method)
