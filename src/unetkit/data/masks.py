"""Mask conventions: raw mask values -> class ids."""

from __future__ import annotations

import numpy as np

from ..config import DataConfig
from ..errors import UserError


def mask_to_classes(raw: np.ndarray, config: DataConfig, path=None) -> np.ndarray:
    """Raw mask values -> class ids (int64), following DESIGN.md's mask conventions.

    - `foreground_value` set: that value is class 1, everything else class 0;
    - two values with two classes (0/255, 0/1, False/True): lower 0, higher 1;
    - otherwise values are class ids 0..n_classes-1.
    Pixels equal to `ignore_index` stay `ignore_index` throughout.
    """
    raw = np.asarray(raw)
    ignore = None if config.ignore_index is None else raw == config.ignore_index
    values = np.unique(raw if ignore is None else raw[~ignore])
    if config.foreground_value is not None:
        classes = (raw == config.foreground_value).astype(np.int64)
    elif config.n_classes == 2 and len(values) <= 2 and set(values.tolist()) <= {0, 255}:
        classes = (raw == 255).astype(np.int64)
    elif config.n_classes == 2 and len(values) == 2 and not set(values.tolist()) <= {0, 1}:
        classes = (raw == values.max()).astype(np.int64)
    else:
        bad = values[(values < 0) | (values >= config.n_classes)]
        if bad.size:
            shown = ", ".join(map(str, bad[:5].tolist())) + (" ..." if bad.size > 5 else "")
            raise UserError(
                f"mask values {shown} are not class ids 0..{config.n_classes - 1} "
                f"({len(values)} distinct values for {config.n_classes} classes)",
                path=path,
                fix="raise --classes, set --ignore-index, or relabel the mask",
            )
        classes = raw.astype(np.int64)
    if ignore is not None:
        classes[ignore] = config.ignore_index
    return classes
