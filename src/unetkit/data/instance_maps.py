"""Instance label maps (0 = background, 1..N one object each: Cellpose, StarDist, DSB 2018): recognised, and made training targets.

Recognised from the training masks as a whole (`instance_verdict`), never from
one file: integer masks of 16 or more bits, whose labels are (almost all)
single 8-connected objects, some mask holding many of them, the count varying
from mask to mask, the ids numbered 1..N. Class-id masks fail the first sign
(palette PNGs, ISBI's 0/255, few classes in 8 bits) or the second (a class is
many blobs); masks that show single objects but not all the other signs are
asked about, never guessed (`masks.resolve_masks`).

Trained as background/foreground, as the paper separates touching cells:
where two instances touch, the pixels of the lower id that touch a higher id
(8-neighbours) become background, a 1-px line that leaves no two instances
8-adjacent; the border weights then use the distances to the instances
themselves (`weightmap.border_weights(objects=...)`), which connected
components of the foreground cannot (touching nuclei are one component).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

MIN_BITS = 16  # instance maps outgrow 8 bits; class ids, palette indices and 0/255 fit in them
MANY_LABELS = 16  # some mask holds at least this many labels: more than a class table that is one blob per class
SINGLE_SHARE = 0.9  # share of the labels that are one connected object (a few split by an edit or overlap pass)
NUMBERED_SHARE = 0.9  # labels / largest id, pooled: ids run 1..N (an atlas's or a cropped map's sparse ids do not)
_EIGHT = np.ones((3, 3), bool)


@dataclasses.dataclass(frozen=True)
class LabelStats:
    """One grey mask's labels (its non-zero values): what tells an instance label map from class ids."""

    path: object
    bits: int
    count: int  # distinct non-zero values
    largest: int
    single: int | None  # labels that are one 8-connected object; None: not checked (fewer than two labels)


def label_stats(raw: np.ndarray, path, values: np.ndarray) -> LabelStats | None:
    """The labels of an integer mask (`values`: its distinct values, sorted); None for masks that cannot be instance maps."""
    if raw.dtype.kind not in "iu" or (values.size and values[0] < 0):
        return None
    count = int(np.count_nonzero(values))
    largest = int(values[-1]) if values.size else 0
    bits = raw.dtype.itemsize * 8
    checked = count >= 2 and (bits >= MIN_BITS or count >= MANY_LABELS)  # else no verdict can turn on it
    return LabelStats(path, bits, count, largest, _single_objects(raw) if checked else None)


def _single_objects(raw: np.ndarray) -> int:
    """How many non-zero labels form one 8-connected object (each labelled in its own bounding box)."""
    from scipy import ndimage

    values, compact = np.unique(raw, return_inverse=True)
    compact = compact.reshape(raw.shape) + int(values[0] != 0)  # 0 stays background; ids become 1..n
    boxes = enumerate(ndimage.find_objects(compact), start=1)
    return sum(ndimage.label(compact[box] == label, structure=_EIGHT)[1] == 1 for label, box in boxes if box is not None)


def instance_verdict(stats: list[LabelStats | None]) -> tuple[str, str | None]:
    """("instances", None), ("ids", None), or ("ambiguous", why): the training masks' labels read together."""
    checked = [s for s in stats if s is not None and s.single is not None]
    if not checked or None in stats:
        return "ids", None
    if sum(s.single for s in checked) < SINGLE_SHARE * sum(s.count for s in checked):
        return "ids", None  # classes that are several blobs: class ids
    richest = max(stats, key=lambda s: s.count)
    labelled = [s for s in stats if s.count]
    wide, many = all(s.bits >= MIN_BITS for s in stats), richest.count >= MANY_LABELS
    missing = [why for holds, why in (
        (wide, "the masks are 8-bit"),
        (many, f"no mask holds {MANY_LABELS} or more"),
        (len({s.count for s in stats}) > 1, "every mask holds as many" if len(stats) > 1 else "there is one mask only"),
        (sum(s.count for s in labelled) >= NUMBERED_SHARE * sum(s.largest for s in labelled), "the ids are not numbered 1..N"),
    ) if not holds]
    if not missing:
        return "instances", None
    if not (wide or many):
        return "ids", None  # a few classes in 8 bits, one blob each
    name = Path(str(richest.path)).name
    return "ambiguous", f"{name} holds {richest.count} labels, each one connected object, but {' and '.join(missing)}"


def touching_borders(raw: np.ndarray) -> np.ndarray:
    """Pixels of an instance with an 8-neighbour of a higher id: a 1-px line wherever two instances touch."""
    height, width = raw.shape
    padded = np.pad(raw, 1)  # outside is background, which marks nothing
    border = np.zeros(raw.shape, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                border |= padded[dy : dy + height, dx : dx + width] > raw
    return border & (raw > 0)


def instance_classes(raw: np.ndarray) -> np.ndarray:
    """Class ids (int64) of an instance map: 1 inside an instance, 0 on the background and where instances touch."""
    return ((raw > 0) & ~touching_borders(raw)).astype(np.int64)


def instance_objects(raw: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The instances as trained (their touching borders, and ignored pixels, taken out), numbered 1..n, int32."""
    kept = np.where(classes == 1, raw, 0)
    values, compact = np.unique(kept, return_inverse=True)
    return (compact.reshape(raw.shape) + int(values[0] != 0)).astype(np.int32)
