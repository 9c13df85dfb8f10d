"""Recipes: a run repeats from its recipe.yaml, a resume accepts its own first command line, and validation
scores exactly what prediction writes (one mirror convention)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage.draw import disk

import unetkit
from unetkit.cli import main
from unetkit.io import read_image, write_image
from unetkit.prediction import Predictor

FLAGS = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--quiet", "--deterministic"]


def odd_sized_data(root, n=4, shape=(45, 53)):
    """Images whose sides are not multiples of the model's stride: prediction and validation must mirror at the border."""
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros(shape, np.uint8)
        for _ in range(3):
            rr, cc = disk(tuple(rng.integers(5, min(shape) - 5, 2)), int(rng.integers(4, 8)), shape=shape)
            mask[rr, cc] = 255
        image = (50 + 140 * (mask > 0) + rng.normal(0, 25, shape)).clip(0, 255).astype(np.uint8)
        write_image(root / "images" / f"{i:02d}.png", image)
        write_image(root / "masks" / f"{i:02d}.png", mask)
    return root / "images", root / "masks"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return odd_sized_data(tmp_path_factory.mktemp("data"))


def train(data, out, *flags):
    return main(["train", "--images", str(data[0]), "--masks", str(data[1]), "--out", str(out), *FLAGS, *flags])


def same_weights(a, b):
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_the_first_command_line_repeats_with_resume(data, tmp_path):
    """Every option given at the start may be given again on resume (the --class-weights defect: spec vs resolved)."""
    first = ["--steps", "4", "--class-weights", "auto", "--classes", "2", "--rotate", "90", "--no-flip", "--lr", "0.002",
             "--val-names", "03", "--normalization", "meanstd"]
    assert train(data, tmp_path / "run", *first) == 0
    assert train(data, tmp_path / "run", *first, "--resume") == 0  # same length: nothing left to do, no error
    assert train(data, tmp_path / "run", *first[2:], "--steps", "6", "--resume") == 0  # longer
    assert json.loads((tmp_path / "run" / "config.json").read_text())["run"]["steps"] == 6


def test_a_changed_recipe_option_is_refused_on_resume(data, tmp_path, capsys):
    assert train(data, tmp_path / "run", "--steps", "2", "--class-weights", "auto") == 0
    capsys.readouterr()
    assert train(data, tmp_path / "run", "--steps", "2", "--class-weights", "none", "--resume") == 2
    err = capsys.readouterr().err
    assert "class_weights differ" in err and err.count("\n") == 1


def test_recipe_file_repeats_the_run_and_flags_override_it(data, tmp_path):
    assert train(data, tmp_path / "a", "--steps", "4", "--rotate", "30", "--w0", "5", "--val-names", "03") == 0
    recipe = tmp_path / "a" / "recipe.yaml"
    assert "rotate: 30" in recipe.read_text() and "unetkit train --config" in recipe.read_text()
    assert train(data, tmp_path / "b", "--config", str(recipe)) == 0
    stored = [json.loads((tmp_path / run / "config.json").read_text()) for run in ("a", "b")]
    assert stored[0]["train"] == stored[1]["train"] and stored[0]["model"] == stored[1]["model"]
    assert same_weights(tmp_path / "a", tmp_path / "b")  # the same run, bit for bit
    assert train(data, tmp_path / "c", "--config", str(recipe), "--w0", "7") == 0
    assert json.loads((tmp_path / "c" / "config.json").read_text())["train"]["w0"] == 7


def test_unknown_key_in_a_recipe_file_is_a_one_line_error(data, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: 2\nlearning_rate: 0.1\n")
    assert train(data, tmp_path / "run", "--config", str(recipe)) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "recipe.yaml" in err and err.count("\n") == 1


def test_validation_scores_the_probabilities_prediction_writes_at_the_border(data, tmp_path, monkeypatch):
    """The held-out image of odd size is mirrored at its border; validation and `predict` must agree there exactly."""
    seen = []
    original = Predictor.bands

    def recording(self, *args, **kwargs):  # validation scores the bands as the predictor hands them out
        bands = []
        for top, band in original(self, *args, **kwargs):
            bands.append(band)
            yield top, band
        seen.append(np.concatenate(bands, axis=1))

    monkeypatch.setattr(Predictor, "bands", recording)
    run = unetkit.train(*data, tmp_path / "run", preset="tiny", batch_size=2, patch_size=32, steps=3, val_names=("03",),
                        progress=False)
    monkeypatch.setattr(Predictor, "bands", original)
    validated = seen[-1]  # the last validation: the weights saved as "last"
    predicted = unetkit.predict(run, read_image(data[0] / "03.png"), weights="last")
    assert validated.shape == predicted.shape == (2, 45, 53)
    strip = np.zeros((45, 53), bool)
    strip[:6], strip[-6:], strip[:, :6], strip[:, -6:] = True, True, True, True
    # Training's channels_last model sums its convolutions in another order than the reloaded one: ~3e-6 apart.
    # A wrong mirror at the border differs by orders of magnitude more.
    np.testing.assert_allclose(validated[:, strip], predicted[:, strip], rtol=0, atol=2e-5)
    np.testing.assert_allclose(validated, predicted, rtol=0, atol=2e-5)
