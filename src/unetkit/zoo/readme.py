"""The package's documentation: what the model is, how to run it, and a "Validation" section with the run's measured scores."""

from __future__ import annotations

import csv
from pathlib import Path

from ..checkpoint import Run, read_config
from ..data.normalize import PER_IMAGE
from ..version import __version__
from .tensors import Sizes

METRICS = "metrics.csv"
SCORES = (("val_mean_iou", "mean IoU"), ("val_mean_dice", "mean Dice"), ("val_pixel_error", "pixel error"), ("val_loss", "loss"))


def validation_row(run_dir: Path, weights: str) -> dict | None:
    """The metrics.csv row of the exported weights: the best mean IoU for "best", the last validation for "last"."""
    path = run_dir / METRICS
    if not path.exists():
        return None
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_mean_iou")]
    if not rows:
        return None
    return max(rows, key=lambda r: float(r["val_mean_iou"])) if weights == "best" else rows[-1]


def validation_section(run: Run, weights: str, curves: bool) -> str:
    # A final model (RUN/final) saw every image: the held-out scores are its recipe's, from the run above it.
    final = weights == "final"
    scored = run.path.parent if final else run.path
    row = validation_row(scored, "last" if final else weights)
    config = read_config(scored) if final else run.config
    held_out = (config.get("split") or {}).get("val") or []
    if row is None:
        return "## Validation\n\nnot measured: the run holds no validation scores (metrics.csv).\n"
    names = f"{len(held_out)} held-out image(s) ({', '.join(held_out[:8])}{', ...' if len(held_out) > 8 else ''})"
    if final:
        measured = (f"These weights are the run's recipe trained again on every image, the {names} included. Before that, "
                    f"unetkit measured the recipe on them at its last step ({row.get('step', '?')})")
    else:
        measured = f"Measured by unetkit during training on {names}, at step {row.get('step', '?')} ({weights} weights)"
    lines = ["## Validation", "", f"{measured}, through the same overlap-tile predictor that wrote this package's test output:",
             "", "| score | value |", "| --- | --- |"]
    lines += [f"| {label} | {float(row[key]):.4f} |" for key, label in SCORES if row.get(key)]
    lines += [f"| IoU of class {key.rsplit('_', 1)[1]} | {float(value):.4f} |" for key, value in row.items() if key.startswith("val_iou_") and value]
    if curves:
        lines += ["", "Training curves: `curves.png` (attached)."]
    return "\n".join(lines) + "\n"


def _architecture(model) -> str:
    padding = "valid padding (the paper's: the network loses a margin at each border)" if model.padding == "valid" else "same padding"
    parts = [f"depth {model.depth}", f"base width {model.base_width}", padding, f"norm {model.norm}", f"up-sampling {model.upsample}"]
    parts += [p for p, on in (("attention gates", model.attention), ("residual blocks", model.residual)) if on]
    return ", ".join(parts + ([f"encoder {model.encoder}"] if model.encoder else []))


def _normalisation(data) -> str:
    low, high = data.percentiles
    steps = []
    if data.normalization in PER_IMAGE:
        per = "per image, all channels together" if data.normalization == "percentile-joint" else "per image and channel"
        steps.append(f"{per}, percentiles {low:g} and {high:g} to 0 and 1 (`scale_range`)")
    if data.normalization in ("meanstd", "imagenet"):
        source = "ImageNet's" if data.normalization == "imagenet" else "the training set's"
        steps.append(f"{source} mean and std per channel (`fixed_zero_mean_unit_variance`)")
    return ", then ".join(steps) or "none (the raw values)"


def readme(run: Run, name: str, weights: str, sizes: Sizes, test_image: str, curves: bool) -> str:
    model = run.model.config
    halo = "the network's margin" if model.padding == "valid" else "one stride, to hide the seams of a zero-padded network"
    return f"""# {name}

A U-Net (Ronneberger, Fischer and Brox, MICCAI 2015) trained with unetkit {__version__} for semantic segmentation into
{model.n_classes} classes from {model.in_channels}-channel images.

- architecture: {_architecture(model)}
- input: (batch, channel, y, x), sides {sizes.min} + n * {sizes.step}; normalisation as in training: {_normalisation(run.data)}
- output: class probabilities (batch, class, y, x) of the input's size; the softmax and unetkit's calibration (the loss's
  class weights divided out) are inside the graph
- tiling: a halo of {sizes.halo} px ({halo}) is padded (mirrored) around the input and cropped from the output
- test image: `{test_image}` of the run; the test output is what `unetkit predict` writes for it

## Use

    bioimageio predict PACKAGE.zip --inputs image.tif   # bioimageio.core, any weights format
    unetkit predict PACKAGE.zip images/ --out masks/    # unetkit's overlap-tile predictor

The `pytorch_state_dict` weights rebuild the network with unetkit (`pip install unetkit`); `torchscript` and
`onnx` weights need only their runtime.

{validation_section(run, weights, curves)}"""
