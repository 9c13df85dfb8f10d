"""Digital topology for the warping error: simple points, topology-preserving warps, error types.

Binary images here follow the ISBI 2012 polarity: True = cell interior
(foreground), False = membrane (background). The connectivity pair is (4, 8):
objects are 4-connected components of the foreground, the membrane is
8-connected, and everything outside the image counts as membrane.

A pixel is *simple* when flipping it changes no topology (no object or hole
appears, vanishes, splits or merges). In 2D with the (4, 8) pair that is the
test of Bertrand & Malandain (1994, "A new characterization of
three-dimensional simple points", Pattern Recognit. Lett. 15:169-175) reduced
to a plane: the topological numbers T4(x, X) (4-connected components of the
foreground in the 8-neighbourhood of x, less x, that are 4-adjacent to x) and
T8(x, X') (8-connected components of the background in that neighbourhood)
are both 1. They depend only on the 8 neighbours, so a 256-entry table
answers the test in O(1).

`warp` relaxes a ground truth toward a prediction by flipping simple points
only, as in Jain et al. 2010 ("Boundary learning by optimization with
topological constraints", CVPR): what still differs afterwards are the
topological disagreements. `classify_mismatches` names each of them the way
Fiji's `trainableSegmentation.metrics.WarpingError`, which scored the ISBI
2012 challenge, does.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

FOUR = ndimage.generate_binary_structure(2, 1)
EIGHT = ndimage.generate_binary_structure(2, 2)

# The 8 neighbours as (dy, dx), in the bit order of a neighbourhood code.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))

# Mismatch types (values of the map `classify_mismatches` returns; 0 = no mismatch).
MERGE, SPLIT, HOLE_ADDITION, HOLE_DELETION, OBJECT_ADDITION, OBJECT_DELETION = 1, 2, 3, 4, 5, 6
MISMATCH_NAMES = {
    MERGE: "merge",
    SPLIT: "split",
    HOLE_ADDITION: "hole_addition",
    HOLE_DELETION: "hole_deletion",
    OBJECT_ADDITION: "object_addition",
    OBJECT_DELETION: "object_deletion",
}


def topological_numbers(patch: np.ndarray) -> tuple[int, int]:
    """(T4 of the foreground, T8 of the background) at the centre of a 3 x 3 boolean patch."""
    foreground = np.array(patch, dtype=bool)
    foreground[1, 1] = False
    labels, _ = ndimage.label(foreground, FOUR)
    t4 = len({labels[0, 1], labels[1, 0], labels[1, 2], labels[2, 1]} - {0})  # 4-adjacent to the centre
    background = ~np.array(patch, dtype=bool)
    background[1, 1] = False
    _, t8 = ndimage.label(background, EIGHT)  # every neighbour is 8-adjacent to the centre
    return t4, t8


@functools.cache
def topological_number_tables() -> tuple[np.ndarray, np.ndarray]:
    """(T4, T8) for each of the 256 neighbourhood codes (bit i = NEIGHBOURS[i] is foreground)."""
    numbers = []
    for code in range(256):
        patch = np.zeros((3, 3), dtype=bool)
        for bit, (dy, dx) in enumerate(NEIGHBOURS):
            patch[1 + dy, 1 + dx] = bool(code >> bit & 1)
        numbers.append(topological_numbers(patch))
    t4, t8 = np.array(numbers, dtype=np.uint8).T
    return t4, t8


@functools.cache
def simple_point_table() -> tuple[bool, ...]:
    """`table[code]`: is a pixel whose 8 neighbours spell `code` simple? (a tuple: fastest to index)"""
    t4, t8 = topological_number_tables()
    return tuple(bool(v) for v in (t4 == 1) & (t8 == 1))


def neighbourhood_codes(binary: np.ndarray) -> np.ndarray:
    """The 8-neighbour code of every pixel (outside the image = background), as uint8."""
    padded = np.pad(np.asarray(binary, dtype=np.uint8), 1)
    height, width = padded.shape[0] - 2, padded.shape[1] - 2
    codes = np.zeros((height, width), dtype=np.uint8)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        codes |= padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] << bit
    return codes


def is_simple(binary: np.ndarray) -> np.ndarray:
    """Boolean map: which pixels could flip without changing the topology."""
    return np.asarray(simple_point_table())[neighbourhood_codes(binary)]


def warp(source: np.ndarray, target: np.ndarray, priority: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Warp the binary `source` toward `target` by flipping simple points only; returns the warped copy.

    In passes, until a pass flips nothing: take the pixels where source and
    target differ (within `valid`), most confident first (largest `priority`,
    i.e. |p - t|), ties in Fiji's scan order (column by column: x outer, y
    inner; Java's sort is stable), and flip each one that is simple at the
    moment it is visited. Sequential by nature (each flip changes its
    neighbours' test), so the loop is plain Python over a byte buffer; the
    table makes each test O(1) and a pass costs about a microsecond per mismatch.
    """
    source = np.asarray(source, dtype=bool)
    target = np.asarray(target, dtype=bool)
    if source.shape != target.shape or source.shape != np.shape(priority):
        raise ValueError(f"shapes differ: source {source.shape}, target {target.shape}, priority {np.shape(priority)}")
    height, width = source.shape
    stride = width + 2
    buffer = bytearray(np.pad(source, 1).astype(np.uint8).tobytes())  # outside = membrane, never flipped
    state = np.frombuffer(buffer, dtype=np.uint8)  # a view: sees every flip
    goal = np.pad(target, 1).ravel()
    allowed = np.pad(np.ones_like(source) if valid is None else np.asarray(valid, dtype=bool), 1).ravel()
    key = np.pad(np.asarray(priority, dtype=np.float32), 1).ravel()
    column_rank = np.arange(goal.size) % stride * (height + 2) + np.arange(goal.size) // stride
    table = simple_point_table()
    offsets = [dy * stride + dx for dy, dx in NEIGHBOURS]
    o0, o1, o2, o3, o4, o5, o6, o7 = offsets
    while True:
        mismatched = np.flatnonzero((state != goal) & allowed)
        if mismatched.size == 0:
            break
        order = mismatched[np.lexsort((column_rank[mismatched], -key[mismatched]))]
        flipped = 0
        for k in order.tolist():
            code = (
                buffer[k + o0]
                | buffer[k + o1] << 1
                | buffer[k + o2] << 2
                | buffer[k + o3] << 3
                | buffer[k + o4] << 4
                | buffer[k + o5] << 5
                | buffer[k + o6] << 6
                | buffer[k + o7] << 7
            )
            if table[code]:
                buffer[k] ^= 1
                flipped += 1
        if flipped == 0:
            break
    return state.reshape(height + 2, width + 2)[1:-1, 1:-1].astype(bool)


