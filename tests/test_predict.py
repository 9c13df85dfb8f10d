import errno
import json

import numpy as np
import pytest
import tifffile
import torch

import unetkit
from _runs import save_run
from unetkit import UserError, create_model
from unetkit.config import DataConfig
from unetkit.data import normalize
from unetkit.io import read_image, write_image
from unetkit.prediction import PredictConfig, Predictor, predict_files, probability_fn, to_probabilities, writers
from unetkit.prediction.backends import DIHEDRAL, _transform, _untransform
from unetkit.prediction.postprocess import InstanceConfig


def tiny(**overrides):
    torch.manual_seed(0)
    return create_model("tiny", **overrides).eval()


def make_run(path, model, data=None):
    return save_run(path, model, data or DataConfig(in_channels=model.config.in_channels, n_classes=model.config.n_classes))


def forward(model, x):
    with torch.inference_mode():
        return to_probabilities(model(torch.from_numpy(x[None])).numpy())[0]


def test_predict_normalises_with_the_runs_data_config(tmp_path):
    model = tiny()
    data = DataConfig(normalization="meanstd", mean=(100.0,), std=(40.0,))
    run = make_run(tmp_path / "run", model, data)
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    expected = forward(model, normalize(image[None], data))  # 64 x 64 is one valid tile: no padding at all
    np.testing.assert_allclose(unetkit.predict(run, image), expected, atol=1e-5)
    np.testing.assert_allclose(unetkit.predict(unetkit.load(run), image), expected, atol=1e-5)  # a loaded Run
    default = unetkit.predict(model, image)  # a bare model: percentile normalisation of DataConfig()
    np.testing.assert_allclose(default, forward(model, normalize(image[None], DataConfig())), atol=1e-5)


def test_calibration_divides_the_loss_class_weights_out(tmp_path):
    model = tiny()
    weights = (2.5, 0.625)
    run = make_run(tmp_path / "run", model, DataConfig(class_weights=weights))
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    raw = unetkit.predict(run, image, calibrate=False)
    np.testing.assert_allclose(raw, forward(model, normalize(image[None], DataConfig())), atol=1e-5)
    expected = raw / np.array(weights, np.float32)[:, None, None]
    expected /= expected.sum(0)
    np.testing.assert_allclose(unetkit.predict(run, image), expected, atol=1e-5)


def test_dihedral_transforms_are_eight_distinct_invertible_maps():
    x = np.random.default_rng(1).random((2, 1, 5, 7)).astype(np.float32)
    seen = set()
    for k, flip in DIHEDRAL:
        t = _transform(x, k, flip)
        np.testing.assert_array_equal(_untransform(t, k, flip), x)
        seen.add(t.tobytes())
    assert len(seen) == 8


def test_tta_averages_in_probability_space():
    calls = []

    def logits(batch):  # depends on position: a flip changes the logits
        calls.append(batch.shape)
        ramp = np.linspace(-3, 3, batch.shape[-1], dtype=np.float32)
        return np.concatenate([np.zeros_like(batch), batch + ramp], axis=1)

    x = np.random.default_rng(2).random((1, 1, 4, 6)).astype(np.float32)
    got = probability_fn(logits, tta=True)(x)
    expected = np.mean([_untransform(to_probabilities(logits(_transform(x, k, f))), k, f) for k, f in DIHEDRAL], axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, probability_fn(logits)(x), atol=1e-3)  # it does change the result
    assert (1, 1, 6, 4) in calls  # rotated tiles of a non-square batch keep their own shape


def test_tta_makes_prediction_rotation_equivariant():
    model = tiny()
    image = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    probs = unetkit.predict(model, image, tta=True)
    rotated = unetkit.predict(model, np.rot90(image).copy(), tta=True)
    np.testing.assert_allclose(rotated, np.rot90(probs, axes=(1, 2)), atol=1e-5)
    plain = unetkit.predict(model, np.rot90(image).copy())
    assert np.abs(plain - np.rot90(unetkit.predict(model, image), axes=(1, 2))).max() > 1e-3  # without TTA it is not


def test_one_class_model_gives_sigmoid_probabilities():
    probs = unetkit.predict(tiny(n_classes=1), np.zeros((20, 30), np.uint8))
    assert probs.shape == (1, 20, 30) and probs.min() >= 0 and probs.max() <= 1


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "run", tiny())


def images_folder(tmp_path):
    folder = tmp_path / "images"
    rng = np.random.default_rng(4)
    write_image(folder / "a.png", rng.integers(0, 255, (40, 50), dtype=np.uint8))
    tifffile.imwrite(folder / "stack.tif", rng.integers(0, 255, (2, 30, 20), dtype=np.uint16), photometric="minisblack")
    return folder


