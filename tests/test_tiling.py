import numpy as np
import pytest
import tifffile
import torch

from unetkit import create_model
from unetkit.config import DataConfig
from unetkit.data import normalize
from unetkit.data.windows import mirror_indices
from unetkit.data.windows import read_mirrored as read_tile
from unetkit.io import ArraySource, TiffSource, strided_sample
from unetkit.model import choose_tile
from unetkit.prediction import PredictConfig, Predictor, predict, to_probabilities
from unetkit.prediction.tiling import make_grid, predict_bands


def valid_model(**overrides):
    torch.manual_seed(0)
    return create_model("paper", **{"base_width": 4, "dropout": 0.0, **overrides}).eval()


def same_model(**overrides):
    torch.manual_seed(0)
    return create_model("tiny", **overrides).eval()


def strided_stem_model(**overrides):
    return same_model(stem_stride=2, **overrides)


def whole_image_valid(model, image):
    """Reference: one forward pass over the whole mirror-padded image (no tiling)."""
    x = normalize(image[None], DataConfig())
    m, (height, width) = model.margin, image.shape
    padded_h, padded_w = model.valid_input_size(height + 2 * m, width + 2 * m)
    x = np.pad(x, ((0, 0), (m, padded_h - height - m), (m, padded_w - width - m)), mode="symmetric")
    with torch.inference_mode():
        return to_probabilities(model(torch.from_numpy(x[None])).numpy())[0][:, :height, :width]


@pytest.mark.parametrize("size", [1, 2, 5, 13])
def test_mirror_indices_match_numpy_symmetric(size):
    row = np.arange(size)
    for pad in range(0, 3 * size + 3):
        expected = np.pad(row, pad, mode="symmetric") if pad <= size else None
        got = mirror_indices(-pad, size + pad, size)
        if expected is not None:
            np.testing.assert_array_equal(got, expected)
        assert got.min() >= 0 and got.max() < size
        np.testing.assert_array_equal(got[pad : pad + size], row)  # the image itself is untouched


def test_seamless_valid_padding_1000x1300_several_tile_sizes():
    model = valid_model(base_width=2)
    image = np.random.default_rng(0).random((1000, 1300)).astype(np.float32)
    reference = whole_image_valid(model, image)
    assert reference.std() > 0.01  # a non-trivial prediction
    for tile in (444, 572, 700):
        predictor = Predictor.create(model, PredictConfig(tile_size=tile))
        assert predictor.grid(1000, 1300).count > 1  # really tiled
        np.testing.assert_allclose(predictor.probabilities(image), reference, atol=1e-5, rtol=0)


def test_seamless_valid_padding_with_shallower_network():
    model = valid_model(depth=2)
    image = np.random.default_rng(1).random((130, 97)).astype(np.float32)
    reference = whole_image_valid(model, image)
    for tile in (52, 68, 100):
        np.testing.assert_allclose(predict(model, image, tile_size=tile), reference, atol=1e-5, rtol=0)


def pointwise_probabilities(batch):
    """A stand-in network whose output at a pixel depends on that pixel only."""
    p = 1 / (1 + np.exp(-4 * (batch[:, :1] - 0.5)))
    return np.concatenate([1 - p, p], axis=1).astype(np.float32)


@pytest.mark.parametrize("tile,overlap", [(16, 0.25), (24, 0.5), (64, 0.0), (512, 0.25)])
def test_same_padding_grid_covers_and_blends_exactly(tile, overlap):
    model = same_model()
    image = np.random.default_rng(2).random((1, 70, 45)).astype(np.float32)
    grid = make_grid(model, 70, 45, tile, overlap)
    bands = list(predict_bands(ArraySource(image), grid, pointwise_probabilities, lambda t: t, n_classes=2, batch=3))
    tops = [top for top, _ in bands]
    assert tops[0] == 0 and tops == sorted(tops)
    result = np.concatenate([band for _, band in bands], axis=1)
    assert result.shape == (2, 70, 45)  # every row exactly once
    np.testing.assert_allclose(result, pointwise_probabilities(image[None])[0], atol=1e-6)


