"""The ISBI 2012 EM challenge's errors (pixel, Rand, information, warping) with its threshold sweep.

Definitions: ../shared/DESIGN.md and Fiji's `trainableSegmentation.metrics`
(read, not copied). `threshold_sweep` -> `SweepCounts.summarize`, or one
number at a time with `rand_error`, `info_error`, `warping_error`, `pixel_error`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .topology import FOUR

# --------------------------------------------------------------------------- ISBI 2012 metrics
#
# Definitions, settled from Arganda-Carreras et al. 2015 ("Crowdsourcing the
# creation of image segmentation algorithms for connectomics", Front.
# Neuroanat. 9:142, doi:10.3389/fnana.2015.00142) and from the code that scored
# the challenge (Fiji's trainableSegmentation.metrics: RandError,
# VariationOfInformation, WarpingError, PixelError); see ../shared/DESIGN.md.
#
# - Polarity: a ground truth pixel > 0 is cell interior (foreground), 0 is
#   membrane. A prediction is a cell-interior probability p in [0, 1] (binary
#   labels are probabilities 0/1), binarised as p > t (strict, in double
#   precision, as Java compares a float pixel with a double threshold).
# - Objects are 4-connected components of the foreground; the membrane is
#   8-connected (the (4, 8) pair of digital topology).
# - Thresholds: t = 0, 0.1, ..., as a Java `for (t = 0; t <= stop; t += 0.1)`
#   accumulates them in double precision: 11 levels up to 1.0 for the pixel,
#   Rand and information scores, 10 up to 0.9 for warping ("10 different
#   levels" in the U-Net paper). Each score takes its best level; the value at
#   t = 0.5 is reported beside it.
# - Over a stack the counts of every image are pooled and one threshold is
#   chosen for the stack (`SweepCounts` add up).


def java_thresholds(start: float, stop: float, step: float) -> tuple[float, ...]:
    """The values of a Java `for (double t = start; t <= stop; t += step)` loop (accumulated in double)."""
    values, t = [], start
    while t <= stop:
        values.append(t)
        t += step
    return tuple(values)


THRESHOLDS = java_thresholds(0.0, 1.0, 0.1)  # pixel, Rand and information scores: 11 levels
WARPING_THRESHOLDS = java_thresholds(0.0, 0.9, 0.1)  # warping error: 10 levels

# Additive per-threshold sums behind the Rand and information scores, over the
# ground-truth foreground only (n pixels). c_ij: pixels of ground-truth object i
# in predicted object j; a_i, b_j: row and column sums; a pixel the prediction
# calls membrane is a singleton segment (size 1, so it adds 1 to the squared
# sums and 0 to the x log x sums).
SEGMENT_FIELDS = ("n", "sum_a2", "sum_b2", "sum_c2", "sum_alog", "sum_blog", "sum_clog")
PIXEL_FIELDS = ("tp", "fp", "fn", "tn")  # foreground (cell interior) is the positive class
WARPING_FIELDS = ("splits", "merges", "mismatches")  # after warping; mismatches counts every kind


def as_probability(pred) -> np.ndarray:
    """A cell-interior probability map in float64: bool/integer labels become 0/1 (> 0 is interior).

    Floats must lie in [0, 1]; float64 because Java compared in double.
    """
    pred = np.asarray(pred)
    if pred.dtype == bool or np.issubdtype(pred.dtype, np.integer):
        return (pred > 0).astype(np.float64)
    pred = pred.astype(np.float64)
    if pred.size and not (np.all(np.isfinite(pred)) and pred.min() >= 0 and pred.max() <= 1):
        raise ValueError(f"probabilities must lie in [0, 1], got [{np.nanmin(pred):.4g}, {np.nanmax(pred):.4g}]")
    return pred


def _prepare(pred, gt, ignore):
    """(probabilities, ground-truth foreground, valid mask), all (N, H, W), after checking shapes."""
    prob, gt = as_probability(pred), np.asarray(gt)
    if prob.shape != gt.shape or prob.ndim not in (2, 3):
        raise ValueError(f"prediction {prob.shape} and ground truth {gt.shape} must be equal (H, W) or (N, H, W) arrays")
    valid = np.ones(gt.shape, bool) if ignore is None else ~np.asarray(ignore, dtype=bool)
    if valid.shape != gt.shape:
        raise ValueError(f"ignore mask {valid.shape} differs from the ground truth {gt.shape}")
    fg = (gt > 0) & valid
    as3d = (lambda a: a[None]) if gt.ndim == 2 else (lambda a: a)
    return as3d(prob), as3d(fg), as3d(valid)


def label_objects(foreground: np.ndarray) -> np.ndarray:
    """4-connected components of a binary image (0 = background), int32."""
    labels, _ = ndimage.label(foreground, FOUR)
    return labels


def _pair_counts(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Counts of each distinct (row, col) label pair (nonzero counts only)."""
    if rows.size == 0:
        return np.zeros(0, np.int64)
    n_cols = int(cols.max()) + 1
    codes = rows.astype(np.int64) * n_cols + cols
    if (int(rows.max()) + 1) * n_cols <= 4 * codes.size + 1_000_000:
        counts = np.bincount(codes)
        return counts[counts > 0]
    return np.unique(codes, return_counts=True)[1]


