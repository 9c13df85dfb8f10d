"""The network a bioimage.io package runs: a unetkit U-Net that ends in calibrated class probabilities.

This file is also shipped inside every package as the architecture of its
`pytorch_state_dict` weights (bioimage.io loads it by path, so its imports
are absolute): `UNetProbabilities(**kwargs)` with the kwargs of the package's
rdf.yaml rebuilds the exact model, given `pip install unetkit`.

The spec has no operation for unetkit's probability calibration (the logit
offsets -log w_c that undo the loss's class weights), and consumers
implement its softmax unevenly, so both live in the graph: the package's
output is what `unetkit predict` writes as NAME_probs.tif.

A valid-padding network (the paper's) loses `margin` pixels at each border.
bioimage.io describes that as a halo: the consumer pads the input by the
halo (mirrored, like unetkit's overlap-tile) and crops it from the output,
which must therefore have the input's size. The graph pads its output with
zeros to that size; the zeros are exactly the halo that is cropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.config import ModelConfig, from_dict
from unetkit.model import build_model


class UNetProbabilities(nn.Module):
    """(N, C, H, W) image, normalised as in training -> (N, K, H, W) class probabilities.

    `model`: the run's ModelConfig as a dict; `offsets`: per-class logit offsets
    (None: no calibration). The state dict is the U-Net's under `net.`.
    """

    def __init__(self, model: dict, offsets: list[float] | None = None):
        super().__init__()
        self.net = build_model(from_dict(ModelConfig, model, source="bioimage.io architecture kwargs"))
        classes = self.net.config.n_classes
        values = torch.zeros(classes) if offsets is None else torch.tensor(offsets, dtype=torch.float32)
        self.register_buffer("offsets", values.view(1, classes, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x) + self.offsets
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        m = self.margin
        return F.pad(probs, (m, m, m, m)) if m else probs

    # The size questions of the wrapped network (export.parity_inputs asks them).
    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def margin(self) -> int:
        return self.net.margin

    def valid_input_size(self, height: int, width: int) -> tuple[int, int]:
        return self.net.valid_input_size(height, width)
