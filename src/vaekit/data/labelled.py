"""Partly labelled training data for semi-supervised models (Kingma et al. 2014; the VAE/GAN survey's sec. 4.5:
"we retained only 1000 or 600 of the labels, with each label equally represented").

A partly labelled split is the same ImageDataset with label -1 (`UNLABELLED`) on every image whose
label was dropped; the test split keeps all of its labels.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import ConfigError

UNLABELLED = -1


def balanced_labelled_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Positions (sorted, int64) of `n` images whose labels are kept: n // k of every one of the k
    classes, the n mod k left over going to classes chosen at random; which images, by `seed` alone."""
    labels = torch.as_tensor(labels).long()
    classes = int(labels.max()) + 1 if len(labels) else 0
    present = torch.bincount(labels, minlength=classes)
    k = int((present > 0).sum())
    if n < k:
        raise ConfigError(f"data.labelled = {n} cannot keep every one of the {k} classes; set at least {k}")
    if n > len(labels):
        raise ConfigError(f"data.labelled = {n} exceeds the {len(labels)} training images")
    g = torch.Generator().manual_seed(seed)
    kinds = torch.nonzero(present > 0).flatten()
    per_class = torch.full((k,), n // k, dtype=torch.long)
    per_class[torch.randperm(k, generator=g)[: n % k]] += 1
    short = [(int(c), int(present[c]), int(m)) for c, m in zip(kinds, per_class) if m > present[c]]
    if short:
        c, have, want = short[0]
        raise ConfigError(f"data.labelled = {n} needs {want} images of class {c} to stay balanced, and the "
                          f"training split has {have}; set data.labelled to at most {have * k}")
    chosen = []
    for c, m in zip(kinds.tolist(), per_class.tolist()):
        members = torch.nonzero(labels == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=g)[:m]])
    return torch.sort(torch.cat(chosen)).values


def partly_labelled(data, keep: torch.Tensor):
    """`data` (a labelled split) with only the labels at positions `keep`; every other label is
    UNLABELLED."""
    if data.labels is None:
        raise ConfigError(f"data.labelled needs a dataset with class labels; {data.name} has none")
    labels = torch.full_like(data.labels, UNLABELLED)
    labels[keep] = data.labels[keep]
    return dataclasses.replace(data, labels=labels)


def labelled_positions(labels: torch.Tensor | None) -> torch.Tensor | None:
    """Positions of the labelled images of a partly labelled split; None when every image is labelled
    (or none is: an unlabelled dataset)."""
    if labels is None or not bool((labels == UNLABELLED).any()):
        return None
    return torch.nonzero(labels != UNLABELLED).flatten()