def _xlogx(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    return float(np.sum(counts * np.log2(counts)))


def segment_counts(pred_fg: np.ndarray, gt_objects: np.ndarray) -> np.ndarray:
    """The SEGMENT_FIELDS sums of one binarised 2-D prediction against labelled ground-truth objects."""
    inside = gt_objects > 0
    a = gt_objects[inside]
    b = label_objects(pred_fg)[inside]
    singletons = int(np.count_nonzero(b == 0))
    a_sizes = np.bincount(a)
    b_sizes = np.bincount(b[b > 0])
    c_sizes = _pair_counts(a[b > 0], b[b > 0])
    return np.array(
        [
            a.size,
            np.sum(a_sizes.astype(np.float64) ** 2),
            np.sum(b_sizes.astype(np.float64) ** 2) + singletons,
            np.sum(c_sizes.astype(np.float64) ** 2) + singletons,
            _xlogx(a_sizes),
            _xlogx(b_sizes),
            _xlogx(c_sizes),
        ]
    )


def rand_fscore(segments: np.ndarray, pair_counting: str = "n2") -> np.ndarray:
    """Foreground-restricted Rand F-score V_rand from SEGMENT_FIELDS sums (last axis); NaN where n = 0.

    With TP = sum c_ij^2 (+ singletons), precision = TP / sum b_j^2, recall =
    TP / sum a_i^2 and F = 2PR / (P + R) = 2 TP / (sum a_i^2 + sum b_j^2).
    `pair_counting="n2"` counts ordered pairs with a pixel paired with itself
    (N^2 normalisation, the challenge's since 2015); "n_choose_2" drops the
    self-pairs (subtract n from each sum), the older variant that
    `skimage.metrics.adapted_rand_error` computes: it equals
    1 - F(n_choose_2) when the ground-truth membrane is passed as an ignored
    label and every predicted-membrane pixel gets a label of its own (used
    naively, with the membrane as one big segment, it overstates the error).
    """
    s = np.asarray(segments, dtype=np.float64)
    n, a2, b2, c2 = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
    if pair_counting == "n_choose_2":
        a2, b2, c2 = a2 - n, b2 - n, c2 - n
    elif pair_counting != "n2":
        raise ValueError(f"pair_counting must be 'n2' or 'n_choose_2', got {pair_counting!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, 2 * c2 / (a2 + b2), np.nan)


def information_scores(segments: np.ndarray) -> dict:
    """Entropies (bits) and V_info from SEGMENT_FIELDS sums (last axis), foreground-restricted.

    With p_ij = c_ij / n (singletons included): H(T) of the ground truth, H(S)
    of the prediction, I = H(S) + H(T) - H(S, T), and V_info = 2 I / (H(S) +
    H(T)), the harmonic mean of the information split score I / H(S) and merge
    score I / H(T) (Arganda-Carreras et al. 2015; Fiji's
    VariationOfInformation.foregroundRestrictedFscore). When both entropies are
    0 (one object each side, identical) V_info is 1, where Fiji's special cases
    give 0. `skimage.metrics.variation_of_information(gt_labels,
    pred_labels, ignore_labels=(0,))` returns (`h_pred_given_gt`,
    `h_gt_given_pred`) when every predicted-membrane pixel has a label of its
    own; given the membrane as one segment it measures something else.
    """
    s = np.asarray(segments, dtype=np.float64)
    n = s[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_n = np.log2(np.where(n > 0, n, np.nan))
        h_gt, h_pred, h_joint = (log_n - s[..., k] / n for k in (4, 5, 6))
        mutual = h_gt + h_pred - h_joint
        v_info = np.where(h_gt + h_pred > 0, 2 * mutual / (h_gt + h_pred), 1.0)
    return {
        "h_gt": h_gt,
        "h_pred": h_pred,
        "h_gt_given_pred": h_joint - h_pred,
        "h_pred_given_gt": h_joint - h_gt,
        "mutual_information": mutual,
        "v_info": np.where(n > 0, v_info, np.nan),
    }


def pixel_counts(pred_fg: np.ndarray, gt_fg: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(tp, fp, fn, tn) of the foreground over the valid pixels."""
    tp = np.count_nonzero(pred_fg & gt_fg & valid)
    fp = np.count_nonzero(pred_fg & ~gt_fg & valid)
    fn = np.count_nonzero(~pred_fg & gt_fg & valid)
    return np.array([tp, fp, fn, np.count_nonzero(valid) - tp - fp - fn])


def warping_counts(prob: np.ndarray, gt_fg: np.ndarray, valid: np.ndarray, threshold: float):
    """(splits, merges, mismatches) after warping `gt_fg` toward `prob > threshold`, and the type map.

    Warping error (Jain et al. 2010; Fiji's WarpingError): the ground truth is
    warped toward the binarised prediction by flipping simple points only
    (most confident mismatch first, see `topology.warp`); the pixels that
    still differ are topological disagreements, classified on the warped
    ground truth (`topology.classify_mismatches`). The challenge counted only
    splits and merges; Jain's classic error counts every remaining mismatch.
    Ignored pixels are never flipped or counted.
    """
    from .topology import MERGE, SPLIT, classify_mismatches, warp

    target = prob > threshold
    warped = warp(gt_fg, target, np.abs(prob - threshold), valid)
    types = classify_mismatches(warped, target, valid)
    counts = np.bincount(types.ravel(), minlength=7)
    return np.array([counts[SPLIT], counts[MERGE], counts[1:].sum()]), types


@dataclasses.dataclass
class SweepCounts:
    """Per-threshold counts of one image or, added up, of a stack; `summarize` turns them into scores."""

    thresholds: tuple[float, ...]
    warping_thresholds: tuple[float, ...]
    pixel: np.ndarray  # (len(thresholds), 4): PIXEL_FIELDS
    segments: np.ndarray  # (len(thresholds), 7): SEGMENT_FIELDS
    warping: np.ndarray  # (len(warping_thresholds), 3): WARPING_FIELDS; NaN when not computed
    n_pixels: int  # valid pixels, the warping error's denominator

    def __add__(self, other: SweepCounts) -> SweepCounts:
        if (self.thresholds, self.warping_thresholds) != (other.thresholds, other.warping_thresholds):
            raise ValueError("cannot pool sweeps over different thresholds")
        return SweepCounts(
            self.thresholds,
            self.warping_thresholds,
            self.pixel + other.pixel,
            self.segments + other.segments,
            self.warping + other.warping,
            self.n_pixels + other.n_pixels,
        )

    def curves(self) -> dict:
        """Each error per threshold (the challenge's sweep curves)."""
        tp, fp, fn = self.pixel[:, 0], self.pixel[:, 1], self.pixel[:, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            fscore = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
            pixels = max(self.n_pixels, 1)
        return {
            "thresholds": list(self.thresholds),
            "pixel_error_fscore": 1 - fscore,
            "rand_error": 1 - rand_fscore(self.segments),
            "info_error": 1 - information_scores(self.segments)["v_info"],
            "warping_thresholds": list(self.warping_thresholds),
            "warping_error": (self.warping[:, 0] + self.warping[:, 1]) / pixels,
            "warping_error_classic": self.warping[:, 2] / pixels,
        }

    def summarize(self) -> dict:
        """Best value over the sweep, its threshold, and the value at t = 0.5, for each error."""
        curves = self.curves()
        summary = {}
        for name, key in (
            ("pixel_error_fscore", "thresholds"),
            ("rand_error", "thresholds"),
            ("info_error", "thresholds"),
            ("warping_error", "warping_thresholds"),
            ("warping_error_classic", "warping_thresholds"),
        ):
            values, levels = np.asarray(curves[name], dtype=np.float64), curves[key]
            best = int(np.nanargmin(values)) if np.any(np.isfinite(values)) else 0  # first best, as Fiji
            summary[name] = float(values[best])
            summary[f"{name}_threshold"] = float(levels[best])
            summary[f"{name}_at_0.5"] = float(values[levels.index(0.5)]) if 0.5 in levels else float("nan")
        best_warp = self.warping_thresholds.index(summary["warping_error_threshold"])
        summary["splits"], summary["merges"] = (int(v) if np.isfinite(v) else None for v in self.warping[best_warp, :2])
        return summary


def threshold_sweep(
    pred, gt, *, ignore=None, thresholds=THRESHOLDS, warping_thresholds=WARPING_THRESHOLDS, warping=True, keep_types_at=None
):
    """Count everything the ISBI scores need at each threshold, for one image (H, W) or a stack (N, H, W).

    Returns `SweepCounts` pooled over the stack; with `keep_types_at=t` (one of
    `warping_thresholds`) also the (N, H, W) warping mismatch-type maps at t
    (`topology.MERGE`, `SPLIT`, ...), else None.
    """
    prob, gt_fg, valid = _prepare(pred, gt, ignore)
    pixel = np.zeros((len(thresholds), 4))
    segments = np.zeros((len(thresholds), 7))
    warps = np.zeros((len(warping_thresholds), 3)) if warping else np.full((len(warping_thresholds), 3), np.nan)
    types = np.zeros(prob.shape, np.int8) if keep_types_at is not None else None
    for k in range(prob.shape[0]):
        gt_objects = label_objects(gt_fg[k])
        for i, t in enumerate(thresholds):
            pred_fg = prob[k] > t
            pixel[i] += pixel_counts(pred_fg, gt_fg[k], valid[k])
            segments[i] += segment_counts(pred_fg, gt_objects)
        for i, t in enumerate(warping_thresholds if warping else ()):
            counts, kinds = warping_counts(prob[k], gt_fg[k], valid[k], t)
            warps[i] += counts
            if t == keep_types_at:
                types[k] = kinds
    counts = SweepCounts(tuple(thresholds), tuple(warping_thresholds), pixel, segments, warps, int(valid.sum()))
    return counts, types


def _sweep(pred, gt, ignore, threshold, warping: bool) -> SweepCounts:
    """Counts at one `threshold`, or over the challenge's levels when threshold is None."""
    levels = {} if threshold is None else {"thresholds": (threshold,), "warping_thresholds": (threshold,)}
    return threshold_sweep(pred, gt, ignore=ignore, warping=warping, **levels)[0]


def rand_error(pred, gt, *, threshold: float | None = None, ignore=None, pair_counting: str = "n2") -> float:
    """1 - foreground-restricted Rand F-score (V_rand), the ISBI 2012 Rand error.

    `pred`: cell-interior probabilities or binary labels (> 0 = interior);
    `gt`: > 0 = interior, 0 = membrane; (H, W) or a stack (N, H, W), pairs
    pooled over the stack; `ignore`: pixels that count nowhere.
    `threshold=None`: the best over t = 0, 0.1, ..., 1. See `rand_fscore`.
    """
    fscore = rand_fscore(_sweep(pred, gt, ignore, threshold, warping=False).segments, pair_counting)
    return float(1 - np.max(fscore))  # NaN when the ground truth has no foreground


def info_error(pred, gt, *, threshold: float | None = None, ignore=None) -> float:
    """1 - V_info, the foreground-restricted information-theoretic score (inputs as `rand_error`)."""
    return _sweep(pred, gt, ignore, threshold, warping=False).summarize()["info_error"]


def warping_error(pred, gt, *, threshold: float | None = None, ignore=None, classic: bool = False) -> float:
    """Splits + merges left after a topology-preserving warp, per pixel (ISBI 2012 warping error).

    Inputs as `rand_error`. `classic=True`: every remaining mismatch (Jain et
    al. 2010). `threshold=None`: the best over t = 0, 0.1, ..., 0.9.
    """
    summary = _sweep(pred, gt, ignore, threshold, warping=True).summarize()
    return summary["warping_error_classic" if classic else "warping_error"]


def pixel_error(pred, gt, *, threshold: float = 0.5, ignore=None) -> float:
    """1 - pixel accuracy of `pred > threshold` against the binary ground truth."""
    prob, gt_fg, valid = _prepare(pred, gt, ignore)
    tp, fp, fn, tn = pixel_counts(prob > threshold, gt_fg, valid)
    return float((fp + fn) / max(tp + fp + fn + tn, 1))
