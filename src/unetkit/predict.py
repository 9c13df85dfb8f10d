"""Prediction: a model (PyTorch or ONNX Runtime) + overlap-tile + test-time augmentation -> files.

    probs = unetkit.predict(run_or_model, image)          # (K, H, W) float32, any image size
    predict_files(run_dir, ["images/"], "out/")          # labels, probabilities, overlays, instances

Images are normalised exactly as in training (the run's DataConfig), with
per-image percentile statistics computed once per image, never per tile.
Images above `stream_above_mpix` megapixels are streamed: a TIFF is read tile
by tile, the labels are written band by band to a tiled, compressed TIFF and
the probabilities to a memory-mapped float32 TIFF, so peak memory follows the
tile batch and one band of rows, not the image.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .config import DataConfig, ModelConfig, to_dict
from .data import intensity_stats, normalize
from .errors import UserError
from .io import atomic_path, count_pages, is_tiff, list_images, read_image, write_image, write_text
from .postprocess import InstanceConfig, instances, smallest_label_dtype
from .tiling import ArraySource, TiffSource, choose_tile, make_grid, predict_bands, strided_sample
from .weightmap import prior_offsets

BACKENDS = ("torch", "onnxruntime")
LogitsFn = Callable[[np.ndarray], np.ndarray]
STATS_SAMPLES = 1_000_000  # intensity_stats' default sample size, reproduced for streamed images
OVERLAY_SIDE = 2048  # streamed images get an overlay downsampled to at most this side
OUTPUT_TILE = 256  # tile side of streamed TIFF outputs
CLASS_COLOURS = "tab10"


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
    weights: str = "auto"  # run folder: "best", "last" or "auto"
    probabilities: bool = True  # write NAME_probs.tif
    overlay: bool = True  # write NAME_overlay.png
    instances: InstanceConfig | None = None  # write NAME_instances.tif with these settings
    stream_above_mpix: float = 16.0  # stream images larger than this many megapixels

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.memory_mb <= 0 or (self.tile_batch is not None and self.tile_batch < 1):
            raise ValueError("memory_mb and tile_batch must be positive")


# --------------------------------------------------------------------------- backends


def torch_logits_fn(model, device: str = "cpu", channels_last: bool = False) -> LogitsFn:
    """Batch (N, C, h, w) float32 -> logits, through a PyTorch model in inference mode."""
    import torch

    if channels_last:  # converted on a copy: the caller's model is left as it was
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    model = model.to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def logits(batch: np.ndarray) -> np.ndarray:
        training = model.training  # a model in training (validation during fit) goes back to training
        try:
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(device).contiguous(memory_format=memory_format)
                return model.eval()(x).float().cpu().numpy()
        finally:
            model.train(training)

    return logits


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def to_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over classes (axis 1), or the sigmoid for a one-class model."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    return (torch.sigmoid(t) if t.shape[1] == 1 else torch.softmax(t, dim=1)).numpy()


# The dihedral group of the square: k quarter turns, then optionally a left-right flip.
DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def _transform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(batch, k, axes=(2, 3))
    return np.ascontiguousarray(out[..., ::-1] if flip else out)


def _untransform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    return np.rot90(batch[..., ::-1] if flip else batch, -k, axes=(2, 3))


def probability_fn(logits_fn: LogitsFn, tta: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Batch -> class probabilities; with `tta`, the mean over the 8 flips and rotations.

    Averaging happens in probability space (after the softmax). A rotated
    tile is a valid input too: the size rules hold per axis.
    """
    transforms = DIHEDRAL if tta else DIHEDRAL[:1]

    def probabilities(batch: np.ndarray) -> np.ndarray:
        total = None
        for k, flip in transforms:
            p = _untransform(to_probabilities(logits_fn(_transform(batch, k, flip))), k, flip)
            total = p if total is None else total + p
        return total / len(transforms) if len(transforms) > 1 else np.ascontiguousarray(total)

    return probabilities


def _shifted(logits_fn: LogitsFn, offsets: np.ndarray) -> LogitsFn:
    """`logits_fn` plus a per-class offset (see `weightmap.prior_offsets`)."""
    return lambda batch: logits_fn(batch) + offsets[None, :, None, None]


# --------------------------------------------------------------------------- the predictor


def _size_model(config: ModelConfig):
    """A weightless UNet (meta device) that answers the size questions for any backend."""
    import torch

    from .model import UNet

    with torch.device("meta"):
        return UNet(config)


