"""What the napari widget runs, free of Qt: a model from a path, a layer's pixels, the prediction in steps.

`predict_layer` is a generator: it yields (tiles done, tiles in all) after
each band of tile rows, so the widget's worker thread can show progress, and
returns a `LayerPrediction`. It predicts through the same `Predictor` and
`labels_from` as `unetkit predict`, so its labels are those of NAME_labels.png.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Generator
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import ArraySource
from ..prediction import PredictConfig, Predictor, instances, labels_from

Progress = tuple[int, int]  # (tiles done, tiles in all)


class Cancelled(Exception):
    """The user pressed Cancel; raised at the next tile batch."""


@dataclasses.dataclass
class LayerPrediction:
    labels: np.ndarray  # (H, W) class ids
    probabilities: np.ndarray  # (K, H, W) float32
    instances: np.ndarray | None  # (H, W) object ids, when the config asks for them


def open_predictor(source: str | Path | None, config: PredictConfig = PredictConfig()) -> Predictor:
    """The one place where what the user chose becomes a Predictor: a run folder, or a bioimage.io package unetkit wrote."""
    from ..zoo import is_package, load_package

    if source is None or not str(source).strip():
        raise UserError("no run folder chosen", fix="choose the --out folder of `unetkit train`")
    path = Path(source)
    if is_package(path):
        return Predictor.create(load_package(path), config)  # another package: UserError saying what runs it
    if not path.is_dir():
        raise UserError("not a folder", path=path, fix="choose a run folder (the --out folder of `unetkit train`)")
    return Predictor.create(path, config)  # a folder without config.json: UserError "not a unetkit run folder"


def layer_image(data, *, rgb: bool, multiscale: bool, name: str, in_channels: int) -> np.ndarray:
    """An image layer's pixels as (C, H, W): 2-D grey, RGB(A) (H, W, C), or (C, H, W) with the model's channel count.

    Anything else is a stack or a volume: refused before its pixels are read.
    """
    full = data[0] if multiscale else data  # multiscale: the full-resolution level
    shape = tuple(full.shape)
    spatial = len(shape) - 1 if rgb else len(shape)
    channels_first = not rgb and len(shape) == 3 and shape[0] == in_channels > 1
    if spatial != 2 and not channels_first:
        raise UserError(
            f"the layer is {spatial}-D ({' x '.join(map(str, shape))}); the model segments 2-D images",
            path=f"layer {name!r}",
            fix=f"choose a 2-D layer{f' (or {in_channels} channels first)' if in_channels > 1 else ''}, "
            "or predict a stack page by page with `unetkit predict`",
        )
    array = np.asarray(full)
    if rgb:
        return np.moveaxis(array, -1, 0)
    return array if channels_first else array[None]


class TileCounter:
    """The `progress` that `Predictor.bands` advances per tile batch; stops the prediction once `cancel` is set."""

    def __init__(self, cancel: threading.Event):
        self.done, self.cancel = 0, cancel

    def update(self, tiles: int) -> None:
        if self.cancel.is_set():
            raise Cancelled
        self.done += tiles


def predict_layer(
    predictor: Predictor, image: np.ndarray, cancel: threading.Event, name: str = "image"
) -> Generator[Progress, None, LayerPrediction]:
    """Predict a (C, H, W) image as `unetkit predict` does; yields progress, returns the prediction."""
    source = ArraySource(image)
    predictor.check_channels(source, path=f"layer {name!r}")
    total = predictor.grid(*image.shape[1:]).count
    counter = TileCounter(cancel)
    probs = np.empty((predictor.n_classes, *image.shape[1:]), np.float32)
    yield 0, total
    for top, band in predictor.bands(source, progress=counter):
        probs[:, top : top + band.shape[1]] = band
        yield counter.done, total
    objects = instances(probs, predictor.config.instances) if predictor.config.instances else None
    return LayerPrediction(labels_from(probs), probs, objects)