def test_predict_files_writes_every_output(tmp_path, run_dir):
    out = tmp_path / "out"
    config = PredictConfig(instances=InstanceConfig(min_size=0))
    written = predict_files(run_dir, [images_folder(tmp_path)], out, config)
    names = sorted(p.name for p in written)
    expected = [f"{stem}_{kind}" for stem in ("a", "stack_p0", "stack_p1") for kind in ("instances.tif", "labels.png", "overlay.png", "probs.tif")]
    assert names == sorted(expected)
    # No temporary files left; the job's records in .unetkit-predict.
    assert sorted(p.name for p in out.iterdir()) == sorted(expected + ["predict_config.json", ".unetkit-predict"])
    labels, probs = read_image(out / "a_labels.png"), read_image(out / "a_probs.tif")
    assert probs.shape == (2, 40, 50) and probs.dtype == np.float32
    assert labels.shape == (1, 40, 50) and set(np.unique(labels)) <= {0, 255}
    np.testing.assert_array_equal(labels[0] == 255, probs.argmax(0) == 1)
    assert read_image(out / "a_overlay.png").shape == (3, 40, 50)
    assert read_image(out / "stack_p1_instances.tif").shape == (1, 30, 20)
    saved = json.loads((out / "predict_config.json").read_text())
    assert saved["predict"]["instances"]["min_size"] == 0 and saved["tile"]["margin"] == 0


def test_multiclass_labels_are_class_ids(tmp_path):
    run = make_run(tmp_path / "run", tiny(n_classes=4))
    write_image(tmp_path / "x.png", np.random.default_rng(5).integers(0, 255, (32, 32), dtype=np.uint8))
    predict_files(run, [tmp_path / "x.png"], tmp_path / "out", PredictConfig(probabilities=False, overlay=False))
    labels = read_image(tmp_path / "out" / "x_labels.png")
    assert labels.max() < 4 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [".unetkit-predict", "predict_config.json", "x_labels.png"]


def test_streamed_outputs_equal_in_memory_outputs(tmp_path, run_dir):
    image = np.random.default_rng(6).integers(0, 255, (300, 520), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(64, 64), compression="zlib")
    predict_files(run_dir, [tmp_path / "big.tif"], tmp_path / "mem", PredictConfig(tile_size=128))
    config = PredictConfig(tile_size=128, stream_above_mpix=0.01)
    written = predict_files(run_dir, [tmp_path / "big.tif"], tmp_path / "stream", config)
    assert sorted(p.name for p in written) == ["big_labels.tif", "big_overlay.png", "big_probs.tif"]
    np.testing.assert_array_equal(read_image(tmp_path / "stream/big_labels.tif"), read_image(tmp_path / "mem/big_labels.png"))
    np.testing.assert_allclose(read_image(tmp_path / "stream/big_probs.tif"), read_image(tmp_path / "mem/big_probs.tif"), atol=1e-6)
    with tifffile.TiffFile(tmp_path / "stream/big_labels.tif") as tif:
        assert tif.pages[0].is_tiled
    assert read_image(tmp_path / "stream/big_overlay.png").shape == (3, 300, 520)


@pytest.mark.parametrize("k", [1, 3])
def test_streamed_probabilities_are_a_tiled_float32_yxs_tiff(tmp_path, k):
    run = make_run(tmp_path / "run", tiny(n_classes=k))
    tifffile.imwrite(tmp_path / "x.tif", np.random.default_rng(8).integers(0, 255, (300, 280), dtype=np.uint8))
    only_probs = dict(tile_size=128, overlay=False)
    predict_files(run, [tmp_path / "x.tif"], tmp_path / "mem", PredictConfig(**only_probs))
    predict_files(run, [tmp_path / "x.tif"], tmp_path / "stream", PredictConfig(stream_above_mpix=0.01, **only_probs))
    expected = read_image(tmp_path / "mem/x_probs.tif")  # (K, H, W)
    np.testing.assert_allclose(read_image(tmp_path / "stream/x_probs.tif"), expected, atol=1e-6)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "stream/x_probs.tif"), expected.transpose(1, 2, 0).squeeze(-1 if k == 1 else None), atol=1e-6)
    with tifffile.TiffFile(tmp_path / "stream/x_probs.tif") as tif:
        page = tif.pages[0]
        assert (page.dtype, page.tilelength, page.tilewidth, page.samplesperpixel) == (np.float32, 256, 256, k)


