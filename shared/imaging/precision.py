"""The precision generators run in: fp32, or bf16 (bfloat16 matrix products, the output made fp32).

Everything that runs a network (the trainer's step, the service's engine, evaluation, class semantics, the
encoder, projection, the benchmarks) computes bf16 through `computing_in`: autocast, the weights kept fp32. The
service's runners settle it once per version (`autocast_maker`), and on the CPU hold a bf16 copy of the weights
instead where the generator runs so (`service.engine.runner`). What a user asked for is resolved through
`allowed_precisions`, so a precision means the same thing everywhere. `native_bf16` says whether a device has
bf16 arithmetic in hardware (CPU: AMX tiles or AVX512-BF16; CUDA: compute capability 8.0, Ampere, or later); where
it does not, bf16 is emulated and only slower, so `auto` never picks it there.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING, Callable, ContextManager

if TYPE_CHECKING:
    import torch

FP32, BF16, AUTO = "fp32", "bf16", "auto"
PRECISIONS = (FP32, BF16)  # what a forward can run in
CHOICES = (AUTO, *PRECISIONS)  # what a user can ask for
FORCE_NO_BF16 = "LATENTLAB_NO_NATIVE_BF16"  # set (to anything but "" or 0): act as a CPU without native bf16

# The pixel contract of bf16: against fp32 on the same latents, no grey level (0-255) differs by more than this,
# and the mean difference stays under this. Measured on 10,000 latents (benchmarks/precision_quality.py): a
# 5-epoch DCGAN at most 7 levels, 0.148 on average; a 40-epoch plain GAN 5 and 0.195; the bound leaves room
# for other trained versions (docs/precision-and-engine.md; enforced by tests/test_precision.py). fp32 is the
# trainer's pixels exactly.
BF16_MAX_GREY_DIFF = 12
BF16_MEAN_GREY_DIFF = 0.5


def within_bf16_bound(largest: int, mean: float) -> bool:
    """Whether two drawings of the same latents, differing by `largest` grey levels at most and `mean` on average,
    keep the pixel contract above: what the engine admits a runtime by, and what replicas' answers agree within."""
    return largest <= BF16_MAX_GREY_DIFF and mean < BF16_MEAN_GREY_DIFF


def cpu_bf16_features() -> list[str]:
    """The CPU's native bf16 features as torch sees them: amx_bf16 and/or avx512_bf16 (empty: none).

    torch.cpu.get_capabilities() is torch 2.12's; torch 2.11 has the private per-feature checks."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return [name for name in ("amx_bf16", "avx512_bf16") if found.get(name)]
    checks = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    return [name for name, check in checks.items() if getattr(torch.cpu, check, lambda: False)()]


def native_bf16(device: "torch.device") -> str | None:
    """What computes bf16 natively on `device` (e.g. 'amx_bf16', 'cuda sm_90'), or None where nothing does."""
    import torch

    if os.environ.get(FORCE_NO_BF16, "") not in ("", "0"):
        return None
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda sm_{major}{minor}" if major >= 8 else None
    if device.type == "cpu":
        features = cpu_bf16_features()
        return features[0] if features else None
    return None


def allowed_precisions(asked: str, device: "torch.device | str") -> tuple[str, ...]:
    """The precision rule: what asking for `asked` (one of CHOICES) allows on `device`, the one to prefer last.
    `auto` is fp32, and bf16 too (preferred) where the device computes it natively; fp32 and bf16 are what they say
    (bf16 where it is emulated: slower, never wrong)."""
    import torch

    if asked == AUTO:
        return (FP32, BF16) if native_bf16(torch.device(device)) else (FP32,)
    return (check_precision(asked),)


def resolve_precision(asked: str, device: "torch.device | str") -> str:
    """The one precision a run computes in when it does not measure: the preferred of what `asked` allows."""
    return allowed_precisions(asked, device)[-1]


def check_precision(precision: str, allowed: tuple[str, ...] = PRECISIONS) -> str:
    if precision not in allowed:
        raise ValueError(f"precision must be one of {', '.join(allowed)}, not {precision!r}")
    return precision


def autocast_maker(precision: str, device: "torch.device | str") -> Callable[[], ContextManager[None]]:
    """What makes the context forwards run in `precision`: bf16 autocast (outputs may come out bfloat16: callers
    take `.float()`), or nothing at all for fp32. The cast cache is off, as it must be inside a CUDA graph. For
    callers that settle the precision once and enter the context on every forward (the service's runners)."""
    import torch

    check_precision(precision)
    if precision == FP32:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)


def computing_in(precision: str, device: "torch.device | str") -> ContextManager[None]:
    """Run the forwards inside in `precision` (see `autocast_maker`)."""
    return autocast_maker(precision, device)()


def bf16_weights(module: "torch.nn.Module", width: int) -> "torch.nn.Module | None":
    """A copy of `module` whose weights are bfloat16, to be run on bfloat16 inputs of `width` without autocast
    (which casts every weight again on every call); `module` keeps its fp32 weights. None where the copy does not
    run (a graph that makes fp32 tensors of its own, as R3GAN's does: tried once here), so the caller keeps
    autocast."""
    import copy

    import torch

    held = copy.deepcopy(module)
    for tensor in (*held.parameters(), *held.buffers()):
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(torch.bfloat16)
    try:
        with torch.inference_mode():
            held(torch.zeros(2, width, dtype=torch.bfloat16))
    except RuntimeError:
        return None
    return held
