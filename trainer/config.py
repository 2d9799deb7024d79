"""A training run's settings as plain values: everything needed to reproduce it."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"


@dataclass
class TrainConfig:
    arch: str = "dcgan"
    name: str = ""  # store name; empty means the architecture's name
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    limit: int | None = None  # train on the first N images only
    device: str = "auto"

    def __post_init__(self) -> None:
        self.name = self.name or self.arch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def resolve_device(spec: str) -> "torch.device":
    """'auto' -> cuda if available else cpu; 'cuda[:N]' must exist."""
    import torch

    if not re.fullmatch(DEVICE_PATTERN, spec or ""):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but no CUDA GPU is available; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device