def classify_mismatches(warped: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Type of every pixel where `warped` and `target` differ (0 elsewhere), as int8.

    On the 4-connected objects of `warped`, looking at each mismatch's 8
    neighbours inside the image (as Fiji does):
    - a membrane pixel touching two or more objects is a MERGE (the
      prediction joins them), one touching one object a HOLE_ADDITION (with
      membrane around) or HOLE_DELETION (object all around), none an OBJECT_ADDITION;
    - an object pixel whose removal leaves two or more objects among its
      neighbours is a SPLIT (the prediction cuts there); alone it is an
      OBJECT_DELETION, inside its object a HOLE_ADDITION, else a HOLE_DELETION.
    """
    warped = np.asarray(warped, dtype=bool)
    mismatch = warped != np.asarray(target, dtype=bool)
    if valid is not None:
        mismatch &= np.asarray(valid, dtype=bool)
    types = np.zeros(warped.shape, dtype=np.int8)
    ys, xs = np.nonzero(mismatch)
    if ys.size == 0:
        return types
    objects, _ = ndimage.label(warped, FOUR)
    around = _neighbour_labels(objects, ys, xs)
    n_objects, touches_membrane = _count_objects(around)
    inside = warped[ys, xs]

    kind = np.where(n_objects >= 2, MERGE, np.where(n_objects == 1, np.where(touches_membrane, HOLE_ADDITION, HOLE_DELETION), OBJECT_ADDITION))
    object_kind = np.where(n_objects >= 2, SPLIT, np.where(n_objects == 0, OBJECT_DELETION, HOLE_ADDITION))
    kind = np.where(inside, object_kind, kind)
    # An object pixel at the object's edge splits it only if its removal disconnects its
    # neighbours: impossible when they form one 4-connected piece around it (T4 = 1).
    edge = np.flatnonzero(inside & (n_objects == 1) & touches_membrane)
    edge = edge[topological_number_tables()[0][neighbourhood_codes(warped)[ys[edge], xs[edge]]] >= 2]
    boxes = ndimage.find_objects(objects) if edge.size else []
    for i in edge:
        kind[i] = SPLIT if _removal_splits(objects, boxes, ys[i], xs[i]) else HOLE_DELETION
    types[ys, xs] = kind
    return types


def _neighbour_labels(labels: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(M, 8) labels of the 8 neighbours of each (y, x); -1 outside the image."""
    padded = np.pad(labels, 1, constant_values=-1)
    return np.stack([padded[ys + 1 + dy, xs + 1 + dx] for dy, dx in NEIGHBOURS], axis=1)


def _count_objects(around: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: number of distinct object labels (> 0), and whether a membrane pixel (0) is among them."""
    ordered = np.sort(np.where(around > 0, around, 0), axis=1)
    new_object = (ordered[:, 1:] != ordered[:, :-1]) & (ordered[:, 1:] > 0)
    n_objects = new_object.sum(axis=1) + (ordered[:, 0] > 0)
    return n_objects, (around == 0).any(axis=1)


def _removal_splits(objects: np.ndarray, boxes: list, y: int, x: int) -> bool:
    """Would clearing object pixel (y, x) leave two or more objects among its 8 neighbours?"""
    box = boxes[objects[y, x] - 1]  # the object's bounding box bounds the effect of the removal
    region = objects[box] == objects[y, x]
    cy, cx = y - box[0].start, x - box[1].start
    region[cy, cx] = False
    parts, _ = ndimage.label(region, FOUR)
    height, width = parts.shape
    around = {parts[cy + dy, cx + dx] for dy, dx in NEIGHBOURS if 0 <= cy + dy < height and 0 <= cx + dx < width}
    return len(around - {0}) >= 2