@pytest.mark.parametrize("channels", [(), (3,)])
def test_tile_cutter_recuts_bands_of_any_heights_in_tiff_tile_order(channels):
    image = np.random.default_rng(9).random((70, 50, *channels))
    cuts = [0, 5, 6, 30, 31, 70]  # bands shorter than a tile, ending on a tile edge, spanning two
    cutter = writers._TileCutter(tile=16)
    tiles = [tile for a, b in zip(cuts, cuts[1:]) for tile in cutter.cut(image[a:b])] + cutter.finish()
    expected = [image[y : y + 16, x : x + 16] for y in range(0, 70, 16) for x in range(0, 50, 16)]
    assert len(tiles) == len(expected)
    for got, want in zip(tiles, expected):
        np.testing.assert_array_equal(got, want)
    assert not any(np.shares_memory(tile, image) for tile in tiles)  # a view would keep its whole band alive


@pytest.mark.parametrize("height", [512, 300])  # whole rows of tiles, and a shorter last row
def test_tiled_tiff_writes_bands_of_any_heights(tmp_path, height):
    image = np.random.default_rng(10).random((height, 300, 2)).astype(np.float32)
    with writers._tiled_tiff(tmp_path / "x.tif", image.shape, np.float32, photometric="minisblack", planarconfig="contig") as write:
        for top in range(0, height, 100):
            write(image[top : top + 100])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "x.tif"), image)


def test_a_writer_thread_may_end_once_it_has_all_it_needs():
    taken = []
    with writers._in_thread(lambda items: taken.append(next(items))) as send:
        for item in range(5):  # the queue holds one: sending blocks until the thread has ended, then drops the rest
            send(item)
    assert taken == [0]


def test_failure_in_the_probability_writer_leaves_no_partial_file(tmp_path, run_dir, monkeypatch):
    write = tifffile.TiffWriter.write

    def failing(self, data, *args, dtype=None, **kwargs):
        if dtype == np.float32:  # the probabilities' writer: take one tile, then the disk fills up
            next(data)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data, *args, dtype=dtype, **kwargs)

    monkeypatch.setattr(tifffile.TiffWriter, "write", failing)
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((200, 200), np.uint8))
    with pytest.raises(UserError, match=r"img_probs.tif: cannot write \(No space left on device\)"):
        predict_files(run_dir, [tmp_path / "img.tif"], tmp_path / "out", PredictConfig(tile_size=32, stream_above_mpix=0.001))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predict_config.json"]


def test_wrong_channel_count_names_the_file(tmp_path, run_dir):
    rgb = tmp_path / "rgb.png"
    write_image(rgb, np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(UserError, match="rgb.png: image has 3 channels, the model expects 1"):
        predict_files(run_dir, [rgb], tmp_path / "out")


def test_corrupt_file_names_the_file(tmp_path, run_dir):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UserError, match="bad.png: cannot read image"):
        predict_files(run_dir, [bad], tmp_path / "out")
    assert not (tmp_path / "out" / "bad_labels.png").exists()


def test_unwritable_output_folder_is_a_user_error(tmp_path, run_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write"):
        predict_files(run_dir, [images_folder(tmp_path)], blocker / "out")


def test_clashing_output_names_are_refused(tmp_path, run_dir):
    write_image(tmp_path / "one" / "x.png", np.zeros((8, 8), np.uint8))
    write_image(tmp_path / "two" / "x.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(UserError, match="clash"):
        predict_files(run_dir, [tmp_path / "one", tmp_path / "two"], tmp_path / "out")


@pytest.mark.parametrize("stream", [False, True])
def test_failure_midway_leaves_no_partial_file(tmp_path, run_dir, monkeypatch, stream):
    image = np.random.default_rng(7).integers(0, 255, (200, 200), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image)
    batches = []

    def failing(self, model_config, data_config, logits_fn, config):
        original(self, model_config, data_config, logits_fn, config)
        inner = self.probability_fn

        def fn(batch):
            batches.append(1)
            if len(batches) > 2:
                raise RuntimeError("disk on fire")
            return inner(batch)

        self.probability_fn = fn

    original = Predictor.__init__
    monkeypatch.setattr(Predictor, "__init__", failing)
    config = PredictConfig(tile_size=32, tile_batch=1, stream_above_mpix=0.001 if stream else 16)
    with pytest.raises(RuntimeError, match="disk on fire"):
        predict_files(run_dir, [tmp_path / "img.tif"], tmp_path / "out", config)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predict_config.json"]


def test_predict_leaves_a_training_model_in_training_mode():
    model = tiny().train()
    unetkit.predict(model, np.zeros((16, 16), np.uint8))
    assert model.training and all(m.training for m in model.modules())
