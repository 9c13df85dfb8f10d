"""Instance scores: AP at IoU 0.5:0.95 (DSB 2018 / StarDist), F1 and the Cell Tracking Challenge's SEG."""

from __future__ import annotations

import dataclasses

import numpy as np

# --------------------------------------------------------------------------- instance scores

AP_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())  # IoU 0.5, 0.55, ..., 0.95


@dataclasses.dataclass
class InstanceCounts:
    """Additive instance-matching counts of one image or, added up, of a stack."""

    true_positives: np.ndarray  # matches with IoU > t for each t in AP_THRESHOLDS
    n_pred: int
    n_gt: int
    seg_sum: float  # sum over ground-truth objects of the SEG Jaccard (0 when unmatched)

    def __add__(self, other: InstanceCounts) -> InstanceCounts:
        return InstanceCounts(
            self.true_positives + other.true_positives,
            self.n_pred + other.n_pred,
            self.n_gt + other.n_gt,
            self.seg_sum + other.seg_sum,
        )

    def summarize(self) -> dict:
        """AP per threshold (TP / (TP + FP + FN)), its mean, F1/precision/recall at 0.5, and SEG."""
        tp = self.true_positives.astype(np.float64)
        fp, fn = self.n_pred - tp, self.n_gt - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
            f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
        return {
            "ap": float(ap.mean()),
            "ap_50": float(ap[0]),
            "ap_75": float(ap[AP_THRESHOLDS.index(0.75)]),
            "f1_50": float(f1[0]),
            "precision_50": float(tp[0] / self.n_pred) if self.n_pred else float("nan"),
            "recall_50": float(tp[0] / self.n_gt) if self.n_gt else float("nan"),
            "seg": float(self.seg_sum / self.n_gt) if self.n_gt else float("nan"),
            "n_pred_objects": self.n_pred,
            "n_gt_objects": self.n_gt,
        }


def instance_counts(pred_labels: np.ndarray, gt_labels: np.ndarray) -> InstanceCounts:
    """Match predicted to ground-truth objects (label images, 0 = background) by IoU.

    A pair matches at IoU threshold t when IoU > t; for t >= 0.5 an object can
    match at most one other, so the matching is unique without Hungarian
    assignment. AP at t is TP / (TP + FP + FN), the Data Science Bowl 2018 /
    StarDist convention (not COCO's area under the precision-recall curve).
    SEG (Cell Tracking Challenge): each ground-truth object's Jaccard index
    with the predicted object covering more than half of it, 0 if none; the
    mean over ground-truth objects.
    """
    pred_labels, gt_labels = np.asarray(pred_labels), np.asarray(gt_labels)
    if pred_labels.shape != gt_labels.shape:
        raise ValueError(f"label images differ in shape: {pred_labels.shape} vs {gt_labels.shape}")
    pred_ids, pred_flat = np.unique(pred_labels, return_inverse=True)  # compact ids: 0 stays 0
    gt_ids, gt_flat = np.unique(gt_labels, return_inverse=True)
    pred_flat, gt_flat = pred_flat.ravel() + (pred_ids[0] != 0), gt_flat.ravel() + (gt_ids[0] != 0)
    pred_sizes, gt_sizes = np.bincount(pred_flat), np.bincount(gt_flat)
    both = (pred_flat > 0) & (gt_flat > 0)
    codes = gt_flat[both].astype(np.int64) * pred_sizes.size + pred_flat[both]
    pairs, overlap = np.unique(codes, return_counts=True)
    gt_of, pred_of = pairs // pred_sizes.size, pairs % pred_sizes.size
    iou = overlap / (gt_sizes[gt_of] + pred_sizes[pred_of] - overlap)
    covering = overlap > 0.5 * gt_sizes[gt_of]
    return InstanceCounts(
        true_positives=np.array([np.count_nonzero(iou > t) for t in AP_THRESHOLDS]),
        n_pred=int(np.count_nonzero(pred_sizes[1:])),
        n_gt=int(np.count_nonzero(gt_sizes[1:])),
        seg_sum=float(iou[covering].sum()),
    )
