"""A printable summary of a U-Net: layers, output shapes, parameters, FLOPs, sizes, receptive field."""

from __future__ import annotations

import torch
from torch import nn

from ..config import to_dict
from .unet import UNet


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
