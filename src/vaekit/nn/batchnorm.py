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


class GlobalBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the global batch, every rank's images
    together (`train.sync_batchnorm` under torchrun): one differentiable all-reduce of the per-channel
    sums, squared sums and counts, so that W ranks of B/W images normalise, learn and keep running
    statistics as one process of B would. torch's SyncBatchNorm does this on GPUs only; this works on
    gloo too. Outside a process group, or in eval mode, it is the usual BatchNorm1d / BatchNorm2d."""

    def _check_input_dim(self, x):
        if x.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected a 2-5 dimensional input, got {x.dim()} dimensions")

    def forward(self, x):
        import torch
        import torch.distributed as dist

        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = torch.full((1,), x.numel() // c, dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # its backward all-reduces too
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def globalise_batch_norm(module: nn.Module) -> int:
    """Replace every BatchNorm1d / 2d / 3d of `module` by a GlobalBatchNorm with the same parameters and
    running statistics (the same names, so checkpoints do not change); return how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
            count += 1
        else:
            count += globalise_batch_norm(child)
    return count
