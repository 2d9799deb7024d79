"""Device selection shared by the trainer (--device) and the service (DEVICE)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"


class DeviceError(UserError, ValueError):
    """The device asked for does not exist here."""


def resolve_device(spec: str) -> "torch.device":
    """'auto' -> cuda if available else cpu; 'cuda[:N]' must exist. Raises DeviceError with the fix."""
    import torch

    if not re.fullmatch(DEVICE_PATTERN, spec or ""):
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, not {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but no CUDA GPU is available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device
