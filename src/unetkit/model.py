"""The U-Net of Ronneberger, Fischer and Brox (2015) and its modern variants.

The paper's network: per level two unpadded 3x3 convolutions with ReLU, 2x2 max
pooling down, a 2x2 up-convolution that halves the channels, concatenation
with the centre-cropped skip, and a final 1x1 convolution. `ModelConfig`
switches on same padding, normalisation, bilinear up-sampling, attention gates,
residual blocks and a strided stem; the size bookkeeping is done once, in `__init__`.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig, to_dict

CONVS_PER_BLOCK = 2

PRESETS: dict[str, dict] = {
    # The paper, exactly: 23 conv layers, 31,030,658 parameters for 2 classes.
    "paper": dict(padding="valid", depth=4, base_width=64, norm="none", upsample="transposed", dropout=0.5),
    # CPU-friendly default: same padding (output = input size), batch norm, narrow.
    "default": dict(padding="same", depth=4, base_width=16, norm="batch", upsample="transposed"),
    # The default with a stride-2 first conv: the U-Net runs at half resolution (4x fewer FLOPs, ~3x faster on a CPU).
    "fast": dict(padding="same", depth=4, base_width=16, norm="batch", upsample="transposed", stem_stride=2),
    # The default with additive attention gates on the skips.
    "attention": dict(padding="same", depth=4, base_width=16, norm="batch", upsample="transposed", attention=True),
    # Residual blocks, group norm: robust to batch size 1.
    "residual": dict(padding="same", depth=4, base_width=16, norm="group", upsample="bilinear", residual=True),
    # Tiny, for tests and smoke runs.
    "tiny": dict(padding="same", depth=3, base_width=4, norm="batch", upsample="transposed"),
}


def preset_config(name: str, **overrides) -> ModelConfig:
    """The `ModelConfig` of a named preset, with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def create_model(name: str = "default", **overrides) -> "UNet":
    """A U-Net from a named preset, e.g. `create_model("paper", n_classes=2)`."""
    return UNet(preset_config(name, **overrides))


# --------------------------------------------------------------------------- layers


