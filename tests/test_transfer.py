"""Transfer end to end (training/transfer.py): encoder weights, --init, lr scale, freezing, normalisation,
and an encoder run through predict, TTA and export.

Runs are 2 steps on four 64 px images with a toy ResNet encoder (hidden sizes
8-64) built from its library config; weights files are written by the tests.
"""

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from _train_data import make_dataset
from unetkit.checkpoint import load_run
from unetkit.cli import main
from unetkit.config import ModelConfig
from unetkit.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from unetkit.errors import UserError
from unetkit.io import read_image
from unetkit.model import build_model, preset_config
from unetkit.model.encoders import Encoder
from unetkit.prediction import predict
from unetkit.prediction.export import FORMATS, export_run
from unetkit.training import train
from unetkit.training.transfer import head_keys, init_from_run

pytest.importorskip("transformers")

TOY = {"hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "embedding_size": 8}
RUN = dict(encoder="resnet18", encoder_config=TOY, base_width=4, batch_size=2, patch_size=64, steps=2, samples_per_epoch=2,
           schedule="constant", warmup_steps=0, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("discs"), n=4, size=64)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A toy ResNet's weights as the library saves them (RGB), seeded apart from any model's init."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("weights") / "resnet.safetensors"
    save_file(Encoder(preset_config("default", encoder="resnet18", encoder_config=TOY, in_channels=3)).backbone.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def scratch_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "scratch"
    return train(*data, out, encoder_weights="none", normalization="meanstd", **RUN)  # a normalisation --init must repeat


def encoder_state(run) -> dict:
    return {k.removeprefix("encoder.backbone."): v for k, v in load_file(run / "model.safetensors").items() if k.startswith("encoder.")}


def grey(weights_file) -> dict:
    """The file's weights as the one-channel model holds them (first conv summed over RGB)."""
    state = load_file(weights_file)
    key = "embedder.embedder.convolution.weight"
    return {**state, key: state[key].sum(1, keepdim=True)}


def changed(before: dict, after: dict, running: bool) -> list[str]:
    """Keys whose tensors differ; `running`: the BatchNorm statistics, else the weights (step counters neither)."""
    keys = [k for k in before if not k.endswith("num_batches_tracked")]
    return [k for k in keys if k.endswith(("running_mean", "running_var")) == running and not torch.equal(before[k], after[k])]


# ----------------------------------------------------------------- train -> predict -> export


def test_encoder_run_trains_predicts_and_exports_through_the_cli(data, tmp_path, capsys):
    images, masks = data
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"encoder": "resnet18", "encoder_config": TOY, "base_width": 4}))
    run, out = tmp_path / "run", tmp_path / "pred"
    flags = ["--batch-size", "2", "--patch-size", "64", "--steps", "2", "--samples-per-epoch", "2", "--quiet"]
    assert main(["train", "--config", str(recipe), "--images", str(images), "--masks", str(masks), "--out", str(run),
                 "--encoder-weights", "none", *flags]) == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["model"]["encoder"] == "resnet18" and stored["model"]["encoder_config"] == TOY
    assert stored["data"]["normalization"] == "percentile"  # random weights: the plain default
    assert main(["predict", str(run), str(images / "00.png"), "--out", str(out), "--tta"]) == 0
    probs = read_image(out / "00_probs.tif")
    np.testing.assert_allclose(probs, predict(load_run(run), read_image(images / "00.png"), tta=True), atol=1e-5)
    for fmt in FORMATS:  # the weights of a bf16-trained run (the default on CPUs that have it) reached 1.1e-4
        assert export_run(run, fmt).max_abs_diff < 5e-4
    assert main(["predict", str(run), str(images / "00.png"), "--out", str(tmp_path / "onnx"), "--backend", "onnxruntime"]) == 0
    np.testing.assert_allclose(read_image(tmp_path / "onnx" / "00_probs.tif"), predict(load_run(run), read_image(images / "00.png")),
                               atol=1e-4)


