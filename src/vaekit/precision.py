"""Mixed precision: the networks may run in bfloat16, the maths never does.

`train.precision = "bf16"` runs the training forward pass under `torch.autocast`, which lowers only
matrix products and convolutions (the networks) to bfloat16. Every objective — likelihoods, the
Gaussian posterior and its KL, the beta-TCVAE estimators, image and GAN losses — passes its inputs
through `full_precision` first, so densities, sums over pixels and the optimised totals are computed
in float32 whatever the networks emitted. Evaluation and sampling always run in float32.

On CPUs with AMX or AVX-512 BF16 (Intel Sapphire Rapids and later) a training step of the dSprites
MLP VAE is about 2.4x faster, of the conv VAE on Fashion-MNIST about 1.9x
(benchmarks/results/training_speed.md); on CPUs without them bf16 is emulated and slower.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16")
_LOW = (torch.bfloat16, torch.float16)


def full_precision(t: Tensor) -> Tensor:
    """t in float32 if it is a half-precision float tensor; otherwise unchanged (float64 stays float64)."""
    return t.float() if t.dtype in _LOW else t


def autocast(device: torch.device, precision: str):
    """The context the training forward pass runs in: autocast to bfloat16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision='bf16' needs a GPU with bfloat16 support (Ampere or later); use fp32")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
