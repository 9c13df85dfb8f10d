"""The shipped presets at their real widths: parameter counts and output sizes, and the README's table of them.

The expected counts are derived by hand below, from each preset's architecture
as the README describes it (conv weight and bias shapes summed), never from the
code's own counter; the paper's figure is the paper's (31,030,658).
"""

import re
from pathlib import Path

import pytest
import torch

from unetkit.model import PRESETS, count_parameters, create_model


def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def double_conv(c_in: int, c_out: int, norm: str, residual: bool) -> int:
    """Two 3x3 convs, each with a norm (2 C: scale and shift) or, without norm, a bias; a 1x1 shortcut if shapes change."""
    bias, norm_params = norm == "none", 0 if norm == "none" else 2 * c_out
    total = conv(c_in, c_out, 3, bias) + conv(c_out, c_out, 3, bias) + 2 * norm_params
    return total + (conv(c_in, c_out, 1, bias) if residual and c_in != c_out else 0)


def hand_count(*, depth, width, norm, up="transposed", attention=False, residual=False, stem_stride=1, c_in=1, k=2) -> int:
    w = [width * 2**level for level in range(depth + 1)]
    total = double_conv(c_in, w[0], norm, residual)  # a strided first conv has the same shapes
    total += sum(double_conv(w[i - 1], w[i], norm, residual) for i in range(1, depth + 1))  # down, and the bottom
    for i in range(depth):  # up: 2x2 up-conv (or bilinear + 1x1 conv) halving the channels, gate, double conv
        total += conv(w[i + 1], w[i], 2 if up == "transposed" else 1)
        if attention:  # W_x (no bias), W_g, psi: w[i] -> w[i] // 2 -> 1
            total += conv(w[i], w[i] // 2, 1, bias=False) + conv(w[i], w[i] // 2, 1) + conv(w[i] // 2, 1, 1)
        total += double_conv(2 * w[i], w[i], norm, residual)
    if stem_stride == 2:  # back to full size before the head: a 2x2 up-conv and its norm
        total += conv(w[0], w[0], 2) + 2 * w[0]
    return total + conv(w[0], k, 1)


# The README's table: padding, depth, width, norm, up-sampling, extras.
ARCHITECTURES = {
    "paper": dict(depth=4, width=64, norm="none"),
    "default": dict(depth=4, width=16, norm="batch"),
    "fast": dict(depth=4, width=16, norm="batch", stem_stride=2),
    "attention": dict(depth=4, width=16, norm="batch", attention=True),
    "residual": dict(depth=4, width=16, norm="group", up="bilinear", residual=True),
    "tiny": dict(depth=3, width=4, norm="batch"),
}
# 1 input channel, 2 classes: the paper's figure, and the hand counts above evaluated once.
PARAMETERS = {"paper": 31_030_658, "default": 1_942_306, "fast": 1_943_378, "attention": 1_964_310,
              "residual": 1_898_802, "tiny": 30_474}
# (input side, output side): the paper's 572 -> 388 (valid padding); same padding keeps the size.
SIZES = {"paper": (572, 388), "default": (512, 512), "fast": (512, 512), "attention": (512, 512),
         "residual": (512, 512), "tiny": (512, 512)}


def test_every_preset_is_pinned():
    assert set(PRESETS) == set(ARCHITECTURES) == set(PARAMETERS) == set(SIZES)


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_count_at_real_width(name):
    assert hand_count(**ARCHITECTURES[name]) == PARAMETERS[name]
    assert count_parameters(create_model(name, in_channels=1, n_classes=2)) == PARAMETERS[name]


@pytest.mark.parametrize("name", list(PRESETS))
def test_output_size_at_real_width(name):
    side, out = SIZES[name]
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = create_model(name)
        logits = model(torch.empty(1, 1, side, side))
    assert tuple(logits.shape) == (1, 2, out, out)
    assert model.output_size(side, side) == (out, out)


def readme_parameter_column() -> dict[str, int]:
    """preset -> the "parameters (1 in, 2 classes)" cell of the README's "## Models" table."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("\n## Models\n", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines() if line.startswith("|")]
    column = rows[0].index("parameters (1 in, 2 classes)")
    return {re.sub(r"[`*]", "", row[0]): int(row[column].replace(",", "")) for row in rows[2:]}


def test_readme_model_table_matches_the_presets():
    table = readme_parameter_column()
    assert set(table) == set(PRESETS), "the README lists exactly the shipped presets"
    for name, listed in table.items():
        assert listed == count_parameters(create_model(name)), f"README: {name} has {listed:,} parameters"