def test_imagenet_by_default_offline_is_a_one_line_error(data, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    from unetkit.model import encoder_weights

    monkeypatch.setattr(encoder_weights, "_from_cache", lambda *a: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code = main(["train", "--images", str(data[0]), "--masks", str(data[1]), "--out", str(tmp_path / "run"), "--encoder", "resnet18",
                 "--steps", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--encoder-weights FILE" in err


# ----------------------------------------------------------------- weights, normalisation, the recipe


def test_pretrained_file_brings_imagenet_normalisation_and_keeps_its_statistics(data, tmp_path, weights_file):
    # Scale 0: the encoder's weights cannot move; batch 2 < 4: nor can its BatchNorm statistics.
    run = train(*data, tmp_path / "run", encoder_weights=str(weights_file), encoder_lr_scale=0.0, **RUN)
    stored = json.loads((run / "config.json").read_text())
    assert stored["data"]["normalization"] == "imagenet"
    assert stored["data"]["mean"] == [pytest.approx(sum(IMAGENET_MEAN) / 3)] and stored["data"]["std"] == [pytest.approx(sum(IMAGENET_STD) / 3)]
    expected = grey(weights_file)
    after = encoder_state(run)
    assert set(expected) - set(after) <= {k for k in expected if k.endswith("num_batches_tracked")}
    assert not changed(expected, after, running=False), "the encoder's weights moved at lr scale 0"
    assert not changed(expected, after, running=True), "the frozen BatchNorm statistics moved"


def test_bn_statistics_follow_the_batch_when_not_frozen(data, tmp_path, weights_file):
    run = train(*data, tmp_path / "run", encoder_weights=str(weights_file), encoder_lr_scale=0.0, freeze_encoder_bn_below=0, **RUN)
    expected, after = grey(weights_file), encoder_state(run)
    assert not changed(expected, after, running=False)
    assert changed(expected, after, running=True), "BatchNorm statistics should follow the data when not frozen"


def test_encoder_lr_scale_sets_the_encoder_group(data, tmp_path, scratch_run):
    # A scratch encoder learns at the full rate (scale 1 by default) ...
    groups = torch.load(scratch_run / "train_state.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0]
    # ... and a given scale reaches the optimiser's learning rate of the encoder's parameters only.
    run = train(*data, tmp_path / "run", encoder_weights="none", encoder_lr_scale=0.25, lr=0.004, **RUN)
    groups = torch.load(run / "train_state.pt", weights_only=True)["optimizer"]["param_groups"]
    names = [name for name, _ in load_run(run).model.named_parameters()]
    assert [g["lr"] for g in groups] == [pytest.approx(0.004), pytest.approx(0.001)]
    assert len(groups[1]["params"]) == sum(n.startswith("encoder.") for n in names) == len(names) - len(groups[0]["params"])


def test_freeze_encoder_steps_keeps_the_encoder_then_lets_it_learn(data, tmp_path, weights_file):
    frozen = train(*data, tmp_path / "frozen", encoder_weights=str(weights_file), freeze_encoder_steps=2, freeze_encoder_bn_below=0, **RUN)
    expected = grey(weights_file)
    assert not changed(expected, encoder_state(frozen), running=False), "weights moved while frozen"
    assert not changed(expected, encoder_state(frozen), running=True), "statistics moved while frozen"
    thawed = train(*data, tmp_path / "thawed", encoder_weights=str(weights_file), freeze_encoder_steps=1, freeze_encoder_bn_below=0, **RUN)
    assert changed(expected, encoder_state(thawed), running=False), "the encoder should learn from step 1 on"


# ----------------------------------------------------------------- --init


def test_init_loads_a_run_bit_for_bit(scratch_run):
    stored = load_run(scratch_run).model.state_dict()  # best, as --init takes it
    torch.manual_seed(123)
    net = build_model(load_run(scratch_run).model.config)
    assert init_from_run(net, scratch_run) == []
    for key, value in net.state_dict().items():
        assert torch.equal(value, stored[key]), key


def test_init_with_other_classes_keeps_a_fresh_head(scratch_run):
    stored = load_run(scratch_run).model.state_dict()  # best, as --init takes it
    torch.manual_seed(123)
    net = build_model(ModelConfig(**{**json.loads((scratch_run / "config.json").read_text())["model"], "n_classes": 3}))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    assert init_from_run(net, scratch_run) == head_keys(net) == ["head.weight", "head.bias"]
    for key, value in net.state_dict().items():
        assert torch.equal(value, fresh[key] if key.startswith("head.") else stored[key]), key


def test_init_from_another_architecture_is_a_one_line_error(scratch_run):
    config = ModelConfig(**{**json.loads((scratch_run / "config.json").read_text())["model"], "base_width": 8})
    with pytest.raises(UserError, match="another architecture \\(base_width 4 there, 8 here\\)") as error:
        init_from_run(build_model(config), scratch_run)
    assert "\n" not in str(error.value)


def test_init_trains_from_the_run_with_its_normalisation(data, tmp_path, scratch_run):
    run = train(*data, tmp_path / "run", init=str(scratch_run), **RUN)
    stored = json.loads((run / "config.json").read_text())
    assert stored["train"]["init"] == str(scratch_run) and stored["train"]["encoder_weights"] == "none"
    assert stored["train"]["encoder_lr_scale"] == 0.1  # the whole network is pretrained
    assert stored["data"]["normalization"] == "meanstd"  # the init run's, not ImageNet's or the default
    with pytest.raises(UserError, match="both set the first weights"):
        train(*data, tmp_path / "both", init=str(scratch_run), encoder_weights="x.pt", **RUN)
