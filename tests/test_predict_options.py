"""Every `unetkit predict` flag changes the computation it names, run end to end through the CLI.

The run folder is made by hand (tiny models, no training): `best` and `last`
hold different weights and the data config holds class weights, so
`--weights` and `--no-calibrate` have something to show. The backend is
watched from inside (threads, tile shapes, memory format) while the CLI runs.
"""

import json
from typing import NamedTuple

import numpy as np
import pytest
import torch
from scipy import ndimage

from _train_data import disc_mask
from unetkit import predict as predict_array
from unetkit.checkpoint import save_config, save_weights
from unetkit.cli import main
from unetkit.config import DataConfig
from unetkit.io import read_image, write_image
from unetkit.model import create_model
from unetkit.prediction import predictor as predictor_module

CLASS_WEIGHTS = (0.5, 2.0)
BASE = ("--instances", "--min-size", "0")  # every variant adds one flag to these


def tiny_model(seed: int):
    torch.manual_seed(seed)
    return create_model("tiny").eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("predict") / "run"
    save_config(run, tiny_model(3).config, DataConfig(class_weights=CLASS_WEIGHTS))
    save_weights(run, tiny_model(3), "best")  # "auto" picks best; seed 3 gives a map with holes and sure cores
    save_weights(run, tiny_model(0), "last")
    return run


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    rng = np.random.default_rng(0)
    mask = disc_mask(rng, 64, discs=6)
    path = tmp_path_factory.mktemp("images") / "a.png"
    write_image(path, (40 + 150 * (mask > 0) + rng.normal(0, 20, mask.shape)).clip(0, 255).astype(np.uint8))
    return path


class Predicted(NamedTuple):
    out: object
    calls: list  # per backend call: {"threads", "shape"}
    channels_last: list  # per Conv2d of more than one input channel: was its input NHWC?

    def probs(self) -> np.ndarray:
        return read_image(self.out / "a_probs.tif").astype(np.float64)

    def instances(self) -> np.ndarray:
        return read_image(self.out / "a_instances.tif")[0]

    def tile(self) -> int:
        return json.loads((self.out / "predict_config.json").read_text())["tile"]["input"]


@pytest.fixture(scope="module")
def predict(tmp_path_factory, run_dir, image):
    """`predict(*flags)` -> Predicted: one CLI prediction per distinct set of flags, watched from the backend."""
    cache = {}

    def run(*flags) -> Predicted:
        if flags not in cache:
            result = Predicted(tmp_path_factory.mktemp("out"), [], [])
            threads = torch.get_num_threads()
            hook = torch.nn.modules.module.register_module_forward_hook(_format_hook(result.channels_last))
            try:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(predictor_module, "torch_logits_fn", _recording_backend(result.calls))
                    assert main(["predict", str(run_dir), str(image), "--out", str(result.out), *BASE, *flags]) == 0
            finally:
                hook.remove()
                torch.set_num_threads(threads)  # --threads sets the process's count
            cache[flags] = result
        return cache[flags]

    return run


def _recording_backend(calls: list):
    original = predictor_module.torch_logits_fn

    def make(model, device="cpu", channels_last=False):
        logits = original(model, device, channels_last)

        def recorded(batch):
            calls.append({"threads": torch.get_num_threads(), "shape": batch.shape})
            return logits(batch)

        return recorded

    return make


def _format_hook(seen: list):
    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and module.in_channels > 1:  # one channel is NCHW and NHWC alike
            seen.append(inputs[0].is_contiguous(memory_format=torch.channels_last))

    return hook


# --------------------------------------------------------------------------- the backend


def test_threads_set_the_backends_thread_count(predict):
    default, three = predict(), predict("--threads", "3")
    assert {c["threads"] for c in default.calls} == {torch.get_num_threads()} != {3}
    assert three.calls and {c["threads"] for c in three.calls} == {3}
    np.testing.assert_allclose(three.probs(), default.probs(), atol=1e-5)


def test_channels_last_runs_the_model_in_nhwc(predict):
    default, nhwc = predict(), predict("--channels-last")
    assert default.channels_last and not any(default.channels_last)
    assert nhwc.channels_last and all(nhwc.channels_last)
    np.testing.assert_allclose(nhwc.probs(), default.probs(), atol=1e-5)


def test_memory_mb_sets_the_tile_the_backend_sees(predict):
    default, small = predict(), predict("--memory-mb", "129")  # 1 MB over the fixed overhead
    assert [c["shape"][-2:] for c in default.calls] == [(64, 64)]  # one tile holds the image
    assert small.tile() < 64 < default.tile()
    assert len(small.calls) > 1 and {c["shape"][-2:] for c in small.calls} == {(small.tile(), small.tile())}


def test_weights_pick_the_file(predict, image):
    best, last = predict("--weights", "best"), predict("--weights", "last")
    data = DataConfig(class_weights=CLASS_WEIGHTS)
    for result, seed in ((best, 3), (last, 0)):
        expected = predict_array(tiny_model(seed), read_image(image), data_config=data)
        np.testing.assert_allclose(result.probs(), expected, atol=1e-5)
    assert np.abs(best.probs() - last.probs()).max() > 0.1
    np.testing.assert_array_equal(predict().probs(), best.probs())  # auto: best when there is one


def test_no_calibrate_keeps_the_class_weights_in_the_probabilities(predict):
    calibrated, raw = predict().probs(), predict("--no-calibrate").probs()
    usable = (np.minimum(calibrated, raw) > 1e-4).all(axis=0)
    assert usable.mean() > 0.5
    shift = np.log(raw[1] / raw[0]) - np.log(calibrated[1] / calibrated[0])
    # Calibration adds -log w_c to the logits: the odds of class 1 drop by w1 / w0 = 4.
    np.testing.assert_allclose(shift[usable], np.log(CLASS_WEIGHTS[1] / CLASS_WEIGHTS[0]), atol=1e-3)


# --------------------------------------------------------------------------- instances


def test_foreground_class_picks_the_objects_class(predict):
    default, background = predict(), predict("--foreground-class", "0")
    probs = default.probs()
    for result, cls in ((default, 1), (background, 0)):  # holes filled (the default), nothing dropped (--min-size 0)
        np.testing.assert_array_equal(result.instances() > 0, ndimage.binary_fill_holes(probs[cls] > 0.5))
    assert (default.instances() > 0).mean() != (background.instances() > 0).mean()


def test_max_hole_zero_fills_no_hole(predict):
    default, unfilled = predict(), predict("--max-hole", "0")
    foreground = default.probs()[1] > 0.5
    assert (ndimage.binary_fill_holes(foreground) & ~foreground).sum() > 0, "the map must have holes to fill"
    np.testing.assert_array_equal(unfilled.instances() > 0, foreground)
    assert (default.instances() > 0).sum() > foreground.sum()


def test_probability_seeds_give_one_object_per_sure_core(predict):
    default, seeded = predict(), predict("--seeds", "probability")
    probability = default.probs()[1]
    objects = ndimage.binary_fill_holes(probability > 0.5)
    cores, n_cores = ndimage.label((probability > 0.9) & objects)  # the seeds: 4-connected cores, p > 0.9
    components, n_components = ndimage.label(objects)
    unseeded = n_components - len(np.unique(components[cores > 0]))  # components without a core: one object each
    assert n_cores > 0 and seeded.instances().max() == n_cores + unseeded
    assert seeded.instances().max() != default.instances().max()
