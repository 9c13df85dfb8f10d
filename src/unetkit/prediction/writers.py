"""Files in, files out: input discovery, and the label, probability, overlay and instance files of each image.

Images above `stream_above_mpix` megapixels are streamed: read tile by tile,
labels written band by band to a tiled, compressed TIFF and probabilities to
a float32 TIFF, so peak memory follows the tile batch, not the image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..checkpoint import Run
from ..config import to_dict
from ..errors import UserError
from ..io import (
    IMAGE_SUFFIXES,
    ArraySource,
    TiffSource,
    atomic_path,
    count_pages,
    is_tiff,
    label_dtype,
    list_images,
    read_image,
    strided_sample,
    write_image,
    write_text,
)
from ..report import overlay, thumbnail_step
from ..version import __version__
from .postprocess import InstanceConfig, instances
from .predictor import PredictConfig, Predictor, label_image, labels_from

OUTPUT_TILE = 256  # tile side of streamed TIFF outputs


@dataclasses.dataclass(frozen=True)
class Item:
    """One image to predict: a file, the page of a stack (or None), and the stem of its outputs."""

    path: Path
    page: int | None
    name: str


def collect_inputs(inputs: Sequence[str | Path]) -> list[Item]:
    """Files and folders -> one Item per image (stack pages separately); refuses clashing output names."""
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
    outputs = {f"{item.name}_labels.png": lambda: label_image(labels, k, predictor.data_config)}
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
    return labels.astype(label_dtype(max(int(labels.max(initial=0)), 256)))  # 16 or 32 bit, as instance tools expect


def _write_streamed(predictor: Predictor, item: Item, source, out_dir: Path) -> list[Path]:
    """Labels to a tiled TIFF and probabilities to a memory-mapped TIFF, band by band; a downsampled overlay."""
    import tifffile
    from tqdm import tqdm

    config, k = predictor.config, predictor.n_classes
    _, height, width = source.shape
    if config.instances is not None:
        tqdm.write(f"{item.path}: {height} x {width} is streamed; instance labels need the whole image and are skipped", file=sys.stderr)
    stats = predictor.stats(source)
    step = thumbnail_step((height, width))
    dtype = label_dtype(255 if k <= 2 else k - 1)  # what label_image writes
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

        big = height * width * dtype.itemsize > 2**31
        with tifffile.TiffWriter(labels_tmp, bigtiff=big) as tif:
            tiles = _output_tiles(label_bands())
            tif.write(tiles, shape=(height, width), dtype=dtype, tile=(OUTPUT_TILE, OUTPUT_TILE), compression="zlib")
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
        "run": _run_folder(model_or_run),
        "inputs": [str(p) for p in inputs],
        "predict": config,
        "tile": {"input": predictor.tile, "batch": predictor.batch, "margin": predictor.sizes.margin},
        "model": to_dict(predictor.model_config),
        "data": to_dict(predictor.data_config),
    }


def _run_folder(model_or_run) -> str | None:
    if isinstance(model_or_run, Run):
        return None if model_or_run.path is None else str(model_or_run.path)
    return str(model_or_run) if isinstance(model_or_run, (str, Path)) else None
