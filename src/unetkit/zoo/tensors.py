"""A package's sizes and test tensors: what tiling needs, and a real image of the run with unetkit's prediction of it.

Sizes (per spatial axis): inputs are `min + n * step`; the output has the
input's size and a `halo` that the consumer pads (mirrored) and crops.

- Valid padding: the halo is the network's margin; steps are 2**depth.
- Same padding: steps are the total stride. A zero-padded network sees a
  different border in every tile, so a halo of one stride hides the seams
  (unetkit's own tiling overlaps more and blends; a consumer tiling with the
  halo gets close to it).

The test input is a crop of a real image at a valid size (<= TEST_SIDE px of
image, plus the halo of mirrored context for valid padding); the test output is
what unetkit's overlap-tile Predictor writes for that crop, normalised with
the statistics of the test input (the ones the package's `scale_range`
computes), zero in the halo like the graph's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..checkpoint import Run
from ..data.windows import crop_mirrored
from ..errors import UserError
from ..io import ArraySource, count_pages, list_images, read_image
from ..prediction import PredictConfig, Predictor, labels_from
from ..report.overlays import display_image, overlay

TEST_SIDE = 256  # image pixels of the test crop at most, per side
COVER_SIDE = 256  # covers of smaller crops are enlarged to about this


@dataclasses.dataclass(frozen=True)
class Sizes:
    min: int  # smallest input side
    step: int  # input sides are min + n * step
    halo: int  # output pixels to crop at each border (input pixels to pad)


def sizes_of(model) -> Sizes:
    """Input sizes and halo of a U-Net (an object with `margin`, `config`, `valid_input_size`)."""
    stride = model.config.total_stride
    if model.margin:
        return Sizes(model.valid_input_size(1, 1)[0], stride, model.margin)
    return Sizes(3 * stride, stride, stride)  # the output minus both halos keeps at least a stride


def find_test_image(run: Run, images: str | Path) -> tuple[np.ndarray, str]:
    """(C, H, W) pixels and name of the run's first validation image, else its first training image, in `images`
    (the run's image folder, or one image file)."""
    images = Path(images)
    if images.is_file():
        return read_image(images, 0 if count_pages(images) > 1 else None), images.name
    if not images.is_dir():
        raise UserError("image folder not found", path=images, fix="pass --images: the folder of images the run was trained on")
    split = run.config.get("split") or {}
    by_stem = {p.stem: p for p in list_images(images)}
    for name in [*split.get("val", []), *split.get("train", [])]:
        stem, _, page = name.partition(":")
        if stem in by_stem:
            return read_image(by_stem[stem], int(page) if page else None), name
    if not by_stem or split:
        raise UserError("none of the run's images is in this folder", path=images,
                        fix="pass --images: the folder of images the run was trained on, or one image file")
    first = sorted(by_stem)[0]  # a run without a recorded split: any image of the folder
    return read_image(by_stem[first], None), first


def _side(size: int, sizes: Sizes, margin: int) -> int:
    """The test input side along an axis of `size` image pixels: the largest valid side whose
    image part (the side less the margins) fits, at least the minimum."""
    n = max(0, (min(size, TEST_SIDE) + 2 * margin - sizes.min) // sizes.step)
    return sizes.min + n * sizes.step


def make_test_tensors(run: Run, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test input (1, C, h, w) float32, test output (1, K, h, w) float32, the cover (3, H, W) uint8)."""
    sizes = sizes_of(run.model)
    margin = run.model.margin  # mirrored context around the image part: the valid network's halo
    height, width = (_side(s, sizes, margin) for s in image.shape[1:])
    rows, cols = height - 2 * margin, width - 2 * margin  # the image part; the halo around it is mirrored, as a consumer pads it
    part = crop_mirrored(image, (image.shape[1] - rows) // 2, (image.shape[2] - cols) // 2, rows, cols).astype(np.float32)
    test_input = crop_mirrored(part, -margin, -margin, height, width)
    predictor = Predictor.create(run, PredictConfig(tile_size=max(height, width), overlap=0.0))
    stats = predictor.stats(ArraySource(test_input))
    output = np.zeros((run.model.config.n_classes, height, width), np.float32)
    for row, band in predictor.bands(ArraySource(part), stats=stats):
        output[:, margin + row : margin + row + band.shape[1], margin : width - margin] = band
    cover = _cover(part, labels_from(output[:, margin : height - margin, margin : width - margin]), output.shape[0])
    return test_input[None], output[None], cover


def _cover(image: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The image beside its labels overlaid (2:1, as bioimage.io recommends), enlarged when small."""
    pair = np.concatenate([display_image(image).transpose(2, 0, 1), overlay(image, labels, n_classes)], axis=2)
    factor = max(1, COVER_SIDE // max(image.shape[1:]))
    return pair.repeat(factor, axis=1).repeat(factor, axis=2)