def test_same_padding_tiles_overlap_and_border_gets_mirrored_context():
    model = same_model()
    grid = make_grid(model, 1000, 1300, 256, 0.25)
    assert grid.rows.step == 192 and grid.rows.origin == -32  # half the overlap of context at the border
    assert grid.blend == "gaussian" and grid.weights().max() == 1 and grid.weights().min() > 0
    ends = [grid.rows.output_start(k) + grid.rows.out for k in range(grid.rows.count)]
    assert ends[-1] >= 1000 + 32
    # Every tile on the pooling grid of a whole-image pass, whatever the sizes.
    for height, width, tile, overlap in [(1000, 1300, 256, 0.25), (37, 1001, 512, 0.3), (300, 20, 96, 0.5), (1, 1, 64, 0.25)]:
        grid = make_grid(model, height, width, tile, overlap)
        for axis in (grid.rows, grid.cols):
            assert axis.origin % 8 == 0 and axis.step % 8 == 0 and axis.tile % 8 == 0
    grid = make_grid(strided_stem_model(), 1000, 37, 256, 0.3)  # a strided stem doubles the grid: 16 px for depth 3
    for axis in (grid.rows, grid.cols):
        assert axis.origin % 16 == 0 and axis.step % 16 == 0 and axis.tile % 16 == 0


@pytest.mark.parametrize("make", [valid_model, same_model, strided_stem_model])
@pytest.mark.parametrize("shape", [(1, 1), (37, 1001), (2048, 2048)])
def test_any_size_gives_output_of_input_size(make, shape):
    model = make(base_width=2, depth=3)
    image = np.random.default_rng(3).integers(0, 255, shape, dtype=np.uint8)
    probs = predict(model, image)
    assert probs.shape == (2, *shape) and probs.dtype == np.float32
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=0), 1, atol=1e-5)


def test_choose_tile_follows_memory_budget_and_model():
    paper = create_model("paper")
    small_tile, _ = choose_tile(paper, memory_mb=256, tile_batch=1)
    large_tile, _ = choose_tile(paper, memory_mb=2048, tile_batch=1)
    assert small_tile < large_tile <= 1024
    for tile in (small_tile, large_tile):
        paper.check_input_size(tile, tile)  # a valid size
    assert choose_tile(paper, 1024, tile_size=500)[0] == 508  # rounded up to the next valid size
    assert choose_tile(paper, 1024, tile_size=1)[0] == 204  # at least one pooling cell of output
    tile, batch = choose_tile(same_model(), memory_mb=2048)
    assert tile == 1024 and batch > 1  # a small model fills the budget with a batch of tiles


@pytest.fixture
def big_image():
    return np.random.default_rng(4).integers(0, 60000, (3, 300, 410), dtype=np.uint16)


@pytest.mark.parametrize(
    "layout",
    [
        dict(tile=(64, 64), compression="zlib"),
        dict(compression="zlib", rowsperstrip=16),
        dict(),  # raw and contiguous: memory-mapped
    ],
)
def test_tiff_source_reads_regions_of_any_layout(tmp_path, big_image, layout):
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, big_image, photometric="minisblack", metadata={"axes": "CYX"}, **layout)
    source = TiffSource(path)
    assert source.shape == big_image.shape and source.dtype == big_image.dtype
    np.testing.assert_array_equal(source.read(10, 150, 33, 400), big_image[:, 10:150, 33:400])
    np.testing.assert_array_equal(read_tile(source, (-20, 90), (380, 450)), read_tile(ArraySource(big_image), (-20, 90), (380, 450)))
    np.testing.assert_array_equal(strided_sample(source, 7, rows_per_read=50), big_image[:, ::7, ::7])
    source.close()


def test_tiff_source_samples_and_stack_pages(tmp_path, big_image):
    rgb = np.moveaxis(big_image, 0, -1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", tile=(64, 64))
    np.testing.assert_array_equal(TiffSource(tmp_path / "rgb.tif").read(0, 300, 0, 410), big_image)
    tifffile.imwrite(tmp_path / "stack.tif", big_image, photometric="minisblack", compression="zlib")  # three 2-D pages
    stack = TiffSource(tmp_path / "stack.tif", page=2)
    assert stack.shape == (1, 300, 410)
    np.testing.assert_array_equal(stack.read(5, 9, 0, 410)[0], big_image[2, 5:9])


def test_streamed_source_predicts_like_in_memory(tmp_path):
    model = valid_model(depth=2)
    image = np.random.default_rng(5).integers(0, 255, (150, 170), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "image.tif", image, tile=(32, 32), compression="zlib")
    predictor = Predictor.create(model, PredictConfig(tile_size=60))
    in_memory = predictor.probabilities(image)
    source = TiffSource(tmp_path / "image.tif")
    streamed = np.concatenate([band for _, band in predictor.bands(source)], axis=1)
    np.testing.assert_allclose(streamed, in_memory, atol=1e-6)