class Predictor:
    """A model ready to predict images of any size: tiling, normalisation and backend resolved once."""

    def __init__(self, model_config: ModelConfig, data_config: DataConfig, logits_fn: LogitsFn, config: PredictConfig):
        self.model_config, self.data_config, self.config = model_config, data_config, config
        self.sizes = _size_model(model_config)
        self.n_classes = model_config.n_classes
        offsets = prior_offsets(data_config.class_weights) if config.calibrate else None
        if offsets is not None:
            logits_fn = _shifted(logits_fn, offsets)
        self.probability_fn = probability_fn(logits_fn, config.tta)
        self.tile, self.batch = choose_tile(self.sizes, config.memory_mb, config.tile_batch, config.tile_size)

    @classmethod
    def create(cls, model_or_run, config: PredictConfig = PredictConfig(), data_config: DataConfig | None = None) -> "Predictor":
        """From a UNet, a loaded `checkpoint.Run`, or a run folder path."""
        from .checkpoint import Run, load_run
        from .model import UNet

        run = load_run(model_or_run, config.weights) if isinstance(model_or_run, (str, Path)) else model_or_run
        if isinstance(run, Run):
            model, data_config = run.model, data_config or run.data
        elif isinstance(run, UNet):
            model = run
            data_config = data_config or getattr(model, "data_config", None) or DataConfig(in_channels=model.config.in_channels)
        else:
            raise TypeError(f"expected a UNet, a Run or a run folder, got {type(model_or_run).__name__}")
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        if config.backend == "onnxruntime":
            from .export import onnx_backend

            logits_fn = onnx_backend(run, config.threads)
        else:
            logits_fn = torch_logits_fn(model, _resolve_device(config.device), config.channels_last)
        return cls(model.config, data_config, logits_fn, config)

    def grid(self, height: int, width: int):
        return make_grid(self.sizes, height, width, self.tile, self.config.overlap)

    def stats(self, source) -> np.ndarray | None:
        """Per-image percentile statistics, from the same sample `intensity_stats` takes of a whole image."""
        if self.data_config.normalization != "percentile":
            return None
        if isinstance(source, ArraySource):
            return intensity_stats(source.array, self.data_config)
        _, height, width = source.shape
        step = max(1, int(np.sqrt(height * width / STATS_SAMPLES)))
        return intensity_stats(strided_sample(source, step), self.data_config)

    def bands(self, source, stats=None, progress=None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, probabilities (K, rows, W)) bands from top to bottom; see `tiling.predict_bands`."""
        grid = self.grid(*source.shape[1:])
        stats = self.stats(source) if stats is None else stats
        return predict_bands(
            source,
            grid,
            self.probability_fn,
            lambda tile: normalize(tile, self.data_config, stats),
            n_classes=self.n_classes,
            batch=self.batch,
            progress=progress,
        )

    def probabilities(self, image: np.ndarray, path=None, progress=None) -> np.ndarray:
        """Class probabilities (K, H, W) float32 of an in-memory (C, H, W) or (H, W) image."""
        image = np.asarray(image)
        image = image[None] if image.ndim == 2 else image
        source = ArraySource(image)
        self.check_channels(source, path)
        probs = np.empty((self.n_classes, *image.shape[1:]), np.float32)
        for top, band in self.bands(source, progress=progress):
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

    `model_or_run`: a UNet (normalised with its `data_config` attribute, the
    `data_config` argument, or DataConfig defaults), a `checkpoint.Run`, or a
    run folder. `options` are `PredictConfig` fields (tile_size, backend, ...).
    """
    predictor = Predictor.create(model_or_run, PredictConfig(tta=tta, **options), data_config)
    return predictor.probabilities(image)


def labels_from(probs: np.ndarray) -> np.ndarray:
    """Class ids (H, W) from (K, H, W) probabilities: argmax, or p > 0.5 for one class."""
    if probs.shape[0] == 1:
        return (probs[0] > 0.5).astype(np.uint8)
    return np.argmax(probs, axis=0).astype(np.uint8 if probs.shape[0] <= 256 else np.uint16)


