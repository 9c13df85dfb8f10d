"""Brute-force reference versions of the ISBI 2012 warping error, for tests/test_metric_oracles.py.

Written from ../shared/DESIGN.md ("ISBI 2012 metric definitions") and
sharing no code with unetkit: where unetkit decides simple points with a
256-entry table of local topological numbers, this module flips the pixel and
counts components over the whole image; where unetkit classifies mismatches
from neighbourhood codes and bounding boxes, this one relabels the whole image.
Slow (two labellings per visited pixel) and meant for images of a few hundred
pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

OBJECT_CONNECTIVITY = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)  # cell interior: 4-connected
MEMBRANE_CONNECTIVITY = np.ones((3, 3), bool)  # membrane: 8-connected


def java_levels(stop: float) -> list[float]:
    """t = 0, 0.1, ... while t <= stop, accumulated in double as the challenge's Java loop does."""
    levels, t = [], 0.0
    while t <= stop:
        levels.append(t)
        t += 0.1
    return levels


def topology(framed: np.ndarray) -> tuple[int, int]:
    """(number of 4-connected objects, number of 8-connected membrane pieces) of a framed binary image."""
    return ndimage.label(framed, OBJECT_CONNECTIVITY)[1], ndimage.label(~framed, MEMBRANE_CONNECTIVITY)[1]


def warp(source: np.ndarray, target: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Flip mismatched pixels of `source` toward `target` while no object or membrane piece appears or vanishes.

    A flip is kept only when both component counts of the whole image are
    unchanged (2-D simple point, (4, 8) pair). The image sits in a one-pixel
    membrane frame: the outside counts as membrane. In passes until one flips
    nothing; in each pass the most confident mismatch (largest `priority`)
    comes first, ties column by column (x outer, y inner).
    """
    framed = np.pad(np.asarray(source, bool), 1)
    image = framed[1:-1, 1:-1]  # a view: flips land in the frame
    counts = topology(framed)  # simple flips never change them
    while True:
        ys, xs = np.nonzero(image != target)
        scan = sorted(zip(xs.tolist(), ys.tolist()))  # column by column
        order = sorted(scan, key=lambda xy: -priority[xy[1], xy[0]])  # stable: ties keep the scan order
        flipped = 0
        for x, y in order:
            image[y, x] = not image[y, x]
            if topology(framed) == counts:
                flipped += 1
            else:
                image[y, x] = not image[y, x]
        if flipped == 0:
            return image.copy()


def objects_around(labels: np.ndarray, y: int, x: int) -> int:
    """How many distinct objects (labels > 0) lie among the in-image 8 neighbours of membrane pixel (y, x)."""
    window = labels[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
    return len(np.unique(window[window > 0]))


def splits_and_merges(warped: np.ndarray, target: np.ndarray) -> tuple[int, int, int]:
    """(splits, merges, all mismatches) left between the warped ground truth and the target.

    Merge: a membrane mismatch touching two or more objects of the warped
    ground truth. Split: an object mismatch whose removal leaves two or more
    objects among its neighbours (the whole image relabelled without it).
    """
    objects = ndimage.label(warped, OBJECT_CONNECTIVITY)[0]
    splits = merges = 0
    ys, xs = np.nonzero(warped != target)
    for y, x in zip(ys.tolist(), xs.tolist()):
        if warped[y, x]:
            cut = warped.copy()
            cut[y, x] = False
            splits += objects_around(ndimage.label(cut, OBJECT_CONNECTIVITY)[0], y, x) >= 2
        else:
            merges += objects_around(objects, y, x) >= 2
    return splits, merges, len(ys)


def warping_counts(prob: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """(splits, merges, mismatches) after warping the ground truth (> 0 = interior) toward `prob > threshold`.

    The priority is |p - t| stored as a 32-bit float, as the challenge's Fiji
    code keeps it (a Point3f coordinate).
    """
    target = prob > threshold
    priority = np.abs(prob - threshold).astype(np.float32)
    return splits_and_merges(warp(gt > 0, target, priority), target)


def warping_error(prob: np.ndarray, gt: np.ndarray) -> tuple[float, int, int]:
    """(min over t = 0 ... 0.9 of (splits + merges) / pixels, splits and merges at the first best t)."""
    best = None
    for t in java_levels(0.9):
        splits, merges, _ = warping_counts(prob, gt, t)
        if best is None or splits + merges < best[0] + best[1]:
            best = (splits, merges)
    return (best[0] + best[1]) / prob.size, best[0], best[1]
