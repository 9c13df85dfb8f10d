import itertools

import pytest
import torch
from torch import nn

from unetkit import ModelConfig, UNet, create_model
from unetkit.model import PRESETS, build_model, count_parameters, summarize
from unetkit.model.layers import InstanceNorm


def conv_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


# ----------------------------------------------------------------- the paper


def test_paper_preset_matches_the_paper():
    model = create_model("paper", n_classes=2).eval()
    assert count_parameters(model) == 31_030_658
    assert len(conv_layers(model)) == 23
    assert model.margin == 92
    bottom = {}
    model.bottleneck.register_forward_hook(lambda m, i, out: bottom.update(shape=tuple(out.shape)))
    with torch.inference_mode():
        logits = model(torch.zeros(1, 1, 572, 572))
    assert tuple(logits.shape) == (1, 2, 388, 388)
    assert bottom["shape"] == (1, 1024, 28, 28)
    assert model.output_size(572, 572) == (388, 388)


def test_paper_preset_has_dropout_and_no_norm():
    model = create_model("paper")
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) for m in model.modules())


def test_he_initialisation_std():
    torch.manual_seed(0)
    model = create_model("paper")
    conv = model.encoder[3].body[0]  # 256 -> 512 channels, 3x3: 2304 inputs per neuron
    expected = (2 / (256 * 9)) ** 0.5
    assert abs(conv.weight.std().item() - expected) / expected < 0.01
    assert torch.all(conv.bias == 0)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="valid presets: paper, default"):
        create_model("nope")


def test_bad_config_values_name_the_valid_ones():
    with pytest.raises(ValueError, match="'valid', 'same'"):
        ModelConfig(padding="reflect")
    with pytest.raises(ValueError, match="depth"):
        ModelConfig(depth=7)


# ----------------------------------------------------------------- sizes


@pytest.mark.parametrize("depth", [1, 3, 4, 6])
def test_same_padding_keeps_size_for_multiples_of_two_to_the_depth(depth):
    model = UNet(ModelConfig(padding="same", depth=depth, base_width=2))
    step = 2**depth
    for size in range(step, 40 * step, step):
        assert model.output_size(size, size + step) == (size, size + step)
    with torch.inference_mode():
        assert model.eval()(torch.zeros(1, 1, 2 * step, 3 * step)).shape[-2:] == (2 * step, 3 * step)


