"""The Predictor: a model (PyTorch or ONNX Runtime) + overlap-tile + calibration + test-time augmentation.

    probs = unetkit.predict(run_or_model, image)          # (K, H, W) float32, any image size

Images are normalised exactly as in training (the run's DataConfig), with
per-image percentile statistics computed once per image, never per tile.
Validation during training predicts through the same Predictor, so it scores
exactly what `unetkit predict` writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..checkpoint import Run, load_run
from ..config import DataConfig, ModelConfig
from ..data import colour_image, intensity_stats, normalize, prior_offsets
from ..data.normalize import PER_IMAGE
from ..devices import resolve_device
from ..errors import UserError
from ..io import ArraySource, label_dtype, strided_sample
from ..model import UNetBase, choose_tile
from .backends import LogitsFn, probability_fn, shifted, torch_logits_fn
from .postprocess import InstanceConfig
from .tiling import make_grid, predict_bands

BACKENDS = ("torch", "onnxruntime")
OUT_FORMATS = ("tiff", "zarr")  # NAME_labels.png/.tif + NAME_probs.tif, or one NAME.ome.zarr store
STATS_SAMPLES = 1_000_000  # intensity_stats' default sample size, reproduced for streamed images


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """How to predict; saved as `predict_config.json` beside the outputs."""

    tta: bool = False  # average the 8 flips/rotations in probability space
    calibrate: bool = True  # divide the training loss's class weights out of the probabilities
    tile_size: int | None = None  # input tile side (rounded up to a valid size); None: from memory_mb
    tile_batch: int | None = None  # tiles per forward pass; None: as many as memory_mb allows (<= 8)
    memory_mb: float = 512  # activation memory budget of one tile batch
    overlap: float = 0.25  # same padding: tile overlap fraction (valid padding tiles abut)
    backend: str = "torch"
    device: str = "auto"  # torch backend: "auto" (cuda if available), "cpu", "cuda", ...
    channels_last: bool = False  # torch backend: NHWC memory format
    threads: int | None = None  # CPU threads for the backend; None: its default
    weights: str = "auto"  # run folder: "final", "best", "last" or "auto" (checkpoint.resolved_weights)
    probabilities: bool = True  # write NAME_probs.tif
    overlay: bool = True  # write NAME_overlay.png
    instances: InstanceConfig | None | bool = None  # NAME_instances.tif with these settings; None: with the defaults for a
    # run trained on instance label maps, else none; False: never
    stream_above_mpix: float = 16.0  # stream images larger than this many megapixels
    out_format: str = "tiff"  # "tiff": PNG/TIFF files; "zarr": NAME.ome.zarr (OME-Zarr, always streamed)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.out_format not in OUT_FORMATS:
            raise ValueError(f"out_format={self.out_format!r} is not one of {', '.join(OUT_FORMATS)}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.memory_mb <= 0 or (self.tile_batch is not None and self.tile_batch < 1):
            raise ValueError("memory_mb and tile_batch must be positive")
        if not (self.instances is None or self.instances is False or isinstance(self.instances, InstanceConfig)):
            raise ValueError(f"instances must be an InstanceConfig, None or False, got {self.instances!r}")

    def resolved(self, data_config: DataConfig) -> PredictConfig:
        """`instances` decided for a run: its settings, or False (no instance file)."""
        instances = self.instances
        if instances is None and data_config.mask_kind == "instances":
            instances = InstanceConfig()  # a run trained on instance maps is there to find instances
        return dataclasses.replace(self, instances=instances or False)


def _size_model(config: ModelConfig) -> UNetBase:
    """A layerless network that answers the size questions of `config` for any backend."""
    sizes = UNetBase()
    sizes.config = config
    return sizes


class Predictor:
    """A model ready to predict images of any size: tiling, normalisation and backend resolved once."""

    def __init__(self, model_config: ModelConfig, data_config: DataConfig, logits_fn: LogitsFn, config: PredictConfig):
        config = config.resolved(data_config)
        self.model_config, self.data_config, self.config = model_config, data_config, config
        self.sizes = _size_model(model_config)
        self.n_classes = model_config.n_classes
        offsets = prior_offsets(data_config.class_weights) if config.calibrate else None
        if offsets is not None:
            logits_fn = shifted(logits_fn, offsets)
        self.probability_fn = probability_fn(logits_fn, config.tta)
        self.tile, self.batch = choose_tile(self.sizes, config.memory_mb, config.tile_batch, config.tile_size)

    @classmethod
    def create(cls, model_or_run, config: PredictConfig = PredictConfig(), data_config: DataConfig | None = None) -> Predictor:
        """From a run folder path, a loaded `checkpoint.Run`, or a bare UNet (normalised with `data_config`, or defaults)."""
        run = load_run(model_or_run, config.weights) if isinstance(model_or_run, (str, Path)) else model_or_run
        if isinstance(run, UNetBase):
            run = Run(model=run, data=data_config or DataConfig(in_channels=run.config.in_channels))
        if not isinstance(run, Run):
            raise TypeError(f"expected a run folder, a Run or a UNet, got {type(model_or_run).__name__}")
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        if config.backend == "onnxruntime":
            from .export import onnx_backend

            logits_fn = onnx_backend(run, config.threads)
        else:
            logits_fn = torch_logits_fn(run.model, resolve_device(config.device), config.channels_last)
        return cls(run.model.config, data_config or run.data, logits_fn, config)

    def grid(self, height: int, width: int):
        return make_grid(self.sizes, height, width, self.tile, self.config.overlap)

    def stats(self, source) -> np.ndarray | None:
        """Per-image percentile statistics, from the same sample `intensity_stats` takes of a whole image."""
        if self.data_config.normalization not in PER_IMAGE:
            return None
        if isinstance(source, ArraySource):
            return intensity_stats(source.array, self.data_config)
        _, height, width = source.shape
        step = max(1, int(np.sqrt(height * width / STATS_SAMPLES)))
        return intensity_stats(strided_sample(source, step), self.data_config)

    def bands(self, source, stats=None, progress=None, normalized: bool = False, rows: tuple[int, int] | None = None
              ) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, probabilities (K, rows, W)) bands from top to bottom; see `tiling.predict_bands`.

        `normalized`: the source holds normalised pixels already (validation's images).
        `rows`: only image rows rows[0]..rows[1]-1, as a whole-image pass gives them.
        """
        grid = self.grid(*source.shape[1:])
        if normalized:
            prepare = np.asarray
        else:
            stats = self.stats(source) if stats is None else stats
            prepare = lambda tile: normalize(tile, self.data_config, stats)  # noqa: E731
        return predict_bands(source, grid, self.probability_fn, prepare, n_classes=self.n_classes, batch=self.batch,
                             progress=progress, rows=rows)

    def probabilities(self, image: np.ndarray, path=None, progress=None, normalized: bool = False) -> np.ndarray:
        """Class probabilities (K, H, W) float32 of an in-memory (C, H, W) or (H, W) image."""
        image = np.asarray(image)
        image = image[None] if image.ndim == 2 else image
        source = ArraySource(image)
        self.check_channels(source, path)
        probs = np.empty((self.n_classes, *image.shape[1:]), np.float32)
        for top, band in self.bands(source, progress=progress, normalized=normalized):
            probs[:, top : top + band.shape[1]] = band
        return probs

    def check_channels(self, source, path=None) -> None:
        channels, expected = source.shape[0], self.model_config.in_channels
        if channels != expected:
            raise UserError(
                f"image has {channels} channel{'s' * (channels != 1)}, the model expects {expected}",
                path=path,
                fix=f"convert the image to {expected} channel{'s' * (expected != 1)} or use a model trained on such images",
            )


