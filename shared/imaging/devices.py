"""Device selection shared by the trainer (--device) and the service (DEVICE)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"


def resolve_device(spec: str) -> "torch.device":
    """'auto' -> cuda if available else cpu; 'cuda[:N]' must exist. Raises ValueError with the fix."""
    import torch

    if not re.fullmatch(DEVICE_PATTERN, spec or ""):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but no CUDA GPU is available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device
