"""What a sweep's rows are: the study's coordinate sweeps, walks along semantic directions or towards classes, and a
conditional version's "style x class" grid, over base latents the request names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from service.engine.directions import Directions
from service.engine.registry import LoadedModel
from service.operations import given_classes
from service.operations.found_classes import find_class, semantics_of
from service.operations.rejections import MODEL_MISMATCH, Refused
from shared.imaging.latents import SweepMode
from shared.imaging.sampling import SweepLayout, class_layout, direction_sweep_layout, sweep_layout

Along = Literal["dims", "directions", "classes"]


@dataclass(frozen=True)
class Sweep:
    """The rows a request asks for: one group per entry of `targets` (coordinates, direction ranks, or classes by
    name or index, as `along` says), one row per value; `values_given` says whether the request chose the values (a
    conditional version's classes without them are drawn as each class, not walked towards)."""

    along: Along
    targets: Sequence[int | str]
    values: Sequence[float]
    values_given: bool = True
    mode: SweepMode = "set"
    labels: bool = True


def directions_of(model: LoadedModel) -> Directions:
    """The loaded version's semantic directions; refused for a generator without a first layer to find them in."""
    if model.directions is None:
        raise Refused(["directions"], f"{model.name} v{model.version} has no first Linear or ConvTranspose2d "
                                      "layer reading the latent, so no semantic directions", MODEL_MISMATCH)
    return model.directions


def sweep_of(model: LoadedModel, base: torch.Tensor, sweep: Sweep) -> SweepLayout:
    """The grid's latents (one column per row of `base`) and its row labels."""
    if sweep.along == "classes":
        return _class_sweep(model, base, sweep)
    directions = directions_of(model).vectors if sweep.along == "directions" else None
    limit = model.latent_dim if directions is None else len(directions)
    for i, d in enumerate(sweep.targets):
        if d >= limit:
            raise Refused([sweep.along, i], f"{sweep.along[:-1]} {d} is out of range: {model.name} has {limit}, "
                                            f"0..{limit - 1}", MODEL_MISMATCH)
    if directions is None:
        return sweep_layout(base, sweep.targets, sweep.values, sweep.mode, sweep.labels)
    return direction_sweep_layout(base, torch.from_numpy(directions[list(sweep.targets)]),
                                  [f"d[{i}]" for i in sweep.targets], sweep.values, sweep.mode, sweep.labels)


def _class_sweep(model: LoadedModel, base: torch.Tensor, sweep: Sweep) -> SweepLayout:
    """On a conditional version without values, the base styles drawn as each class (a label is given); otherwise
    rows moving towards each class along the direction its latent space holds (a conditional version's too, when
    values ask for a walk)."""
    field = "classes"
    if model.layout.conditional and not sweep.values_given:
        labels = [given_classes.label_of(model, ref, [field, i]) for i, ref in enumerate(sweep.targets)]
        return class_layout(model.layout.style_of(base), [i for i, _ in labels], [n for _, n in labels],
                            model.layout.classes, sweep.labels)
    semantics = semantics_of(model, [field])
    found = [find_class(semantics, ref, [field, i]) for i, ref in enumerate(sweep.targets)]
    return direction_sweep_layout(base, torch.tensor([c.direction for c in found]), [c.name for c in found],
                                  sweep.values, sweep.mode, sweep.labels)