def predict(model_or_run, image: np.ndarray, *, tta: bool = False, data_config: DataConfig | None = None, **options) -> np.ndarray:
    """Class probabilities (K, H, W) float32 for an image (C, H, W) or (H, W) of any size.

    `model_or_run`: a run folder, a `checkpoint.Run` (what `unetkit.load`
    returns), or a bare UNet (normalised with `data_config`, or DataConfig
    defaults). `options` are `PredictConfig` fields (tile_size, backend, ...).
    """
    predictor = Predictor.create(model_or_run, PredictConfig(tta=tta, **options), data_config)
    return predictor.probabilities(image)


def labels_from(probs: np.ndarray) -> np.ndarray:
    """Class ids (H, W) from (K, H, W) probabilities: argmax, or p > 0.5 for one class."""
    if probs.shape[0] == 1:
        return (probs[0] > 0.5).astype(np.uint8)
    return np.argmax(probs, axis=0).astype(label_dtype(probs.shape[0] - 1))


def label_image(labels: np.ndarray, n_classes: int, data_config: DataConfig | None = None) -> np.ndarray:
    """Labels as written: in the training masks' colours (3, H, W) for a colour-coded run; else two classes
    as 0/255 (visible, and read back as classes by `data.mask_to_classes`), more as class ids."""
    if data_config is not None and data_config.mask_kind == "colours":
        return colour_image(labels, data_config)
    return labels * np.uint8(255) if n_classes <= 2 else labels
