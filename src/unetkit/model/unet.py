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

from ..config import ModelConfig
from .layers import CONVS_PER_BLOCK, ConvBlock, Up, he_init, make_norm


class UNetBase(nn.Module):
    """What every network here answers besides its forward pass: the size arithmetic of `self.config`.

    Same padding: sides must be multiples of `config.total_stride`; valid
    padding: the paper's trace of convolutions and poolings (`_trace`).
    """

    config: ModelConfig

    def frozen_norms(self) -> list[nn.Module]:
        """BatchNorm layers whose statistics training keeps fixed (none here; see EncoderUNet)."""
        return []

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
                encoder = f", encoder {self.config.encoder}" if self.config.encoder else ""
                raise ValueError(
                    f"input {axis} {size} cannot be pooled evenly by this U-Net ({self.config.padding} padding, "
                    f"depth {self.config.depth}{encoder}: multiples of {self.config.total_stride}); nearest valid: {near}"
                )


class UNet(UNetBase):
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
        if c.encoder is not None:
            raise ValueError(f"UNet is the plain U-Net; a model with encoder {c.encoder!r} is built by build_model (EncoderUNet)")
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
        self.apply(he_init)

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
