"""Segmentation losses on logits (N, K, H, W) and class-id targets (N, H, W).

`ignore_index` pixels count in no loss. The weighted cross-entropy is the
paper's energy (eq. 1): a per-pixel weight map times the log-softmax of the
true class, averaged over the counted pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _valid(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    return torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    class_weights: torch.Tensor | None = None,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Mean over counted pixels of weight(x) * class_weight(true class) * -log p_true(x).

    Unlike `F.cross_entropy(weight=...)` this does not divide by the summed
    weights, so a border pixel with weight 10 counts ten times, as in the paper.
    """
    valid = _valid(target, ignore_index)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    loss = F.cross_entropy(logits.float(), safe_target, reduction="none")
    if class_weights is not None:
        loss = loss * class_weights.to(loss.device, loss.dtype)[safe_target]
    if weight is not None:
        loss = loss * weight
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int | None = None, smooth: float = 1.0
) -> torch.Tensor:
    """1 - mean over classes of the soft Dice (2|P.T| + s) / (|P| + |T| + s), over the whole batch.

    Classes absent from both prediction and target score ~1 thanks to `smooth`.
    """
    n_classes = logits.shape[1]
    valid = _valid(target, ignore_index).unsqueeze(1)
    probs = torch.softmax(logits.float(), dim=1) * valid
    safe_target = torch.where(valid[:, 0], target, torch.zeros_like(target))
    onehot = F.one_hot(safe_target, n_classes).permute(0, 3, 1, 2).to(probs.dtype) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * intersection + smooth) / (total + smooth)).mean()


def make_loss(name: str, *, class_weights: torch.Tensor | None = None, ignore_index: int | None = None) -> LossFn:
    """A loss `fn(logits, target, weight_map_or_None)` by name: "ce", "dice" or "ce+dice".

    `class_weights` apply to the cross-entropy when no weight map is given
    (a weight map already holds the class balance).
    """

    def ce(logits, target, weight):
        classes = class_weights if weight is None else None
        return weighted_cross_entropy(logits, target, weight, class_weights=classes, ignore_index=ignore_index)

    def dice(logits, target, weight):
        return soft_dice_loss(logits, target, ignore_index=ignore_index)

    losses = {"ce": ce, "dice": dice, "ce+dice": lambda *a: ce(*a) + dice(*a)}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(losses)}")
    return losses[name]