def make_norm(name: str, channels: int) -> nn.Module:
    """Normalisation layer from its name (one factory, no scattered branches)."""
    factories = {
        "none": lambda: nn.Identity(),
        "batch": lambda: nn.BatchNorm2d(channels),
        "instance": lambda: nn.InstanceNorm2d(channels, affine=True),
        # Up to 8 groups, as many as divide the channel count.
        "group": lambda: nn.GroupNorm(math.gcd(8, channels), channels),
    }
    return factories[name]()


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre `height x width` of an NCHW tensor (the paper's skip crop)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by norm and ReLU; optional residual shortcut.

    `stride` 2 makes the first convolution (and the shortcut) halve the resolution.
    """

    def __init__(self, in_ch: int, out_ch: int, config: ModelConfig, stride: int = 1):
        super().__init__()
        pad = 1 if config.padding == "same" else 0
        bias = config.norm == "none"  # a norm layer's shift makes the conv bias redundant
        layers: list[nn.Module] = []
        for i in range(CONVS_PER_BLOCK):
            conv = nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, stride=stride if i == 0 else 1, padding=pad, bias=bias)
            layers += [conv, make_norm(config.norm, out_ch)]
            if i < CONVS_PER_BLOCK - 1 or not config.residual:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.shortcut = None
        if config.residual:
            same = in_ch == out_ch and stride == 1
            self.shortcut = nn.Identity() if same else nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.shortcut is None:
            return y
        # Valid convs shrink the body's output; the shortcut is cropped to match.
        return F.relu(y + center_crop(self.shortcut(x), y.shape[-2], y.shape[-1]))


class AttentionGate(nn.Module):
    """Additive attention (Oktay et al. 2018): weigh skip features by a gating signal.

    alpha = sigmoid(psi(relu(W_x x + W_g g))), one coefficient per skip pixel.
    """

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int):
        super().__init__()
        self.w_x = nn.Conv2d(skip_ch, inter_ch, 1, bias=False)
        self.w_g = nn.Conv2d(gate_ch, inter_ch, 1)
        self.psi = nn.Conv2d(inter_ch, 1, 1)

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Attention coefficients in [0, 1], shape (N, 1, H, W) of the skip."""
        return torch.sigmoid(self.psi(F.relu(self.w_x(skip) + self.w_g(gate))))

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.coefficients(skip, gate)


class Up(nn.Module):
    """Up-sample by 2 halving the channels, gate and crop the skip, concatenate, ConvBlock."""

    def __init__(self, in_ch: int, out_ch: int, config: ModelConfig):
        super().__init__()
        if config.upsample == "transposed":
            self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(in_ch, out_ch, 1)
            )
        self.gate = AttentionGate(out_ch, out_ch, max(out_ch // 2, 1)) if config.attention else None
        self.block = ConvBlock(2 * out_ch, out_ch, config)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        skip = center_crop(skip, x.shape[-2], x.shape[-1])
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.block(torch.cat([skip, x], dim=1))


# --------------------------------------------------------------------------- network


class UNet(nn.Module):
    """`UNet(config)` maps (N, C_in, H, W) to logits (N, n_classes, H', W').

    H' = H for same padding and H - 2 * margin for valid padding. Sizes that
    cannot be pooled evenly raise a ValueError naming the nearest valid sizes.
    With `stem_stride=2` the whole U-Net runs at half resolution and a 2x2
    up-convolution brings its features back to full size before the 1x1 head.
    """

    def __init__(self, config: ModelConfig | None = None, **fields):
        super().__init__()
        config = config or ModelConfig()
        self.config = dataclasses.replace(config, **fields) if fields else config
        c = self.config
        # Channel bookkeeping, once: widths[i] is the width of level i (0 = top).
        widths = [c.base_width * 2**i for i in range(c.depth + 1)]
        self.encoder = nn.ModuleList(
            ConvBlock(widths[i - 1], widths[i], c) if i else ConvBlock(c.in_channels, widths[0], c, stride=c.stem_stride)
            for i in range(c.depth)
        )
        self.bottleneck = ConvBlock(widths[-2], widths[-1], c)
        self.dropout = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        # decoder[0] is the deepest: widths[depth] -> widths[depth - 1].
        self.decoder = nn.ModuleList(Up(widths[i + 1], widths[i], c) for i in reversed(range(c.depth)))
        self.head = nn.Conv2d(widths[0], c.n_classes, 1)
        if c.stem_stride == 2:
            up = nn.ConvTranspose2d(widths[0], widths[0], 2, stride=2)
            self.head = nn.Sequential(up, make_norm(c.norm, widths[0]), nn.ReLU(inplace=True), self.head)
        self.apply(_he_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(x.shape[-2], x.shape[-1])
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(self.bottleneck(x))
        for up, skip in zip(self.decoder, reversed(skips)):
            x = up(x, skip)
        return self.head(x)

    # ------------------------------------------------------------- size arithmetic

    @property
    def margin(self) -> int:
        """Pixels lost at each border (0 for same padding; 92 for the paper)."""
        return 0 if self.config.padding == "same" else _valid_margin(self.config.depth)

    def _trace(self, size: int) -> int | None:
        """Output size along one axis, or None if `size` cannot be pooled evenly."""
        if self.config.padding == "same":
            return size if size > 0 and size % self.config.total_stride == 0 else None
        shrink = 2 * CONVS_PER_BLOCK
        for _ in range(self.config.depth):
            size -= shrink
            if size <= 0 or size % 2:
                return None
            size //= 2
        size -= shrink
        for _ in range(self.config.depth):
            if size <= 0:
                return None
            size = 2 * size - shrink
        return size if size > 0 else None

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Logit map size for an input of `height x width` (validated)."""
        self.check_input_size(height, width)
        return self._trace(height), self._trace(width)

    def _valid_sizes_near(self, size: int) -> tuple[int | None, int]:
        below = next((s for s in range(size - 1, 0, -1) if self._trace(s)), None)
        above = next(s for s in range(max(size, 1), size + 10**6) if self._trace(s))
        return below, above

    def valid_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The nearest valid input size at or above `height x width`."""
        return self._valid_sizes_near(height)[1], self._valid_sizes_near(width)[1]

    def check_input_size(self, height: int, width: int) -> None:
        for axis, size in (("height", height), ("width", width)):
            if self._trace(size) is None:
                below, above = self._valid_sizes_near(size)
                near = f"{below} or {above}" if below else f"{above}"
                raise ValueError(
                    f"input {axis} {size} cannot be pooled evenly by this U-Net "
                    f"({self.config.padding} padding, depth {self.config.depth}); nearest valid: {near}"
                )

    @property
    def receptive_field(self) -> int:
        """Side of the input window that one output pixel depends on (widest over pixel phases)."""
        stem, unit = self.config.stem_stride, self.config.total_stride
        widths = []
        for phase in range(unit):
            pixel = (unit * 1000 + phase) // stem  # far from any border; the head's up-conv maps it to level 0
            lo, hi = self._input_window(0, pixel, pixel)
            widths.append(hi - lo + 1)
        return max(widths)

    def _input_window(self, level: int, lo: int, hi: int) -> tuple[int, int]:
        """Input pixels that decoder level `level` pixels lo..hi depend on (same-padding coordinates)."""
        if level == self.config.depth:
            return self._encoder_window(level, lo, hi)
        lo, hi = lo - CONVS_PER_BLOCK, hi + CONVS_PER_BLOCK
        skip = self._encoder_window(level, lo, hi)
        if self.config.upsample == "transposed":  # each fine pixel comes from one coarse pixel
            coarse = lo // 2, hi // 2
        else:  # bilinear, align_corners=False: coarse position x/2 - 1/4 and its right neighbour
            coarse = math.floor(lo / 2 - 0.25), math.floor(hi / 2 - 0.25) + 1
        deep = self._input_window(level + 1, *coarse)
        return min(skip[0], deep[0]), max(skip[1], deep[1])

    def _encoder_window(self, level: int, lo: int, hi: int) -> tuple[int, int]:
        """Input pixels that encoder level `level` output pixels lo..hi depend on."""
        lo, hi = lo - CONVS_PER_BLOCK, hi + CONVS_PER_BLOCK  # 3x3 convs: one pixel per side each
        if level == 0:
            # A strided first conv: its outputs lo+1..hi-1 read input pixels 2(lo+1)-1..2(hi-1)+1.
            return (2 * lo + 1, 2 * hi - 1) if self.config.stem_stride == 2 else (lo, hi)
        return self._encoder_window(level - 1, 2 * lo, 2 * hi + 1)  # 2x2 max pooling


def _valid_margin(depth: int) -> int:
    """Per-side margin of the valid-padding network: 2 px per conv, scaled per level.

    Encoder level l and decoder level l each lose 2 * CONVS_PER_BLOCK px (both
    sides) at scale 2**l; the bottleneck loses the same at scale 2**depth.
    """
    loss = CONVS_PER_BLOCK  # px lost per side per block at its own scale
    return sum(2 * loss * 2**level for level in range(depth)) + loss * 2**depth


def _he_init(module: nn.Module) -> None:
    """The paper's initialisation: normal with std sqrt(2 / fan_in), zero bias."""
    if isinstance(module, nn.Conv2d):
        fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
    elif isinstance(module, nn.ConvTranspose2d):
        # A stride == kernel up-conv feeds each output pixel from one tap per input channel.
        fan_in = module.in_channels
    else:
        return
    nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_in))
    if module.bias is not None:
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------- summary


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(model: UNet, height: int, width: int) -> str:
    """A printable layer table with output shapes, parameters and FLOPs for one input.

    Runs on the meta device: no memory for activations, no compute.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model.check_input_size(height, width)
    meta = UNet(model.config).to("meta").eval()
    rows: list[tuple[str, tuple, int]] = []
    named = [(f"encoder.{i}", m) for i, m in enumerate(meta.encoder)]
    named += [("bottleneck", meta.bottleneck)] + [(f"decoder.{i}", m) for i, m in enumerate(meta.decoder)]
    named += [("head", meta.head)]
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: rows.append((name, tuple(out.shape[1:]), count_parameters(mod))))
        for name, m in named
    ]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, model.config.in_channels, height, width, device="meta"))
    for h in hooks:
        h.remove()
    convs = sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
    out_h, out_w = model.output_size(height, width)
    lines = [f"{'layer':<12} {'output (C, H, W)':<22} {'parameters':>12}"]
    lines += [f"{name:<12} {str(shape):<22} {params:>12,}" for name, shape, params in rows]
    lines += [
        "",
        "config: " + ", ".join(f"{k}={v}" for k, v in to_dict(model.config).items()),
        f"parameters: {count_parameters(model):,}   conv layers: {convs}",
        f"input: {height} x {width}   output: {out_h} x {out_w}   margin: {model.margin} px",
        f"FLOPs: {counter.get_total_flops() / 1e9:.2f} GFLOP per image   receptive field: {model.receptive_field} px",
    ]
    return "\n".join(lines)

