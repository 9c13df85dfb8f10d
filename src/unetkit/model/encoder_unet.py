"""A U-Net whose contracting path is a library encoder (model/encoders.py) and whose expanding path is ours.

The encoder's feature maps start at stride 4 in every supported family
(ResNet's stem pools, ConvNeXt's patchifies), so two of our ConvBlocks on the
input give the decoder's top levels their skips at full and half resolution,
as the U-Net's own top levels do: thin structures (membranes a few pixels
wide) need full-resolution features. Decoder level i (stride 2**i) has
`base_width * 2**i` channels (16, 32, ..., 256 by default, as
segmentation_models.pytorch's U-Net decoder), with the norm, attention,
residual and up-sampling options of the plain U-Net.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import ModelConfig
from .encoders import Encoder, chain, chain_receptive_field
from .layers import CONVS_PER_BLOCK, ConvBlock, Up, he_init
from .unet import UNetBase


class EncoderUNet(UNetBase):
    """`EncoderUNet(config)` maps (N, C_in, H, W) to logits (N, n_classes, H, W); H and W multiples of 32."""

    def __init__(self, config: ModelConfig | None = None, **fields):
        super().__init__()
        config = dataclasses.replace(config or ModelConfig(), **fields)
        if config.encoder is None:
            raise ValueError("EncoderUNet needs config.encoder (a name of model.encoders.ENCODERS)")
        self.config = c = config
        self.encoder = Encoder(c)
        # Channel bookkeeping, once: level i is at stride 2**i; levels 0, 1 are ours, 2..5 the encoder's.
        widths = [c.base_width * 2**i for i in range(c.depth)]  # decoder output of levels 0..4
        self.shallow = nn.ModuleList([ConvBlock(c.in_channels, widths[0], c), ConvBlock(widths[0], widths[1], c, stride=2)])
        skips = [widths[0], widths[1], *self.encoder.channels[:-1]]  # skip channels of levels 0..4
        self.dropout = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        # decoder[0] is the deepest: the encoder's stride-32 features -> level 4.
        deeper = [*widths[1:], self.encoder.channels[-1]]  # input channels of the Up into level i: deeper[i]
        self.decoder = nn.ModuleList(Up(deeper[i], widths[i], c, skip_ch=skips[i]) for i in reversed(range(c.depth)))
        self.head = nn.Conv2d(widths[0], c.n_classes, 1)
        for part in (self.shallow, self.decoder, self.head):  # the encoder keeps the library's init (or its weights)
            part.apply(he_init)
        self.encoder_frozen = False  # all of the encoder fixed (`freeze_encoder_steps`)
        self.encoder_bn_frozen = False  # only its BatchNorm statistics fixed (small batches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(x.shape[-2], x.shape[-1])
        skips = []
        y = x
        for block in self.shallow:
            y = block(y)
            skips.append(y)
        features = self.encoder(x)
        skips += features[:-1]
        y = self.dropout(features[-1])
        for up, skip in zip(self.decoder, reversed(skips)):
            y = up(y, skip)
        return self.head(y)

    # ------------------------------------------------------------- fine-tuning

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def freeze_encoder(self, frozen: bool) -> None:
        """Fix the encoder's weights (no gradients: the backward pass stops at the decoder) and statistics."""
        self.encoder_frozen = frozen
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def frozen_norms(self) -> list[nn.Module]:
        if not (self.encoder_frozen or self.encoder_bn_frozen):
            return []
        return [m for m in self.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True):
        """Train mode, except frozen BatchNorm layers, which keep normalising with their running statistics."""
        super().train(mode)
        for m in self.frozen_norms():
            m.eval()
        return self

    # ------------------------------------------------------------- size arithmetic

    @property
    def receptive_field(self) -> int:
        """About how many input pixels one output pixel sees: along the deepest path (encoder, then decoder).

        Analytic, from the encoder's library config (`encoders.chain`); unlike
        the plain U-Net's exact figure it ignores the pooling phases.
        """
        size, jump = chain_receptive_field(chain(self.config))
        upsample = 0 if self.config.upsample == "transposed" else 1  # bilinear reads one more coarse pixel
        for _ in range(self.config.depth):
            size += upsample * jump
            jump //= 2
            size += 2 * CONVS_PER_BLOCK * jump  # 3x3 convs: one pixel per side each
        return size
