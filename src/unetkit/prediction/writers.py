"""Files in, files out: input discovery, and the label, probability, overlay and instance files of each image.

Images above `stream_above_mpix` megapixels are streamed: read tile by tile,
labels and float32 probabilities written band by band to tiled TIFFs (by
tifffile, each in a thread), so peak memory follows the tile batch, not the
image. Zarr stores are read lazily (`io.ZarrSource`); `--out-format zarr`
writes OME-Zarr (`zarr_output`). The TIFFs of a GeoTIFF input carry its
georeferencing (`georef`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import (
    IMAGE_SUFFIXES,
    ArraySource,
    ZarrSource,
    atomic_path,
    count_pages,
    image_stem,
    is_tiff,
    is_zarr,
    label_dtype,
    list_images,
    open_source,
    read_image,
    strided_sample,
    write_image,
)
from ..report import overlay, thumbnail_step
from .georef import carried_geo_tags
from .postprocess import InstanceConfig, instances
from .predictor import Predictor, label_image, labels_from
from .zarr_output import write_zarr

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
        if is_zarr(entry):  # a store is a folder too: one image
            files.append(entry)
        elif entry.is_dir():
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
        digits, stem = len(str(pages - 1)), image_stem(path)  # scene.ome.zarr -> scene
        for page in range(pages) if pages > 1 else [None]:
            name = stem if page is None else f"{stem}_p{page:0{digits}d}"
            if name in seen:
                raise UserError(f"outputs would clash with those of {seen[name]}", path=path, fix="predict them into separate --out folders")
            seen[name] = path
            items.append(Item(path, page, name))
    return items


def item_source(item: Item):
    """A lazy region reader (a zarr store, a TIFF whose layout allows it), else the image read into memory."""
    if is_zarr(item.path) or is_tiff(item.path):
        try:
            return open_source(item.path, item.page)
        except UserError as exc:
            if "cannot stream" not in str(exc):
                raise
    return ArraySource(read_image(item.path, item.page))


def predict_item(predictor: Predictor, item: Item, out_dir: Path) -> list[Path]:
    """Predict one image and write its outputs; returns the files written."""
    source = item_source(item)
    try:
        predictor.check_channels(source, item.path)
        _, height, width = source.shape
        if predictor.config.out_format == "zarr":
            return write_zarr(predictor, item, source, out_dir)
        if height * width > predictor.config.stream_above_mpix * 1e6:
            return write_streamed(predictor, item, source, out_dir)
        if isinstance(source, ZarrSource):
            source = ArraySource(source.read(0, height, 0, width))
        elif not isinstance(source, ArraySource):
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
    geo = carried_geo_tags(item.path)  # a georeferenced input's labels go to TIFF, which holds its tags
    outputs = {f"{item.name}_labels.{'tif' if geo else 'png'}": lambda: label_image(labels, k, predictor.data_config)}
    if config.probabilities:
        outputs[f"{item.name}_probs.tif"] = lambda: probs
    if config.overlay:
        outputs[f"{item.name}_overlay.png"] = lambda: overlay(image, labels, k)
    if config.instances:
        outputs[f"{item.name}_instances.tif"] = lambda: _instance_image(probs, config.instances)
    for name, make in outputs.items():
        write_image(out_dir / name, make(), extratags=() if name.endswith(".png") else geo)
    return [out_dir / name for name in outputs]


def _instance_image(probs: np.ndarray, config: InstanceConfig) -> np.ndarray:
    labels = instances(probs, config)
    return labels.astype(label_dtype(max(int(labels.max(initial=0)), 256)))  # 16 or 32 bit, as instance tools expect


def write_streamed(predictor: Predictor, item: Item, source, out_dir: Path, bands: Iterable | None = None) -> list[Path]:
    """Labels and probabilities to tiled TIFFs, band by band; a downsampled overlay.

    `bands`: the image's probability bands, top to bottom, predicted elsewhere
    (by the ranks of a sharded job); default: predicted here.
    """
    from tqdm import tqdm

    config, k = predictor.config, predictor.n_classes
    _, height, width = source.shape
    if config.instances:
        tqdm.write(f"{item.path}: {height} x {width} is streamed; instance labels need the whole image and are skipped", file=sys.stderr)
    stats, geo = predictor.stats(source), carried_geo_tags(item.path)
    step = thumbnail_step((height, width))
    dtype = label_dtype(255 if k <= 2 else k - 1)  # what label_image writes
    labels_path, probs_path = out_dir / f"{item.name}_labels.tif", out_dir / f"{item.name}_probs.tif"
    thumbnail: list[np.ndarray] = []
    grid = predictor.grid(height, width)
    with contextlib.ExitStack() as stack:  # each writer closes before its atomic_path renames (or removes) its file
        progress = stack.enter_context(tqdm(total=grid.count, unit="tile", desc=item.name, leave=False, disable=None))
        labels_tmp = stack.enter_context(atomic_path(labels_path))
        write_labels = stack.enter_context(_tiled_tiff(labels_tmp, (height, width), dtype, compression="zlib", extratags=geo))
        write_probs = None
        if config.probabilities:  # float32 (H, W) or (H, W, K): `read_image` returns (K, H, W)
            shape = (height, width) if k == 1 else (height, width, k)
            layout = {"photometric": "minisblack"} | ({} if k == 1 else {"planarconfig": "contig", "metadata": {"axes": "YXS"}})
            probs_tmp = stack.enter_context(atomic_path(probs_path))
            write_probs = stack.enter_context(_tiled_tiff(probs_tmp, shape, np.float32, extratags=geo, **layout))
        for top, band in predictor.bands(source, stats, progress) if bands is None else bands:
            if write_probs is not None:
                write_probs(band[0] if k == 1 else band.transpose(1, 2, 0))
            labels = labels_from(band)
            thumbnail.append(labels[(-top) % step :: step, ::step])
            write_labels(label_image(labels, k))
    written = [labels_path] + ([probs_path] if config.probabilities else [])
    if config.overlay:
        written.append(out_dir / f"{item.name}_overlay.png")
        write_image(written[-1], overlay(strided_sample(source, step), np.concatenate(thumbnail), k))
    return written


@contextlib.contextmanager
def _tiled_tiff(path: Path, shape: tuple[int, ...], dtype, **options):
    """Yield `write(band)`: (rows, W[, K]) bands, top to bottom, become a TIFF tiled OUTPUT_TILE x OUTPUT_TILE.

    tifffile's writer pulls its tiles from an iterator, so it runs in a thread
    of its own, fed one tile at a time. BigTIFF over 2 GiB. `buffersize` caps
    what tifffile compresses in one pass: its default (512 MiB, with several
    workers on a many-core machine) would read that far ahead.
    """
    import tifffile

    def write_tiles(tiles: Iterator[np.ndarray]) -> None:
        big = int(np.prod(shape)) * np.dtype(dtype).itemsize > 2**31
        with tifffile.TiffWriter(path, bigtiff=big) as tif:
            tif.write(tiles, shape=shape, dtype=dtype, tile=(OUTPUT_TILE, OUTPUT_TILE), buffersize=2**24, **options)

    cutter = _TileCutter()

    def write(band: np.ndarray) -> None:
        for tile in cutter.cut(band):
            send(tile)

    with _in_thread(write_tiles) as send:
        yield write
        for tile in cutter.finish():
            send(tile)


class _TileCutter:
    """Cuts (rows, W[, K]) bands of any heights, given top to bottom, into tile x tile blocks in TIFF tile order.

    Each tile is a fresh array, made as it is taken: a view would keep its
    whole band alive (and tifffile holds its first tile to the end), and
    tifffile copies a strided tile anyway. The rows of a row of tiles that
    straddles two bands wait as one copy per tile (`rest`): no array the size
    of a band is made or kept, which keeps peak memory that of the bands alone.
    """

    def __init__(self, tile: int = OUTPUT_TILE):
        self.tile, self.rest = tile, []

    def cut(self, band: np.ndarray) -> Iterator[np.ndarray]:
        """The tiles that `band` completes (take them all before the next band)."""
        t = self.tile
        if self.rest:  # finish the unfinished row of tiles from the top of this band
            top = t - len(self.rest[0])
            joined = (np.concatenate([r, c]) for r, c in zip(self.rest, self._columns(band[:top])))
            if len(band) < top:
                self.rest = list(joined)
                return
            self.rest = []
            yield from joined
            band = band[top:]
        whole = len(band) // t * t
        for y in range(0, whole, t):
            yield from (column.copy() for column in self._columns(band[y : y + t]))
        self.rest = [column.copy() for column in self._columns(band[whole:])] if whole < len(band) else []

    def finish(self) -> list[np.ndarray]:
        """The last, shorter row of tiles (if any) after the last band."""
        return self.rest

    def _columns(self, rows: np.ndarray) -> list[np.ndarray]:
        return [rows[:, x : x + self.tile] for x in range(0, rows.shape[1], self.tile)]


_END, _ABANDON = object(), object()


@contextlib.contextmanager
def _in_thread(consume: Callable[[Iterator], None], queued: int = 1):
    """Run `consume(items)` in a thread; yield `send(item)`, which feeds it through a queue of `queued` items.

    For a consumer that pulls (tifffile's writer) fed by a loop that pushes.
    A failure in the thread is raised by `send` and on leaving; a failure in
    the body stops the thread (its writer closes) before it propagates. A
    thread that ends without error has taken all it needs: later items are dropped.
    """
    items: queue.Queue = queue.Queue(queued)
    errors: list[BaseException] = []

    def received() -> Iterator:
        while (item := items.get()) is not _END:
            if item is _ABANDON:
                raise RuntimeError("abandoned: the producer failed")
            yield item

    def run() -> None:
        try:
            consume(received())
        except BaseException as exc:  # handed to the producer's thread, raised there
            errors.append(exc)

    def put(item) -> bool:
        while thread.is_alive():  # a dead consumer would leave a full queue blocking forever
            with contextlib.suppress(queue.Full):
                items.put(item, timeout=0.1)
                return True
        return False

    def send(item) -> None:
        if not put(item) and errors:  # a thread that ended without error needed nothing more
            raise errors[0]

    thread = threading.Thread(target=run, name="unetkit-writer", daemon=True)
    thread.start()
    try:
        yield send
    except BaseException:
        put(_ABANDON)
        thread.join()
        raise
    put(_END)
    thread.join()
    if errors:
        raise errors[0]
