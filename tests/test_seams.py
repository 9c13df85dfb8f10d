"""Seams of same-padding tiled prediction, with a real network (prediction/tiling.py, prediction/predictor.py).

A same-padding U-Net zero-pads every tile, so tiles overlap and are blended
with Gaussian weights, the image border gets half an overlap of mirrored
context, and tile origins stay on the pooling grid. The reference is ONE
forward pass over the whole image mirror-padded by that context: tiling may
differ from it only where a tile's zero border reaches (seams, and the image
border where the context is thinner than in the reference).

The network is the tiny preset (depth 3, receptive field 100 px) with random
weights and BatchNorm statistics taken from the image. Random weights lean on
their whole receptive field, so they are a harsh case: at overlap 0.25 a seam
pixel sees only ~20-28 px of true context, and the max |dp| there is large
whatever the blending; the mean is the figure that tells a break at 0.25, the
max at 0.5. Tile sides of 136 and 200 make both roundings of the grid (step
and border context onto multiples of 8) matter, so an off-grid break shows.
"""

import numpy as np
import pytest
import torch

from unetkit import create_model
from unetkit.config import DataConfig
from unetkit.data import normalize
from unetkit.prediction import PredictConfig, Predictor, to_probabilities
from unetkit.synthetic import generate

HEIGHT, WIDTH = 240, 320

# (tile, overlap) -> bounds on max and mean |dp| of the foreground probability: ~1.4x what was
# measured (max, mean): 0.367, 3.5e-3 | 0.138, 6.7e-4 | 0.214, 1.4e-3 | 0.0078, 8.4e-5.
BOUNDS = {
    (136, 0.25): (0.5, 5e-3),
    (136, 0.5): (0.2, 1e-3),
    (200, 0.25): (0.3, 2e-3),
    (200, 0.5): (0.012, 1.2e-4),
}


@pytest.fixture(scope="module")
def network_and_image():
    torch.manual_seed(0)
    model = create_model("tiny")
    image, _ = generate((HEIGHT, WIDTH), seed=1)
    calibrate_batch_norm(model, normalize(image[None], DataConfig()))
    return model.eval(), image


def calibrate_batch_norm(model, x: np.ndarray) -> None:
    """Running statistics of one train-mode pass over the image (momentum None: a plain average)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    side = model.config.total_stride
    crop = x[:, : x.shape[1] // side * side, : x.shape[2] // side * side]
    with torch.no_grad():
        model.train()(torch.from_numpy(np.ascontiguousarray(crop[None])))


def border_context(axis, align: int) -> int:
    """The mirrored context the tiling promises at the image border: half the overlap, on the pooling grid."""
    return (axis.tile - axis.step) // 2 // align * align


def whole_image(model, image: np.ndarray, context_y: int, context_x: int) -> np.ndarray:
    """Foreground probability of one forward over the image mirror-padded by the context (bottom/right: to a poolable size)."""
    align, (height, width) = model.config.total_stride, image.shape
    bottom = -(-(height + context_y) // align) * align - height
    right = -(-(width + context_x) // align) * align - width
    x = np.pad(normalize(image[None], DataConfig()), ((0, 0), (context_y, bottom), (context_x, right)), mode="symmetric")
    with torch.inference_mode():
        probs = to_probabilities(model(torch.from_numpy(x[None])).numpy())[0]
    return probs[1, context_y : context_y + height, context_x : context_x + width]


@pytest.mark.parametrize("tile,overlap", list(BOUNDS))
def test_tiled_prediction_matches_one_mirror_padded_forward(network_and_image, tile, overlap):
    model, image = network_and_image
    predictor = Predictor.create(model, PredictConfig(tile_size=tile, overlap=overlap, tile_batch=4))
    grid = predictor.grid(HEIGHT, WIDTH)
    assert grid.rows.count > 1 and grid.cols.count > 1  # really tiled, both ways
    align = model.config.total_stride
    reference = whole_image(model, image, border_context(grid.rows, align), border_context(grid.cols, align))
    assert reference.std() > 0.1 and 0.1 < (reference > 0.5).mean() < 0.9  # a map with structure, not flat
    dp = np.abs(predictor.probabilities(image)[1] - reference)
    max_bound, mean_bound = BOUNDS[tile, overlap]
    assert dp.max() <= max_bound, f"tile {tile}, overlap {overlap}: max |dp| {dp.max():.4f} > {max_bound}"
    assert dp.mean() <= mean_bound, f"tile {tile}, overlap {overlap}: mean |dp| {dp.mean():.2e} > {mean_bound:.1e}"
