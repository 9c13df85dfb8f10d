"""Encoder models (model/encoders.py, encoder_unet.py, encoder_weights.py): shapes, channels, weights, errors.

Every encoder here is its family's architecture at toy size (hidden sizes 8-64,
one layer per stage), built from the library config: nothing is downloaded.
"""

import pytest
import torch
from safetensors.torch import save_file

from test_model import check_model
from unetkit.cli import main
from unetkit.config import ModelConfig
from unetkit.errors import UserError
from unetkit.model import activation_bytes_per_pixel, build_model, choose_tile, count_parameters, preset_config
from unetkit.model import encoder_weights as weights_module
from unetkit.model.encoder_weights import adapt_input_conv, load_encoder_weights
from unetkit.model.encoders import Encoder, encoder_channels

pytest.importorskip("transformers")

SMALL = dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1])
TOY = {  # family -> encoder name, its toy library config
    "resnet": ("resnet18", {**SMALL, "embedding_size": 8}),
    "convnext": ("convnext_tiny", SMALL),
    "convnextv2": ("convnextv2_atto", SMALL),
}


def toy_config(family="resnet", channels=1, classes=2, **fields) -> ModelConfig:
    name, library = TOY[family]
    return preset_config("default", encoder=name, encoder_config=library, in_channels=channels, n_classes=classes, base_width=4, **fields)


def toy_model(family="resnet", channels=1, seed=0, **fields):
    torch.manual_seed(seed)
    return build_model(toy_config(family, channels, **fields))


# ----------------------------------------------------------------- the shared model tester


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("family", list(TOY))
def test_encoder_models_pass_the_shared_model_tester(family, channels):
    check_model(toy_config(family, channels, classes=3))


def test_decoder_options_apply_to_encoder_models():
    model = toy_model(attention=True, upsample="bilinear", residual=True, norm="group", dropout=0.2)
    kinds = {type(m).__name__ for m in model.decoder.modules()}
    assert {"AttentionGate", "GroupNorm", "Upsample"} <= kinds and "BatchNorm2d" not in kinds
    check_model(model.config)


def test_encoder_sizes_are_multiples_of_its_total_stride():
    model = toy_model().eval()
    assert model.config.total_stride == 32 and model.margin == 0
    assert model.output_size(64, 96) == (64, 96)
    assert model.valid_input_size(33, 70) == (64, 96)
    with pytest.raises(ValueError, match="encoder resnet18: multiples of 32.*nearest valid: 32 or 64"):
        model.check_input_size(48, 64)
    tile, _ = choose_tile(model, memory_mb=256)
    assert tile % 32 == 0


def test_memory_estimate_counts_the_encoder_features():
    plain = activation_bytes_per_pixel(preset_config("default", depth=5))
    wide = activation_bytes_per_pixel(preset_config("default", encoder="resnet50"))  # skips of 256-1024 channels
    assert wide > plain
    assert encoder_channels(preset_config("default", encoder="resnet50")) == [256, 512, 1024, 2048]


# ----------------------------------------------------------------- bad configs


def test_unknown_encoder_names_close_matches():
    with pytest.raises(UserError, match="unknown encoder 'resnet43'.*did you mean resnet34"):
        build_model(preset_config("default", encoder="resnet43"))


def test_valid_padding_and_strided_stem_are_refused():
    with pytest.raises(ValueError, match="needs padding='same'"):
        preset_config("paper", encoder="resnet18")
    with pytest.raises(ValueError, match="own stem"):
        preset_config("fast", encoder="resnet18")


def test_bad_library_config_is_a_user_error():
    with pytest.raises(UserError, match="bad library config"):
        build_model(preset_config("default", encoder="resnet18", encoder_config={"layer_type": "nope"}))


# ----------------------------------------------------------------- input channels