def label_image(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Labels as written: two classes as 0/255 (visible, and read back as classes by data.mask_to_classes), else ids."""
    return labels * np.uint8(255) if n_classes <= 2 else labels


# --------------------------------------------------------------------------- overlays


def display_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 for a person: the first three channels (or the one), stretched between percentiles 1 and 99.8."""
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    stats = intensity_stats(rgb, DataConfig(in_channels=3))
    low, high = stats[:, 0, None, None], stats[:, 1, None, None]
    scaled = (rgb.astype(np.float32) - low) / np.maximum(high - low, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def class_colours(n_classes: int) -> np.ndarray:
    """(max(K, 2), 3) RGB colours in 0..255; class 0 (background) is never drawn."""
    from matplotlib import colormaps

    cmap = colormaps[CLASS_COLOURS]
    return np.array([[0, 0, 0]] + [cmap(i % cmap.N)[:3] for i in range(max(n_classes, 2) - 1)], np.float32) * 255


def overlay(image: np.ndarray, labels: np.ndarray, n_classes: int, alpha: float = 0.35) -> np.ndarray:
    """(3, H, W) uint8: the image with each non-background class tinted and outlined in its colour."""
    from skimage.segmentation import find_boundaries

    out = display_image(image).astype(np.float32)
    tint = class_colours(n_classes)[labels]
    objects = labels > 0
    out[objects] = (1 - alpha) * out[objects] + alpha * tint[objects]
    edges = find_boundaries(labels, mode="inner") & objects
    out[edges] = tint[edges]
    return out.round().astype(np.uint8).transpose(2, 0, 1)


# --------------------------------------------------------------------------- files


@dataclasses.dataclass(frozen=True)
class Item:
    """One image to predict: a file, the page of a stack (or None), and the stem of its outputs."""

    path: Path
    page: int | None
    name: str


def collect_inputs(inputs: Sequence[str | Path]) -> list[Item]:
    """Files and folders -> one Item per image (stack pages separately); refuses clashing output names."""
    from .io import IMAGE_SUFFIXES

    files: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            files += list_images(entry)
        elif not entry.exists():
            raise UserError("file not found", path=entry, fix="check the path")
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"not an image file ({entry.suffix or 'no suffix'})", path=entry, fix=f"pass {'/'.join(IMAGE_SUFFIXES)} files")
        else:
            files.append(entry)
    items, seen = [], {}
    for path in files:
        pages = count_pages(path)
        digits = len(str(pages - 1))
        for page in range(pages) if pages > 1 else [None]:
            name = path.stem if page is None else f"{path.stem}_p{page:0{digits}d}"
            if name in seen:
                raise UserError(f"outputs would clash with those of {seen[name]}", path=path, fix="predict them into separate --out folders")
            seen[name] = path
            items.append(Item(path, page, name))
    return items


def open_source(item: Item):
    """A lazy TiffSource for a TIFF whose layout allows it, else the image read into memory."""
    if is_tiff(item.path):
        try:
            return TiffSource(item.path, item.page)
        except UserError as exc:
            if "cannot stream" not in str(exc):
                raise
    return ArraySource(read_image(item.path, item.page))


def predict_item(predictor: Predictor, item: Item, out_dir: Path) -> list[Path]:
    """Predict one image and write its outputs; returns the files written."""
    source = open_source(item)
    try:
        predictor.check_channels(source, item.path)
        _, height, width = source.shape
        if height * width > predictor.config.stream_above_mpix * 1e6:
            return _write_streamed(predictor, item, source, out_dir)
        if not isinstance(source, ArraySource):
            source.close()
            source = ArraySource(read_image(item.path, item.page))
        return _write_in_memory(predictor, item, source.array, out_dir)
    finally:
        source.close()


def _write_in_memory(predictor: Predictor, item: Item, image: np.ndarray, out_dir: Path) -> list[Path]:
    from tqdm import tqdm

    config, k = predictor.config, predictor.n_classes
    tiles = predictor.grid(*image.shape[1:]).count
    with tqdm(total=tiles, unit="tile", desc=item.name, leave=False, disable=None if tiles > 1 else True) as progress:
        probs = predictor.probabilities(image, item.path, progress)
    labels = labels_from(probs)
    outputs = {f"{item.name}_labels.png": lambda: label_image(labels, k)}
    if config.probabilities:
        outputs[f"{item.name}_probs.tif"] = lambda: probs
    if config.overlay:
        outputs[f"{item.name}_overlay.png"] = lambda: overlay(image, labels, k)
    if config.instances is not None:
        outputs[f"{item.name}_instances.tif"] = lambda: _instance_image(probs, config.instances)
    for name, make in outputs.items():
        write_image(out_dir / name, make())
    return [out_dir / name for name in outputs]


def _instance_image(probs: np.ndarray, config: InstanceConfig) -> np.ndarray:
    labels = instances(probs, config)
    return labels.astype(smallest_label_dtype(labels))


def _write_streamed(predictor: Predictor, item: Item, source, out_dir: Path) -> list[Path]:
    """Labels to a tiled TIFF and probabilities to a memory-mapped TIFF, band by band; a downsampled overlay."""
    import tifffile
    from tqdm import tqdm

    config, k = predictor.config, predictor.n_classes
    _, height, width = source.shape
    if config.instances is not None:
        tqdm.write(f"{item.path}: {height} x {width} is streamed; instance labels need the whole image and are skipped", file=sys.stderr)
    stats = predictor.stats(source)
    step = max(1, math.ceil(max(height, width) / OVERLAY_SIDE))
    label_dtype = np.dtype(np.uint8 if k <= 256 else np.uint16)
    labels_path, probs_path = out_dir / f"{item.name}_labels.tif", out_dir / f"{item.name}_probs.tif"
    thumbnail: list[np.ndarray] = []
    grid = predictor.grid(height, width)
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(tqdm(total=grid.count, unit="tile", desc=item.name, leave=False, disable=None))
        labels_tmp = stack.enter_context(atomic_path(labels_path))
        probs_file = _ProbabilityTiff(stack.enter_context(atomic_path(probs_path)), k, height, width) if config.probabilities else None

        def label_bands() -> Iterator[np.ndarray]:
            for top, band in predictor.bands(source, stats, progress):
                if probs_file is not None:
                    probs_file.write(top, band)
                labels = labels_from(band)
                thumbnail.append(labels[(-top) % step :: step, ::step])
                yield label_image(labels, k)

        big = height * width * label_dtype.itemsize > 2**31
        with tifffile.TiffWriter(labels_tmp, bigtiff=big) as tif:
            tiles = _output_tiles(label_bands())
            tif.write(tiles, shape=(height, width), dtype=label_dtype, tile=(OUTPUT_TILE, OUTPUT_TILE), compression="zlib")
    written = [labels_path] + ([probs_path] if probs_file is not None else [])
    if config.overlay:
        written.append(out_dir / f"{item.name}_overlay.png")
        write_image(written[-1], overlay(strided_sample(source, step), np.concatenate(thumbnail), k))
    return written


def _output_tiles(bands: Iterator[np.ndarray], tile: int = OUTPUT_TILE) -> Iterator[np.ndarray]:
    """Re-cut bands of rows (any heights, top to bottom) into tile x tile blocks in TIFF tile order."""
    pending = None
    for band in bands:
        pending = band if pending is None else np.concatenate([pending, band])
        while pending.shape[0] >= tile:
            yield from (pending[:tile, x : x + tile] for x in range(0, pending.shape[1], tile))
            pending = pending[tile:]
    if pending is not None and len(pending):
        yield from (pending[:, x : x + tile] for x in range(0, pending.shape[1], tile))


class _ProbabilityTiff:
    """A float32 (H, W, K) TIFF filled band by band through short-lived memory maps (so RSS stays small)."""

    def __init__(self, path: Path, n_classes: int, height: int, width: int):
        import tifffile

        self.path, self.k, self.width = path, n_classes, width
        shape = (height, width) if n_classes == 1 else (height, width, n_classes)
        layout = {} if n_classes == 1 else {"planarconfig": "contig", "metadata": {"axes": "YXS"}}
        big = height * width * n_classes * 4 > 2**31
        array = tifffile.memmap(path, shape=shape, dtype=np.float32, photometric="minisblack", bigtiff=big, **layout)
        self.offset = array.offset
        del array

    def write(self, top: int, band: np.ndarray) -> None:
        rows = band.shape[1]
        offset = self.offset + top * self.width * self.k * 4
        array = np.memmap(self.path, np.float32, "r+", offset=offset, shape=(rows, self.width, self.k))
        array[:] = band.transpose(1, 2, 0)
        array.flush()
        del array


def predict_files(model_or_run, inputs: Sequence[str | Path], out_dir: str | Path, config: PredictConfig = PredictConfig()) -> list[Path]:
    """Predict every image of `inputs` (files, folders, stack pages) into `out_dir`; returns the files written.

    Per image NAME: NAME_labels.png (NAME_labels.tif when streamed), NAME_probs.tif,
    NAME_overlay.png and, with `config.instances`, NAME_instances.tif;
    `predict_config.json` records the resolved settings.
    """
    from tqdm import tqdm

    items = collect_inputs(inputs)
    out_dir = Path(out_dir)
    predictor = Predictor.create(model_or_run, config)
    write_text(out_dir / "predict_config.json", json.dumps(_resolved(predictor, model_or_run, inputs), indent=2) + "\n")
    written = []
    for item in tqdm(items, unit="image", desc="predict", disable=None):
        written += predict_item(predictor, item, out_dir)
    return written


def _resolved(predictor: Predictor, model_or_run, inputs) -> dict:
    config = to_dict(predictor.config)
    return {
        "unetkit_version": __version__,
        "run": str(getattr(model_or_run, "path", model_or_run)) if not hasattr(model_or_run, "forward") else None,
        "inputs": [str(p) for p in inputs],
        "predict": config,
        "tile": {"input": predictor.tile, "batch": predictor.batch, "margin": predictor.sizes.margin},
        "model": to_dict(predictor.model_config),
        "data": to_dict(predictor.data_config),
    }
