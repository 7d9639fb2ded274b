"""The supervised-only baseline of a semi-supervised model: the same q(y|x) network (trunk and
classifier head) trained by cross-entropy on the labelled images alone, the same number of labelled
images per step and the same steps, so that every semi-supervised error has its comparison."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.labelled import labelled_positions
from ..progress import TaskProgress
from .trainer import EpochSampler


def classifier_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters of q(y|x): the trunk and the classifier head of a semi-supervised model."""
    return [*model.nets.trunk.parameters(), *model.nets.classifier.parameters()]


def train_supervised_baseline(model, data, *, steps: int, batch_size: int, lr: float = 1e-3, seed: int = 0,
                              progress: bool = False):
    """Train `model`'s q(y|x) on the labelled images of `data` (a partly labelled split, or a labelled
    one) with Adam; return the model (its generative networks untouched), in eval mode."""
    positions = labelled_positions(data.labels)
    if positions is None:
        positions = torch.arange(len(data))
    sampler = EpochSampler(len(positions), min(batch_size, len(positions)), seed)
    params = classifier_parameters(model)
    optimiser = torch.optim.Adam(params, lr=lr)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    model.train()
    with TaskProgress("supervised-only baseline", steps, "steps", enabled=progress) as shown:
        for step in range(steps):
            idx = positions[sampler.indices(step)]
            x, y = data.batch(idx).to(device), data.labels[idx].to(device)
            loss = F.cross_entropy(model.nets.logits(model.nets.trunk(x)), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            optimiser.step()
            shown.advance()
    return model.eval()
