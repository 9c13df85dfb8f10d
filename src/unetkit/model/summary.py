"""A printable summary of a U-Net: layers, output shapes, parameters, FLOPs, sizes, receptive field."""

from __future__ import annotations

import torch
from torch import nn

from ..config import to_dict
from .presets import build_model
from .unet import UNetBase


def _parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The rows of the table: each child, each element of a list of blocks; dropout left out."""
    parts = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            parts += [(f"{name}.{i}", m) for i, m in enumerate(child)]
        elif not isinstance(child, (nn.Dropout, nn.Identity)):
            parts.append((name, child))
    return parts


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(model: UNetBase, height: int, width: int) -> str:
    """A printable layer table with output shapes, parameters and FLOPs for one input.

    Runs on the meta device: no memory for activations, no compute.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model.check_input_size(height, width)
    with torch.device("meta"):
        meta = build_model(model.config).eval()
    rows: list[tuple[str, tuple, int]] = []

    def record(name, module, output):
        outputs = output if isinstance(output, (list, tuple)) else [output]  # an encoder gives one map per stride
        for i, out in enumerate(outputs):
            rows.append((f"{name}[{i}]" if len(outputs) > 1 else name, tuple(out.shape[1:]), count_parameters(module) if i == 0 else 0))

    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: record(name, mod, out)) for name, m in _parts(meta)]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, model.config.in_channels, height, width, device="meta"))
    for h in hooks:
        h.remove()
    convs = sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
    out_h, out_w = model.output_size(height, width)
    lines = [f"{'layer':<12} {'output (C, H, W)':<22} {'parameters':>12}"]
    lines += [f"{name:<12} {str(shape):<22} {params:>12,}" for name, shape, params in rows]
    about = "~" if model.config.encoder else ""  # an encoder's is analytic along its deepest path
    lines += [
        "",
        "config: " + ", ".join(f"{k}={v}" for k, v in to_dict(model.config).items()),
        f"parameters: {count_parameters(model):,}   conv layers: {convs}",
        f"input: {height} x {width}   output: {out_h} x {out_w}   margin: {model.margin} px",
        f"FLOPs: {counter.get_total_flops() / 1e9:.2f} GFLOP per image   receptive field: {about}{model.receptive_field} px",
    ]
    return "\n".join(lines)
