"""Maps of an image too large to hold, kept on disk as rows: its objects, and its weight map built from them.

The border term (`weightmap.border_weights`) measures d1 and d2 to objects, the
4-connected components of each foreground class over the WHOLE image: two
pieces of one object that meet only outside a window are one object, and no
finite window tells that. So for an image read window by window (`data.lazy`)
the components are found once, band by band: each band is labelled alone, the
labels of vertically adjacent pixels of one class on either side of a band
edge are joined (connected components of a graph over the provisional labels),
and the provisional labels go to a file of rows (`label_components`). These
are the objects `weightmap._label_objects` finds in memory.

The weight map is then computed band by band (`weight_map_rows`), each band
from its rows grown by `weightmap.border_reach` px: the term at a pixel depends
only on the objects within that reach of it, so every value equals the
in-memory map's, bit for bit. Patches read their window of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .instance_maps import instance_objects
from .weightmap import border_reach, weight_map
from .windows import band_rows


class RowFile:
    """A 2-D array on disk, row after row (little-endian `dtype`), read window by window."""

    def __init__(self, path: Path, width: int, dtype):
        self.path, self.width, self.dtype = Path(path), width, np.dtype(dtype).newbyteorder("<")
        self._fd, self._pid = None, None

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self._pid != os.getpid():  # a DataLoader worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        size = self.dtype.itemsize
        rows = [os.pread(self._fd, (x1 - x0) * size, (y * self.width + x0) * size) for y in range(y0, y1)]
        return np.frombuffer(b"".join(rows), self.dtype).reshape(y1 - y0, x1 - x0).astype(self.dtype.newbyteorder("="))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}


class ComponentLabels:
    """The objects of a mask: provisional labels on disk and the component each belongs to."""

    def __init__(self, rows: RowFile, components: np.ndarray):
        self.rows, self.components = rows, components

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The objects of a region, numbered 1..n there (0: none), int32."""
        ids = self.components[self.rows.read(y0, y1, x0, x1)]
        objects = np.zeros(ids.shape, np.int32)
        inside = ids > 0
        objects[inside] = np.unique(ids[inside], return_inverse=True)[1] + 1
        return objects


def label_components(bands: Iterable[tuple[int, np.ndarray]], width: int, ignore_index: int | None, path: Path) -> ComponentLabels:
    """The components of class-id `bands` ((first row, classes), top to bottom), their labels stored at `path`."""
    joins, count, edge = [], 0, None
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        for _, classes in bands:
            labels, count = _label_band(classes, ignore_index, count)
            if edge is not None:
                joins.append(_joins(*edge, classes[0], labels[0]))
            edge = classes[-1], labels[-1]
            labels.astype("<u4").tofile(file)
    return ComponentLabels(RowFile(path, width, np.uint32), _components(count + 1, joins))


def weight_map_rows(example, class_weights, *, w0: float, sigma: float, ignore_index: int | None, folder: Path) -> RowFile:
    """The weight map of a `lazy.LazyExample`, computed band by band and stored as float32 rows in `folder`.

    Its objects: the instance ids of an instance-map mask (read with the band),
    else the components of the whole mask (`label_components`, a file removed
    once the map is done).
    """
    height, width = example.shape
    name = example.name.replace(":", "_p")  # a page of a stack
    instances = example.config.mask_kind == "instances"
    labels = None if instances else label_components(example.class_bands(), width, ignore_index, Path(folder) / f"{name}.objects")
    reach, rows = border_reach(sigma), band_rows(width)
    with atomic_path(Path(folder) / f"{name}.weights") as tmp, open(tmp, "wb") as file:
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            outer = (max(top - reach, 0), min(bottom + reach, height))
            raw, classes = example.mask_box(*outer, 0, width)
            objects = instance_objects(raw, classes) if labels is None else labels.read(*outer, 0, width)
            weights = weight_map(classes, class_weights, w0=w0, sigma=sigma, ignore_index=ignore_index, objects=objects)
            weights[top - outer[0] : bottom - outer[0]].astype("<f4").tofile(file)
    if labels is not None:
        labels.rows.path.unlink()
    return RowFile(Path(folder) / f"{name}.weights", width, np.float32)


def _label_band(classes: np.ndarray, ignore_index: int | None, count: int) -> tuple[np.ndarray, int]:
    """Provisional labels count+1.. of the components of each foreground class in one band, and the new count."""
    from scipy import ndimage

    foreground = classes > 0
    if ignore_index is not None:
        foreground &= classes != ignore_index
    labels = np.zeros(classes.shape, np.int64)
    for value in np.unique(classes[foreground]):
        found, n = ndimage.label(classes == value)  # 4-connectivity, as `weightmap._label_objects`
        labels[found > 0] = found[found > 0] + count
        count += n
    return labels, count


def _joins(classes_above: np.ndarray, labels_above: np.ndarray, classes_below: np.ndarray, labels_below: np.ndarray) -> np.ndarray:
    """(n, 2) label pairs that touch across a band edge: vertical neighbours of one class, both in objects."""
    touching = (labels_above > 0) & (labels_below > 0) & (classes_above == classes_below)
    return np.unique(np.stack([labels_above[touching], labels_below[touching]], axis=1), axis=0)


def _components(count: int, joins: list[np.ndarray]) -> np.ndarray:
    """Component of each provisional label 0..count-1 (0: background stays 0; objects 1..)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.concatenate(joins) if joins else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    component = component.astype(np.int64) + 1
    component[0] = 0  # background: no object (its own component, as it joins nothing)
    return component
