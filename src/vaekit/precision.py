"""Mixed precision: the networks may run in bfloat16, the maths never does.

`train.precision = "auto"` (the default) is bf16 where the device has bfloat16 matrix instructions —
a CUDA GPU of compute capability 8.0 or later, an x86 CPU with AMX-BF16 or AVX512-BF16, an Arm CPU
with the BF16 extension — and fp32 elsewhere, where bf16 would be emulated and slower
(`resolve_precision`). `train.precision = "bf16"` runs the training forward pass under `torch.autocast`, which lowers only
matrix products and convolutions (the networks) to bfloat16. Every objective — likelihoods, the
Gaussian posterior and its KL, the beta-TCVAE estimators, image and GAN losses — passes its inputs
through `full_precision` first, so densities, sums over pixels and the optimised totals are computed
in float32 whatever the networks emitted. Evaluation and sampling always run in float32.

The measured speed-ups, and how closely a bf16 run follows the fp32 run of the same seed, are in
benchmarks/results/speed.md and precision.md.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
_CPU_BF16_FLAGS = {"amx_bf16", "avx512_bf16"}  # x86 /proc/cpuinfo "flags"; Arm's "Features" say "bf16"
_LOW = (torch.bfloat16, torch.float16)


def full_precision(t: Tensor) -> Tensor:
    """t in float32 if it is a half-precision float tensor; otherwise unchanged (float64 stays float64)."""
    return t.float() if t.dtype in _LOW else t


def cpu_has_bf16_matrix_units(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (read from /proc/cpuinfo; False where it
    cannot be read, e.g. on macOS, so that auto stays fp32 there)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    words = set(value.split())
                    return bool(words & _CPU_BF16_FLAGS) or "bf16" in words
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16": `precision` itself, or what "auto" means on `device`."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return "bf16" if torch.cuda.get_device_capability(index)[0] >= 8 else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16_matrix_units() else "fp32"
    return "fp32"  # mps: autocast to bfloat16 is not what its kernels are fast at


def autocast(device: torch.device, precision: str):
    """The context the training forward pass runs in: autocast to bfloat16, or nothing for fp32."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision='bf16' needs a GPU with bfloat16 support (Ampere or later); use fp32")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
