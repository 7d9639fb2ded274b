"""The batch every model's objective is given: images, their labels where the data has them, and the
side information a caller already drew for them."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Batch:
    x: Tensor  # (B, C, H, W) float in [0, 1]
    y: Tensor | None = None  # (B,) int64 labels, when the dataset has them (the model makes its side
    #                           information from x and these: `GenerativeModel.side_information`);
    #                           -1 where a partly labelled split dropped the label (data.labelled)
    side: Tensor | None = None  # side information already made for these images (an evaluation scores
    #                              every term of an image on one draw of a random kept part); None: the
    #                              model makes it
    memo: dict = field(default_factory=dict)  # scratch shared by the update phases of one iteration
