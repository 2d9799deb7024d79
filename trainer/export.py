"""TorchScript export, checked: the saved file is reloaded and must reproduce the eager model."""
from __future__ import annotations

import copy
import io
from pathlib import Path

import torch
from torch import nn

from shared.errors import UserError
from shared.imaging import torchscript

TOLERANCE = 1e-5  # relative to the output's largest magnitude (at least 1): a D sure of itself has logits in
#                   the tens, and reordered float sums differ in the last bits of each


class ExportError(UserError):
    pass


Inputs = torch.Tensor | tuple[torch.Tensor, ...]  # a module's one input, or its several (a conditional D: images, classes)


def export_torchscript(model: nn.Module, example: Inputs, path: Path, check: Inputs | None = None) -> float:
    """Trace `model` in eval mode on the CPU, save it to `path`, reload it and compare on `check`.

    Returns the max abs difference; raises ExportError above TOLERANCE x max(1, the largest output) (the file is
    then removed).
    """
    eager = copy.deepcopy(model).cpu().eval()
    example = _on_cpu(example)
    check = example if check is None else _on_cpu(check)
    with torch.no_grad(), torchscript.quiet_jit():
        traced = torch.jit.trace(eager, example)
        # through memory: torch.jit.save straight to a file aborts the whole process when the disk is full,
        # while a Python write raises an OSError the store reports in one line
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        Path(path).write_bytes(buffer.getbuffer())
        reloaded = torchscript.load(path)
        expected = eager(*check)
        diff = (reloaded(*check) - expected).abs().max().item()
        bound = TOLERANCE * max(1.0, expected.abs().max().item())
    if not diff <= bound:  # also catches NaN
        Path(path).unlink(missing_ok=True)
        raise ExportError(f"TorchScript export of {type(model).__name__} differs from the eager model by {diff:g} "
                          f"(more than {bound:g})")
    return diff


def _on_cpu(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    return tuple(x.cpu() for x in (inputs if isinstance(inputs, tuple) else (inputs,)))
