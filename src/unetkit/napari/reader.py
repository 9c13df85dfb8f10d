"""napari reader for the files `unetkit predict` writes (see `prediction/writers.py`).

    NAME_labels.png / NAME_labels.tif   class ids           -> Labels (two classes written 0/255 -> 0/1;
                                                               a colour-coded run's RGB -> one id per colour, in its colour)
    NAME_instances.tif                  object ids          -> Labels
    NAME_probs.tif                      (K, H, W) float32   -> Image (one slice per class, 0..1)
Other files are left to napari's own readers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import read_image

SUFFIXES = {"_labels": (".png", ".tif", ".tiff"), "_instances": (".tif", ".tiff"), "_probs": (".tif", ".tiff")}
LayerData = tuple  # (data, metadata, layer type), napari's LayerDataTuple


def role_of(path: str | Path) -> str | None:
    """The stem ending ("_labels", "_instances", "_probs") of a file `unetkit predict` writes, else None."""
    path = Path(path)
    for ending, suffixes in SUFFIXES.items():
        if path.stem.endswith(ending) and path.suffix.lower() in suffixes:
            return ending
    return None


def get_reader(path):
    """The reader function for one path or a list of them, if all are prediction files; else None (napari tries others)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or any(role_of(p) is None for p in paths):
        return None
    return read_predictions


def read_predictions(path) -> list[LayerData]:
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [read_prediction(Path(p)) for p in paths]


def read_prediction(path: Path) -> LayerData:
    array = read_image(path)  # (C, H, W)
    role = role_of(path)
    if role == "_probs":
        data = array[0] if array.shape[0] == 1 else array
        return data, {"name": path.stem, "colormap": "magma", "contrast_limits": (0.0, 1.0)}, "image"
    if role == "_instances":
        return array[0], {"name": path.stem}, "labels"
    return _class_labels(array, path.stem)


def _class_labels(array: np.ndarray, name: str) -> LayerData:
    if array.shape[0] == 3:  # colour-coded classes: ids 1.. (0 stays napari's transparent background)
        colours, ids = np.unique(array.reshape(3, -1).T, axis=0, return_inverse=True)
        colormap = {None: "transparent"} | {i + 1: tuple(c / 255) for i, c in enumerate(colours)}
        labels = (ids.reshape(array.shape[1:]) + 1).astype(np.uint16 if len(colours) > 254 else np.uint8)
        return labels, {"name": name, "colormap": colormap}, "labels"
    labels = array[0]
    if np.isin(labels, (0, 255)).all():  # two classes are written as 0/255 (visible in a viewer)
        labels = labels // 255
    return labels, {"name": name}, "labels"
