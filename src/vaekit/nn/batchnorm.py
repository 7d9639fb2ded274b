"""Batch norm on batches that its running statistics should not describe."""

from __future__ import annotations

import contextlib

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

_STATS = ("running_mean", "running_var", "num_batches_tracked")


@contextlib.contextmanager
def running_stats_frozen(module: nn.Module):
    """Inside, batch-norm layers of `module` in training mode still normalise with (and differentiate
    through) the batch's own statistics, but running_mean, running_var and num_batches_tracked come
    out as they went in. Eval mode normalises with the running statistics, so they should come from
    the data it is used on (real images), not from every batch the layer sees in training (IntroVAE's
    encoder also sees generated images).

    The layers update scratch copies, and the untouched originals are put back: writing the old values
    back in place would bump the version of a tensor the autograd graph saved and break backward."""
    layers = [m for m in module.modules()
              if isinstance(m, _BatchNorm) and m.training and m.track_running_stats and m.running_mean is not None]
    originals = [[getattr(m, name) for name in _STATS] for m in layers]
    for m, tensors in zip(layers, originals):
        for name, t in zip(_STATS, tensors):
            setattr(m, name, t.clone())
    try:
        yield module
    finally:
        for m, tensors in zip(layers, originals):
            for name, t in zip(_STATS, tensors):
                setattr(m, name, t)
