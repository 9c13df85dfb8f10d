"""Class metrics: confusion counts first (additive over images), then IoU, Dice, precision, recall, pixel error."""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred, target, n_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Counts (n_classes, n_classes), rows = true class, columns = predicted class.

    `pred` and `target` are class-id arrays or tensors of the same shape;
    target pixels equal to `ignore_index` are not counted.
    """
    pred = torch.as_tensor(pred).reshape(-1).long()
    target = torch.as_tensor(target).reshape(-1).long().to(pred.device)
    keep = (target >= 0) & (target < n_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    codes = target[keep] * n_classes + pred[keep].clamp(0, n_classes - 1)
    counts = torch.bincount(codes, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).cpu().numpy().astype(np.int64)


def class_scores(cm: np.ndarray) -> dict:
    """Per-class IoU, Dice, precision, recall (NaN for a class absent from both) and the means."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    total = cm.sum()
    return {
        "iou": iou,
        "dice": dice,
        "precision": precision,
        "recall": recall,
        "mean_iou": float(np.nanmean(iou)) if np.any(np.isfinite(iou)) else float("nan"),
        "mean_dice": float(np.nanmean(dice)) if np.any(np.isfinite(dice)) else float("nan"),
        "pixel_error": float(1 - tp.sum() / total) if total else float("nan"),
    }