def test_one_channel_encoder_sees_a_grey_image_as_the_rgb_encoder_sees_it_replicated(tmp_path):
    torch.manual_seed(1)
    rgb = Encoder(toy_config(channels=3)).eval()
    path = tmp_path / "rgb.safetensors"
    save_file(rgb.backbone.state_dict(), path)
    grey = Encoder(toy_config(channels=1)).eval()
    load_encoder_weights(grey, str(path))
    x = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        for ours, theirs in zip(grey(x), rgb(x.repeat(1, 3, 1, 1))):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_more_channels_repeat_rgb_scaled_by_three_over_c():
    weight = torch.randn(8, 3, 7, 7)
    adapted = adapt_input_conv(weight, 4)
    torch.testing.assert_close(adapted, torch.cat([weight, weight[:, :1]], 1) * 0.75)
    torch.testing.assert_close(adapt_input_conv(weight, 1), weight.sum(1, keepdim=True))


# ----------------------------------------------------------------- weights files


def library_checkpoint(family="resnet", seed=1) -> dict:
    """A backbone's weights as the library would save them (3 channels), different from any model's init."""
    torch.manual_seed(seed)
    return Encoder(toy_config(family, channels=3)).backbone.state_dict()


@pytest.mark.parametrize("layout", ["backbone", "hub"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_load_and_give_the_library_features(tmp_path, suffix, layout):
    state = library_checkpoint()
    if layout == "hub":  # the hub's classification checkpoint: prefixed keys and a head
        state = {**{f"resnet.{k}": v for k, v in state.items()}, "classifier.1.weight": torch.zeros(10, 64)}
    path = tmp_path / f"weights{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model = toy_model(channels=3).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        before = model(x)
    load_encoder_weights(model.encoder, str(path))
    torch.manual_seed(1)
    reference = Encoder(toy_config(channels=3)).eval()
    with torch.inference_mode():
        assert not torch.allclose(model(x), before)
        for ours, theirs in zip(model.encoder(x), reference(x)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_weights_of_another_encoder_name_the_first_mismatching_keys(tmp_path):
    path = tmp_path / "convnext.safetensors"
    save_file(library_checkpoint("convnext"), path)
    with pytest.raises(UserError, match="has keys the encoder lacks: encoder.stages.0.layers.0.dwconv") as error:
        load_encoder_weights(toy_model().encoder, str(path))
    assert "\n" not in str(error.value) and "--" in str(error.value)


def test_weights_of_another_width_name_the_shapes(tmp_path):
    state = library_checkpoint()
    path = tmp_path / "wide.safetensors"
    save_file(state, path)
    model = build_model(preset_config("default", encoder="resnet18", encoder_config={**TOY["resnet"][1], "hidden_sizes": [8, 16, 32, 128]}))
    with pytest.raises(UserError, match=r"shapes that differ: encoder\.stages\.3"):
        load_encoder_weights(model.encoder, str(path))


def test_a_file_that_is_not_weights_is_a_one_line_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(UserError, match="unreadable encoder weights") as error:
        load_encoder_weights(toy_model().encoder, str(path))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="not found"):
        load_encoder_weights(toy_model().encoder, str(tmp_path / "missing.safetensors"))


def test_imagenet_offline_says_how_to_pass_a_file(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(weights_module, "_from_cache", lambda *a: None)  # a machine may hold the hub's files
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="offline mode.*--encoder-weights FILE") as error:
        load_encoder_weights(toy_model().encoder, "imagenet")
    assert "\n" not in str(error.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # a host that never resolves
    with pytest.raises(UserError, match=r"hub\.invalid\) is unreachable.*https://huggingface.co/microsoft/resnet-18"):
        load_encoder_weights(toy_model().encoder, "imagenet")


# ----------------------------------------------------------------- the summary


def test_model_command_summarises_an_encoder_model(capsys):
    assert main(["model", "--encoder", "convnextv2_atto", "--input-size", "256", "256"]) == 0
    out = capsys.readouterr().out
    with torch.device("meta"):
        expected = count_parameters(build_model(preset_config("default", encoder="convnextv2_atto")))
    assert f"parameters: {expected:,}" in out
    assert "encoder[3]" in out and "(320, 8, 8)" in out  # the stride-32 features of the 320-channel last stage
    assert "receptive field: ~" in out and "GFLOP" in out
    assert main(["model", "--encoder", "resnet43"]) == 2
    assert "did you mean resnet34" in capsys.readouterr().err