@pytest.mark.parametrize("size", [17, 33, 100, 511, 513])
def test_same_padding_rejects_other_sizes_naming_the_nearest(size):
    model = UNet(ModelConfig(padding="same", depth=4, base_width=2))
    below, above = (size // 16) * 16, (size // 16 + 1) * 16
    with pytest.raises(ValueError, match=f"nearest valid: {below} or {above}"):
        model.output_size(size, 64)
    with pytest.raises(ValueError, match="cannot be pooled evenly"):
        model(torch.zeros(1, 1, 64, size))


def test_strided_stem_halves_the_top_level_and_doubles_the_size_unit():
    model = UNet(ModelConfig(padding="same", depth=3, base_width=4, stem_stride=2)).eval()
    top = {}
    model.encoder[0].register_forward_hook(lambda m, i, out: top.update(shape=tuple(out.shape)))
    with torch.inference_mode():
        assert model(torch.zeros(1, 1, 48, 80)).shape == (1, 2, 48, 80)
    assert top["shape"] == (1, 4, 24, 40)
    assert model.config.total_stride == 16
    with pytest.raises(ValueError, match="nearest valid: 32 or 48"):
        model.output_size(40, 48)
    with pytest.raises(ValueError, match="needs padding='same'"):
        ModelConfig(padding="valid", stem_stride=2)
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        ModelConfig(padding="same", stem_stride=4)


def test_valid_sizes_follow_the_paper_arithmetic():
    model = UNet(ModelConfig(padding="valid", depth=4, base_width=2))
    assert model.valid_input_size(500, 572) == (508, 572)
    for h in (188, 508, 572, 1004):
        out, _ = model.output_size(h, h)
        assert out == h - 2 * model.margin
    with pytest.raises(ValueError, match="nearest valid: 572 or 588"):
        model.output_size(573, 572)


@pytest.mark.parametrize(
    "options",
    [dict(depth=3, upsample="bilinear"), dict(depth=2, upsample="bilinear", stem_stride=2), dict(depth=2, stem_stride=2, residual=True)],
)
def test_receptive_field_matches_gradient_support(options):
    """The analytic receptive field equals the input support of one output pixel's gradient
    (max pooling replaced by average pooling so every pooled input carries gradient)."""
    torch.manual_seed(0)
    model = UNet(ModelConfig(padding="same", base_width=2, **options)).double().eval()
    for m in conv_layers(model):
        m.weight.data.abs_()
    widest = 0
    original = torch.nn.functional.max_pool2d
    try:
        import unetkit.model.unet as um

        um.F.max_pool2d = torch.nn.functional.avg_pool2d
        for i in range(64, 64 + model.config.total_stride):  # every pixel phase
            x = torch.ones(1, 1, 160, 160, dtype=torch.double, requires_grad=True)
            model(x)[0, 0, i, i].backward()
            cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero()
            widest = max(widest, int(cols.max() - cols.min() + 1))
    finally:
        um.F.max_pool2d = original
    assert widest == model.receptive_field


def test_summary_reports_parameters_flops_and_sizes():
    text = summarize(create_model("paper"), 572, 572)
    assert "31,030,658" in text and "388 x 388" in text and "GFLOP" in text and "(1024, 28, 28)" in text


# ----------------------------------------------------------------- shared model tester

OPTIONS = list(itertools.product(["valid", "same"], ["none", "batch", "instance", "group"], ["transposed", "bilinear"], [False, True], [False, True]))


@pytest.mark.parametrize("channels,classes", [(1, 2), (3, 5)])
@pytest.mark.parametrize("padding,norm,upsample,attention,residual", OPTIONS)
def test_model_options(padding, norm, upsample, attention, residual, channels, classes):
    check_model(ModelConfig(
        in_channels=channels, n_classes=classes, depth=2, base_width=4, padding=padding, norm=norm,
        upsample=upsample, attention=attention, residual=residual, dropout=0.1,
    ))


@pytest.mark.parametrize("norm,residual,attention", list(itertools.product(["none", "batch", "group"], [False, True], [False, True])))
def test_strided_stem_options(norm, residual, attention):
    check_model(ModelConfig(
        in_channels=3, n_classes=3, depth=2, base_width=4, padding="same", norm=norm, residual=residual,
        attention=attention, stem_stride=2, dropout=0.1,
    ))


def check_model(config):
    """Shapes, gradients to every parameter, deterministic eval, exact state_dict round trip."""
    torch.manual_seed(0)
    channels, classes = config.in_channels, config.n_classes
    model = build_model(config)
    height, width = model.valid_input_size(64, 64)
    x = torch.randn(2, channels, height, width)

    # Shapes.
    logits = model(x)
    assert logits.shape == (2, classes, *model.output_size(height, width))

    # Finite, non-zero gradients reach every parameter.
    logits.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name

    # Eval mode is deterministic, and a state_dict round trip is exact.
    model.eval()
    with torch.inference_mode():
        first, second = model(x), model(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    clone = build_model(config)
    clone.load_state_dict(model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(clone.eval()(x), first, rtol=0, atol=0)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_attention_coefficients_lie_in_unit_interval_with_skip_shape(padding):
    torch.manual_seed(0)
    model = UNet(ModelConfig(depth=3, base_width=4, padding=padding, attention=True)).eval()
    seen = []

    def capture(gate, inputs, output):
        skip, signal = inputs
        alpha = gate.coefficients(skip, signal)
        seen.append((alpha, skip))

    for up in model.decoder:
        up.gate.register_forward_hook(capture)
    size = model.valid_input_size(96, 96)
    with torch.inference_mode():
        model(torch.randn(1, 1, *size))
    assert len(seen) == 3
    for alpha, skip in seen:
        assert alpha.shape == (1, 1, *skip.shape[-2:])
        assert alpha.min() >= 0 and alpha.max() <= 1


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_runs(name):
    model = create_model(name, base_width=4).eval()
    size = model.valid_input_size(64, 64)
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, *size))
    assert out.shape[1] == 2


def test_instance_norm_in_nhwc_matches_torch_values_and_gradients():
    """unetkit's instance norm runs NHWC input as one batch norm per sample: the same numbers as PyTorch's op."""
    torch.manual_seed(0)
    ours, torchs = InstanceNorm(8, affine=True), nn.InstanceNorm2d(8, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2)
        ours.bias.uniform_(-1, 1)
    torchs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 8, 17, 13) * 3 + 1
    x_nhwc = x.clone().to(memory_format=torch.channels_last).requires_grad_()
    x_plain = x.clone().requires_grad_()
    y_nhwc, y_plain = ours(x_nhwc), torchs(x_plain)
    grad = torch.randn_like(y_plain)
    (y_nhwc * grad).sum().backward()
    (y_plain * grad).sum().backward()
    assert y_nhwc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_nhwc, y_plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x_nhwc.grad, x_plain.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.weight.grad, torchs.weight.grad, atol=1e-4, rtol=1e-5)
    traced = torch.jit.trace(ours.eval(), x_nhwc[:2].detach())  # traced: the plain op, any batch size
    torch.testing.assert_close(traced(x_nhwc.detach()), torchs.eval()(x), atol=1e-5, rtol=1e-5)
    running = InstanceNorm(8, affine=True, track_running_stats=True)  # running statistics: torch's op, in eval too
    running(x_nhwc.detach())
    torchs_running = nn.InstanceNorm2d(8, affine=True, track_running_stats=True)
    torchs_running.load_state_dict(running.state_dict())
    torch.testing.assert_close(running.eval()(x_nhwc.detach()), torchs_running.eval()(x), atol=1e-5, rtol=1e-5)
