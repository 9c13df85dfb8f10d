"""Pretrained weights for an encoder: ImageNet from the Hugging Face hub, or a local file; any input channels.

    load_encoder_weights(model.encoder, "imagenet")          # the hub's checkpoint (online, or its local cache)
    load_encoder_weights(model.encoder, "resnet34.safetensors")

A file holds the library's key layout: either the backbone's own keys
(`ResNetBackbone.state_dict()`) or the hub's classification checkpoint
(`resnet.embedder...`, `classifier...`: the prefix is stripped and the head
ignored), as safetensors or a weights-only `torch.load` file. Keys or shapes
that do not fit are a one-line error naming the first of them. The first
convolution is adapted to the model's input channels as timm's
`adapt_input_conv` does: summed over RGB for one channel, repeated and scaled
by 3 / C for other counts, so a grey image gives the response the RGB
network gives to that grey replicated on R, G and B.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import UserError, first_line
from .encoders import Encoder, encoder_spec, transformers_module

ALWAYS_MISSING_OK = ("num_batches_tracked",)  # BatchNorm counters, absent from many checkpoints; unused in training


def load_encoder_weights(encoder: Encoder, source: str) -> None:
    """Load "imagenet" or a weights file into `encoder` (any input channels), or raise a one-line UserError."""
    if source == "imagenet":
        state, origin = fetch_imagenet(encoder.name), f"the hub's {encoder_spec(encoder.name).hub}"
    else:
        state, origin = read_weights_file(source), source
    encoder.backbone.load_state_dict(fit_state(encoder, state, origin), strict=True)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat {key: tensor} from safetensors (by suffix) or a weights-only torch.load file."""
    path = Path(path)
    fix = "pass a .safetensors or torch.save(state_dict) file in the library's key layout, imagenet, or none"
    if not path.is_file():
        raise UserError("encoder weights not found", path=path, fix=fix)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file, another format, or a pickle that is not weights only
        raise UserError(f"unreadable encoder weights ({first_line(exc)})", path=path, fix=fix) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError("encoder weights are not a state dict (a mapping of names to tensors)", path=path, fix=fix)
    return state


def fit_state(encoder: Encoder, state: dict[str, torch.Tensor], origin) -> dict[str, torch.Tensor]:
    """`state` renamed and adapted to `encoder.backbone`: every key present, every shape equal."""
    spec = encoder_spec(encoder.name)
    own = encoder.backbone.state_dict()
    roots = {key.split(".")[0] for key in own}
    state = {key.removeprefix(spec.prefix): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if key.split(".")[0] in roots}  # drop a classifier head
    first_conv = _first_conv_key(encoder.backbone)
    if first_conv in state and state[first_conv].shape != own[first_conv].shape:
        state[first_conv] = adapt_input_conv(state[first_conv], own[first_conv].shape[1])
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.startswith(spec.missing_ok) and not k.endswith(ALWAYS_MISSING_OK)]
    wrong = [f"{k} {tuple(state[k].shape)} (model {tuple(own[k].shape)})" for k in state if k in own and state[k].shape != own[k].shape]
    for problem, keys in (("has keys the encoder lacks", unexpected), ("lacks keys", missing), ("has shapes that differ", wrong)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise UserError(f"weights do not fit encoder {encoder.name}: the file {problem}: {', '.join(keys[:3])}{more}",
                            path=origin, fix=f"pass weights of {encoder.name} ({spec.hub} on the hub) in the library's key layout")
    return {**own, **state}


def _first_conv_key(backbone: nn.Module) -> str:
    name = next(name for name, m in backbone.named_modules() if isinstance(m, nn.Conv2d))
    return f"{name}.weight"


def adapt_input_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """An RGB first-conv weight (out, 3, k, k) for `channels` inputs (timm's rule).

    One channel: the sum over R, G, B (a grey image replicated to RGB gives the
    same response). Other counts: R, G, B repeated cyclically and scaled by
    3 / channels, so the expected activation keeps its size.
    """
    if weight.shape[1] != 3:
        raise UserError(f"cannot adapt a first convolution of {weight.shape[1]} input channels to {channels}",
                        fix="pass weights of an RGB network, or of one with the model's input channels")
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(channels / 3)
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (3 / channels)


# ----------------------------------------------------------------- the hub


def fetch_imagenet(name: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights of encoder `name` (RGB): from the local hub cache, else from the hub if reachable."""
    spec = encoder_spec(name)
    backbone_class = getattr(transformers_module(), spec.backbone_class)
    cached = _from_cache(backbone_class, spec.hub)
    if cached is not None:
        return cached
    fix = (f"download model.safetensors of https://huggingface.co/{spec.hub} on a machine that is online and pass it "
           "as --encoder-weights FILE, or train from scratch with --encoder-weights none")
    offline = _hub_unreachable()
    if offline:
        raise UserError(f"cannot fetch the ImageNet weights of {name}: {offline}", fix=fix)
    try:
        return backbone_class.from_pretrained(spec.hub).state_dict()
    except Exception as exc:  # noqa: BLE001 - network, hub and file errors alike
        raise UserError(f"cannot fetch the ImageNet weights of {name} ({first_line(exc)})", fix=fix) from exc


def _from_cache(backbone_class, hub: str) -> dict[str, torch.Tensor] | None:
    try:
        return backbone_class.from_pretrained(hub, local_files_only=True).state_dict()
    except (OSError, ValueError):
        return None


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached (offline mode, a host that does not resolve), or None: fails in
    milliseconds where the library's own retries take half a minute."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode (HF_HUB_OFFLINE is set)"
    host = urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return f"the hub ({host}) is unreachable ({exc.strerror or exc})"
    return None
