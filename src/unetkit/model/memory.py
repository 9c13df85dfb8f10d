"""Memory arithmetic: activation bytes per input pixel, and the tile size and batch that fit a budget."""

from __future__ import annotations

import math

from .encoders import encoder_channels

# Activation memory per input pixel of one tile, in float32 values, is
# estimated as (kept skips) + (working set at the top level), with channel
# counts padded to 8 as oneDNN's blocked layouts do; the factor covers
# allocator slack. Calibrated against peak RSS of one forward at 1024^2:
# bytes/px measured (estimate) tiny 278 (312), default 583 (650), residual
# 700 (810), attention 768 (810), paper 1738 (1915). An encoder model keeps its
# encoder's features as skips; the decoder's full-resolution level still
# dominates: default + encoder resnet18 602 (653), resnet34 604 (653), resnet50
# 691 (765), convnext_tiny 620 (671), convnextv2_atto 597 (638).
MEMORY_SAFETY = 1.25
MEMORY_FIXED_MB = 128  # per-forward overhead that does not scale with the tile (scratch, allocator)
MAX_TILE = 1024  # larger tiles gain little and make the rows of a band long
# Training keeps every layer's output for the backward pass: peak RSS of one AdamW step at 256^2 x 4 measured
# 2.74x the inference estimate per pixel for the default preset, 2.69x attention, 1.95x tiny; 3 covers them.
TRAINING_FACTOR = 3.0


def activation_bytes_per_pixel(config) -> float:
    """Estimated inference activation memory per input pixel of a tile (see MEMORY_SAFETY)."""
    widths = [max(8, -(-config.base_width * 2**level // 8) * 8) for level in range(config.depth + 1)]
    if config.encoder is not None:  # levels 0, 1 are ours, the deeper skips the encoder's features
        widths[2:] = encoder_channels(config)
    skips = sum(w / 4**level for level, w in enumerate(widths))  # kept for the decoder, at 1/4**level the pixels
    # Top level working set: up-conv out, concat, conv outs (+ norm outs, shortcut, attention map).
    extras = 2 * (config.norm != "none") + 2 * config.residual + 2 * config.attention
    working = (4 + extras) * widths[0]
    body = (skips + working) / config.stem_stride**2  # a strided stem runs the U-Net at 1/4 the pixels
    head = 2 * widths[0] if config.stem_stride > 1 else 0  # its full-size up-conv and norm outputs
    return 4 * MEMORY_SAFETY * (body + head + config.in_channels + config.n_classes)


def training_megabytes(config, side: int, batch: int) -> float:
    """Estimated memory (MB) of one training step on `batch` patches of side `side` (see TRAINING_FACTOR)."""
    return MEMORY_FIXED_MB + TRAINING_FACTOR * activation_bytes_per_pixel(config) * side * side * batch / 2**20


def choose_tile(model, memory_mb: float, tile_batch: int | None = None, tile_size: int | None = None) -> tuple[int, int]:
    """(tile side, tile batch) for a memory budget of `memory_mb` for one batch of activations.

    The tile is the largest valid size up to MAX_TILE whose batch fits the
    budget (or `tile_size`, rounded up to a valid size); without `tile_batch`,
    the batch then grows to fill the budget, up to 8.
    """
    per_pixel = activation_bytes_per_pixel(model.config)
    budget = max(memory_mb - MEMORY_FIXED_MB, 1) * 2**20
    # The smallest useful tile: its output must span one pooling cell, so steps can stay aligned.
    smallest = model.valid_input_size(2 * model.margin + model.config.total_stride, 1)[0]
    if tile_size is not None:
        tile = model.valid_input_size(max(tile_size, smallest), max(tile_size, smallest))[0]
    else:
        side = int(math.sqrt(budget / ((tile_batch or 1) * per_pixel)))
        tile = _largest_valid_at_most(model, min(side, MAX_TILE)) or smallest
    if tile_batch is None:
        tile_batch = int(max(1, min(8, budget // (tile * tile * per_pixel))))
    return tile, tile_batch


def _largest_valid_at_most(model, side: int) -> int | None:
    """Valid sizes are total_stride apart, so the first valid size above side - total_stride is the answer if <= side."""
    candidate = model.valid_input_size(max(1, side - model.config.total_stride + 1), 1)[0]
    return candidate if candidate <= side else None
