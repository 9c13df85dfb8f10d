"""napari sample data: a synthetic EM section (`unetkit.synthetic`) with its ground-truth labels."""

from __future__ import annotations

import numpy as np

from ..synthetic import generate

SAMPLE_SHAPE = (256, 256)


def em_section() -> list[tuple]:
    """The image, and its labels as class ids (1 = cell interior, 0 = membrane: napari leaves 0 transparent)."""
    image, label = generate(SAMPLE_SHAPE, seed=0)
    return [
        (image, {"name": "em_section"}, "image"),
        ((label > 0).astype(np.uint8), {"name": "em_section_truth", "opacity": 0.4}, "labels"),
    ]
