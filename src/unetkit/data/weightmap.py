"""The pixel-weight map of the paper (eq. 2): class balance plus a border term.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1 and d2 are the distances to the nearest and second-nearest object, objects
being the 4-connected components of each foreground class (class ids >= 1;
for ISBI 2012 the cells, so the membrane between two touching cells weighs
most), or the instances themselves where the masks are instance label maps
(`objects`): touching nuclei are one component but two instances. The border term is added on background pixels only: those are the
pixels that separate objects. It is computed once per image when the data set
is built and then cropped and warped with every patch (an image read window by
window, `data.lazy`, computes it per patch from `border_reach` px of context).
"""

from __future__ import annotations

import math

import numpy as np

# Border weights below this share of w0 are dropped: it bounds the window each
# object's distance transform needs (d1 + d2 < sigma * sqrt(2 ln(1 / CUTOFF))).
CUTOFF = 1e-4


def border_reach(sigma: float) -> int:
    """Distance (px) beyond which an object counts for no pixel's d1 or d2: there the term is below CUTOFF * w0.

    So the border term of a pixel depends only on the objects within this
    distance of it: a window grown by it on every side gives the exact term.
    """
    return int(math.ceil(sigma * math.sqrt(2 * math.log(1 / CUTOFF))))


def class_frequencies(masks, n_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Pixel counts per class over a list of class-id masks (ignored pixels not counted)."""
    counts = np.zeros(n_classes, np.int64)
    for mask in masks:
        values = mask[mask != ignore_index] if ignore_index is not None else mask
        counts += np.bincount(values.ravel(), minlength=n_classes)[:n_classes]
    return counts


def balancing_weights(counts: np.ndarray) -> np.ndarray:
    """w_c = N / (K * n_c): inverse class frequency, averaging 1 over the pixels.

    Classes with no pixels get weight 0 (they never occur, so the value never matters).
    """
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def median_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """w_c = median(f) / f_c over the classes present (Eigen and Fergus 2015): rare classes gain, without the
    extreme weights inverse frequency gives a class of 0.1% of the pixels. Absent classes get 0."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = np.median(counts[present]) / counts[present]
    return weights.astype(np.float32)


def prior_offsets(class_weights) -> np.ndarray | None:
    """Logit offsets -log w_c that undo a loss's class weights; None when there is nothing to undo.

    Cross-entropy weighting class c by w_c is minimised by q_c = w_c p_c / sum_k w_k p_k,
    not by the posterior p_c: a class-balanced network calls the rare class too
    often (on ISBI 2012, 28% membrane where there is 20%). Adding -log w_c to the
    logits gives p_c back (the prior-shift correction of Saerens et al. 2002).
    The border term is left in: it is there to keep the gaps between objects open.
    Classes of weight 0 (absent from training) keep offset 0.
    """
    if class_weights is None:
        return None
    weights = np.asarray(class_weights, np.float64)
    present = weights > 0
    if present.sum() < 2 or np.allclose(weights[present], weights[present][0]):
        return None
    offsets = np.zeros_like(weights)
    offsets[present] = -np.log(weights[present])
    return offsets.astype(np.float32)


def border_weights(
    classes: np.ndarray, w0: float = 10.0, sigma: float = 5.0, ignore_index: int | None = None, objects: np.ndarray | None = None
) -> np.ndarray:
    """The border term w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) on background pixels, float32 (H, W).

    `objects`: object ids (H, W, 0 = none, 1..n) to measure d1 and d2 from; default: the
    4-connected components of each foreground class. Each object's distance
    transform runs only in its bounding box grown by the distance beyond which
    the term is negligible (`border_reach`), so the cost grows with the objects'
    area, not with (number of objects x image size). Distances beyond that reach
    count as none, so the term at a pixel depends on the objects within reach of
    it only, and a window with that much context computes it exactly.
    """
    from scipy import ndimage

    foreground = classes > 0
    if ignore_index is not None:
        foreground &= classes != ignore_index
    objects = _label_objects(classes, foreground) if objects is None else objects
    reach = border_reach(sigma)  # max useful d1 + d2
    d1 = np.full(classes.shape, np.inf, np.float32)
    d2 = np.full(classes.shape, np.inf, np.float32)
    for label, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        window = tuple(slice(max(s.start - reach, 0), s.stop + reach) for s in box)
        distance = ndimage.distance_transform_edt(objects[window] != label).astype(np.float32)
        distance[distance > reach] = np.inf  # what lies within the window but beyond reach: as everywhere beyond it
        near, second = d1[window], d2[window]  # views: updated in place
        np.minimum(second, np.maximum(near, distance), out=second)
        np.minimum(near, distance, out=near)
    with np.errstate(invalid="ignore"):  # inf - inf never happens: d2 >= d1, inf gives 0
        term = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    term[foreground | ~np.isfinite(d2)] = 0
    if ignore_index is not None:
        term[classes == ignore_index] = 0
    return term.astype(np.float32)


def weight_map(
    classes: np.ndarray,
    class_weights: np.ndarray,
    *,
    border: bool = True,
    w0: float = 10.0,
    sigma: float = 5.0,
    ignore_index: int | None = None,
    objects: np.ndarray | None = None,
) -> np.ndarray:
    """The paper's weight map for one class-id mask: w_c per class (+ border term), float32 (H, W).

    Ignored pixels weigh 0 (they count in no loss anyway). `objects`: see `border_weights`.
    """
    valid = classes != ignore_index if ignore_index is not None else np.ones(classes.shape, bool)
    weights = np.zeros(classes.shape, np.float32)
    weights[valid] = np.asarray(class_weights, np.float32)[classes[valid]]
    if border:
        weights += border_weights(classes, w0, sigma, ignore_index, objects)
    return weights


def _label_objects(classes: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """4-connected components of each foreground class, numbered 1.. across classes."""
    from scipy import ndimage

    objects = np.zeros(classes.shape, np.int32)
    count = 0
    for value in np.unique(classes[foreground]):
        labels, n = ndimage.label(classes == value)  # default structure: 4-connectivity
        objects[labels > 0] = labels[labels > 0] + count
        count += n
    return objects
