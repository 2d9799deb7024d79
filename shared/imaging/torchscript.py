"""Loading TorchScript files quietly: the store's format is TorchScript, whatever torch's deprecation
warnings say, and users should not see a wall of them on every load."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import torch


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        yield


def load(path: str | Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    with quiet_jit():
        module = torch.jit.load(str(path), map_location=device)
    return module.eval()
