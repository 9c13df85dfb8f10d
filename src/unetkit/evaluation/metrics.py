"""Segmentation metrics: confusion counts first, then thin metric functions.

- class metrics: `confusion_matrix` -> `class_scores` (IoU, Dice, precision,
  recall, pixel error; `ignore_index` honoured);
- the ISBI 2012 EM challenge's errors (pixel, Rand, information, warping),
  with its threshold sweep: `threshold_sweep` -> `SweepCounts.summarize`, or
  one number at a time with `rand_error`, `info_error`, `warping_error`,
  `pixel_error`;
- instance scores: `instance_counts` -> `InstanceCounts.summarize` (AP at IoU
  0.5:0.95, F1, Cell Tracking Challenge SEG).
Counts are additive, so a stack pools by adding them up.
"""


from .counts import class_scores, confusion_matrix
from .instances import AP_THRESHOLDS, InstanceCounts, instance_counts
from .isbi import (
    THRESHOLDS,
    WARPING_THRESHOLDS,
    SweepCounts,
    as_probability,
    info_error,
    information_scores,
    java_thresholds,
    label_objects,
    pixel_counts,
    pixel_error,
    rand_error,
    rand_fscore,
    segment_counts,
    threshold_sweep,
    warping_counts,
    warping_error,
)

__all__ = [
    "confusion_matrix", "class_scores", "AP_THRESHOLDS", "InstanceCounts", "instance_counts", "THRESHOLDS",
    "WARPING_THRESHOLDS", "SweepCounts", "as_probability", "info_error", "information_scores", "java_thresholds",
    "label_objects", "pixel_counts", "pixel_error", "rand_error", "rand_fscore", "segment_counts", "threshold_sweep",
    "warping_counts", "warping_error",
]
