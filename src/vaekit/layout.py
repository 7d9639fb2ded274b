"""Memory layout of the convolutions: channels-last where it is measured faster.

`train.channels_last = "auto"` (the default) stores a convolutional model's weights channels-last on a
CPU, where oneDNN's channels-last convolutions and transposed convolutions beat the NCHW ones on the
toolkit's networks (benchmarks/results/speed.md), and leaves the layout alone on other devices and on
models without convolutions. PyTorch then runs every convolution channels-last and its outputs come
out channels-last; inputs are not converted (a 1-channel image is the same memory either way, and a
model that reads pixels directly, DRAW's attention, keeps the layout it was given). The numbers are
those of the NCHW model up to float rounding.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, _CONVOLUTIONS) for m in model.modules())


def resolve_channels_last(setting: bool | str, device: torch.device, model: nn.Module) -> bool:
    """`train.channels_last` itself, or what "auto" means for `model` on `device`."""
    if setting != "auto":
        return bool(setting)
    return device.type == "cpu" and has_convolutions(model)


@contextlib.contextmanager
def channels_last_while(model: nn.Module, device: torch.device):
    """Run the block with `model`'s convolutions channels-last where "auto" would choose it (evaluation,
    sampling), and give the model back in the layout it came in."""
    if not resolve_channels_last("auto", device, model) or _is_channels_last(model):
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the convolutions are stored channels-last (judged on a weight whose layouts differ: one with
    a single input channel or a 1x1 kernel is both at once)."""
    for m in model.modules():
        if isinstance(m, _CONVOLUTIONS) and m.weight.shape[1] > 1 and m.weight.shape[2:].numel() > 1:
            return m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
    return False
