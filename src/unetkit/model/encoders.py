"""Library encoders for the contracting path: Hugging Face `transformers` backbones built from a config.

    EncoderUNet(ModelConfig(padding="same", norm="batch", encoder="resnet34"))

Each name maps to a backbone class of `transformers` and the library config
of the ImageNet checkpoint it names on the hub, so a model is rebuilt from
`config.json` without downloading anything (random init; the run's weights
then load over it). The backbone returns feature maps at strides 4, 8, 16
and 32 (`out_features` stage1..stage4); the decoder is ours. Weights
(ImageNet from the hub, or a local file in the library's key layout) are
loaded by `encoder_weights.py`.

`transformers` is imported only when an encoder model is built: plain U-Nets
never need it (it is the optional extra `unetkit[encoders]`).
"""

from __future__ import annotations

import dataclasses
import difflib

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import UserError, first_line

STAGES = ("stage1", "stage2", "stage3", "stage4")  # the library's names of the stride 4, 8, 16, 32 outputs
STRIDES = (4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """One encoder: its library classes, the config of its hub checkpoint, and how that checkpoint is keyed."""

    family: str  # "resnet" or "convnext": how `chain` walks it for the receptive field
    config_class: str  # transformers class names, imported lazily
    backbone_class: str
    config: dict  # library config fields of the hub checkpoint (the rest are the library's defaults)
    hub: str  # hub repository of the ImageNet weights
    prefix: str  # key prefix of the hub's classification checkpoint (`base_model_prefix`)
    missing_ok: tuple[str, ...] = ()  # backbone keys that a classification checkpoint lacks (initialised as the library does)


_RESNET = dict(family="resnet", config_class="ResNetConfig", backbone_class="ResNetBackbone", prefix="resnet.")
_CONVNEXT = dict(config_class="ConvNextConfig", backbone_class="ConvNextBackbone", prefix="convnext.")
ENCODERS: dict[str, EncoderSpec] = {
    "resnet18": EncoderSpec(**_RESNET, config=dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512]),
                            hub="microsoft/resnet-18"),
    "resnet34": EncoderSpec(**_RESNET, config=dict(layer_type="basic", depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 256, 512]),
                            hub="microsoft/resnet-34"),
    "resnet50": EncoderSpec(**_RESNET, config=dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048]),
                            hub="microsoft/resnet-50"),
    "convnext_tiny": EncoderSpec(family="convnext", **_CONVNEXT, config=dict(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768]),
                                 hub="facebook/convnext-tiny-224", missing_ok=("hidden_states_norms.",)),
    # The light one for CPUs: 3.4 M parameters, ConvNeXt V2's smallest (Woo et al. 2023).
    "convnextv2_atto": EncoderSpec(family="convnext", config_class="ConvNextV2Config", backbone_class="ConvNextV2Backbone",
                                   config=dict(depths=[2, 2, 6, 2], hidden_sizes=[40, 80, 160, 320]), hub="facebook/convnextv2-atto-1k-224",
                                   prefix="convnextv2.", missing_ok=("hidden_states_norms.",)),
}


def encoder_spec(name: str) -> EncoderSpec:
    """The spec of an encoder name; an unknown name is a one-line error listing close matches."""
    if name in ENCODERS:
        return ENCODERS[name]
    close = difflib.get_close_matches(name, ENCODERS, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UserError(f"unknown encoder {name!r}", fix=f"{hint}valid encoders: {', '.join(ENCODERS)}")


def library_config(config: ModelConfig) -> dict:
    """The library config fields of `config.encoder`, with `config.encoder_config` on top."""
    spec = encoder_spec(config.encoder)
    return {**spec.config, **(config.encoder_config or {})}


def encoder_channels(config: ModelConfig) -> list[int]:
    """Channels of the feature maps at strides 4, 8, 16, 32 (every supported family outputs its hidden sizes)."""
    return list(library_config(config)["hidden_sizes"])


def transformers_module():
    try:
        import transformers
    except ImportError as exc:
        raise UserError("encoder models need Hugging Face transformers, which is not installed",
                        fix="pip install 'unetkit[encoders]' (or transformers itself)") from exc
    return transformers


def make_backbone(config: ModelConfig) -> nn.Module:
    """The library backbone of `config.encoder`, randomly initialised, for `config.in_channels` inputs."""
    spec = encoder_spec(config.encoder)
    library = transformers_module()
    fields = {**library_config(config), "num_channels": config.in_channels, "out_features": list(STAGES)}
    try:
        library_config_ = getattr(library, spec.config_class)(**fields)
        return getattr(library, spec.backbone_class)(library_config_)
    except Exception as exc:  # noqa: BLE001 - the library validates its config with its own error types
        raise UserError(f"encoder {config.encoder}: bad library config {config.encoder_config!r} ({first_line(exc)})",
                        fix=f"use fields of transformers.{spec.config_class}") from exc


class Encoder(nn.Module):
    """A library backbone as a contracting path: (N, C, H, W) -> feature maps at strides 4, 8, 16, 32."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.name = config.encoder
        self.backbone = make_backbone(config)
        self.channels = list(self.backbone.channels)  # per stride, from the library

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.backbone(x).feature_maps)


# ----------------------------------------------------------------- receptive field


def chain(config: ModelConfig) -> list[tuple[int, int]]:
    """(kernel, stride) of each convolution and pooling on the encoder's deepest path, input first.

    Read from the library config: ResNet's 7x7/2 stem conv and 3x3/2 max pool,
    then per layer two 3x3 convs (basic) or 1x1, 3x3, 1x1 (bottleneck), the
    first layer of stages 2-4 striding; ConvNeXt's 4x4/4 patchify stem, a 2x2/2
    down-sampling before stages 2-4 and one 7x7 depthwise conv per block.
    """
    fields = library_config(config)
    if encoder_spec(config.encoder).family == "resnet":
        ops = [(7, 2), (3, 2)]
        basic = fields.get("layer_type", "bottleneck") == "basic"
        for stage, depth in enumerate(fields["depths"]):
            for layer in range(depth):
                stride = 2 if stage > 0 and layer == 0 else 1
                ops += [(3, stride), (3, 1)] if basic else [(1, 1), (3, stride), (1, 1)]
        return ops
    ops = [(4, 4)]
    for stage, depth in enumerate(fields["depths"]):
        ops += ([(2, 2)] if stage else []) + [(7, 1)] * depth
    return ops


def chain_receptive_field(ops: list[tuple[int, int]], size: int = 1, jump: int = 1) -> tuple[int, int]:
    """(receptive field, jump) in input pixels after `ops`: each k x k op with stride s adds (k - 1) x jump."""
    for kernel, stride in ops:
        size += (kernel - 1) * jump
        jump *= stride
    return size, jump
