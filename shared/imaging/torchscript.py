"""Loading the store's TorchScript files, the same way for every reader (the trainer's figures, its
evaluation, the service), so that they all compute the same pixels."""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings
from pathlib import Path
from typing import Iterator

import torch

log = logging.getLogger("latentlab.torchscript")


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """The store's format is TorchScript, whatever torch's deprecation warnings say: users should not
    see a wall of them on every load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        yield


@functools.cache
def available() -> bool:
    """Whether this torch still saves and loads TorchScript. PyTorch is retiring it: where it refuses, every
    reader uses a version's torch.export form instead and the trainer publishes without TorchScript."""
    try:
        with quiet_jit():
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.script(torch.nn.Identity()), buffer)
            buffer.seek(0)
            torch.jit.load(buffer)
        return True
    except Exception as e:  # whatever a torch without TorchScript raises
        log.warning("this torch cannot run TorchScript (%s: %s): the torch.export form of each version is used",
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return False


def channels_last_on_cpu(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """On the CPU, convolution weights laid out channels-last (NHWC), where oneDNN's (transposed) convolutions
    run 15-20% faster on batches; the maths is the same up to float rounding, and since every reader loads
    through here, their pixels agree exactly."""
    return module.to(memory_format=torch.channels_last) if torch.device(device).type == "cpu" else module


def load(path: str | Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """The module in eval mode on `device` (channels-last on the CPU)."""
    with quiet_jit():
        module = torch.jit.load(str(path), map_location=device)
    return channels_last_on_cpu(module.eval(), device)
