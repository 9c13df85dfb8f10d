"""Rules: a fingerprint -> the training choices, each with a one-line reason.

The plan leaves a default only on evidence: data like the EM the defaults
were tuned on (grey, two classes, touching cells, numbered sections) gets
exactly the defaults. Each rule returns {option: (value, reason)}; option
names are the flat training options (`unetkit train --help`, snake_case).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..config import AugmentConfig, ModelConfig, TrainConfig
from ..model import UNet, build_model, training_megabytes
from .fingerprint import NEAR_PX, Fingerprint

DEFAULT_PATCH = 256  # px, same padding; valid padding: the smallest input with an output of 128 px
GREY_SHARE = 0.5  # images with equal channels: at least this share of the set makes it grey (microscopy-like)
UP_DIFFERENCE = 0.2  # class layout top vs bottom (total variation) at least this ...
UP_CONTROL = 2.0  # ... and this many times the left vs right difference: the scenes have an "up"
UP_MIN_MASKS = 4  # fewer masks say nothing of a layout
NEAR_SHARE = 0.1  # objects within NEAR_PX of another: at least this share touch (or nearly)
STUFF_AREA = 128 * 128  # px: objects this large (pixel-weighted median) are regions ("stuff"), a quarter patch
BALANCED = 1.5  # largest / smallest class share at most this: no class weighting
RARE_SHARE = 0.05  # a class under this share of the pixels: Dice beside cross-entropy
SIGMA_PER_DIAMETER = 1 / 23  # instance maps: the border term's width per object diameter (DSB's nuclei: 2 px, measured)
MIN_SIGMA = 2.0  # px: narrower, the term would weigh little beyond the pixels touching both objects
MIXED_GREY = 0.05  # grey images between this share of the set and 1 minus it: the set mixes grey and colour
SMALL_SET = 50  # pairs: a hold-out (20%: at most 10 images) costs real variety and scores weights by the noise of a few

NETWORK_OPTIONS = frozenset({"preset", "padding", "encoder"})  # given (or --init), the network is the user's: none planned
Rules = dict[str, tuple[object, str]]


def choose(fp: Fingerprint, model: ModelConfig, memory_mb: float, transfer: bool = False, chosen: frozenset = frozenset(),
           fixed_hold_out: bool = False, timed: bool = False) -> Rules:
    """Every planned option, in the order the table shows them.

    `transfer`: the weights start from an --init run; `chosen`: the options the user gave; `fixed_hold_out`: the user
    chose the validation (names, folds, a share, or none) or a refit; `timed`: the run has a time budget.
    """
    network = {} if transfer or model.encoder or chosen & NETWORK_OPTIONS else {**norm_layers(fp, model), **resolution(fp)}
    model = dataclasses.replace(model, **{option: value for option, (value, _) in network.items() if option not in chosen})
    return {**normalization(fp, model, transfer), **network, **patch_and_batch(fp, model, memory_mb), **orientation(fp),
            **border_weights(fp), **class_balance(fp), **validation(fp, fixed_hold_out, timed),
            **refit(fp, fixed_hold_out, timed)}


def normalization(fp: Fingerprint, model: ModelConfig, transfer: bool = False) -> Rules:
    if model.encoder or transfer:  # weights trained elsewhere expect the normalisation they were trained with
        source = f"the {model.encoder} encoder's weights" if model.encoder else "the --init run's weights"
        return {"normalization": ("auto", f"as {source} were trained (ImageNet mean/std for pretrained encoders)")}
    what = f"{fp.channels} channel(s) {fp.dtype}"
    if grey(fp):
        why = "grey" if fp.channels == 1 else f"grey saved as colour in {fp.grey_share:.0%} of the images"
        return {"normalization": ("percentile", f"{what}, {why} (microscopy-like): per-image percentiles")}
    if fp.dtype != "uint8":
        return {"normalization": ("percentile", f"{what}, {fp.bits}-bit instrument values: per-image percentiles")}
    return {"normalization": ("meanstd", f"{what} in colour (photographs, aerial): the training set's mean/std per "
                                         "channel keeps colour and brightness meaningful across images")}


def grey(fp: Fingerprint) -> bool:
    return fp.channels == 1 or fp.grey_share >= GREY_SHARE


def photographs(fp: Fingerprint) -> bool:
    """Colour 8-bit images: photographs (aerial, street), not microscopy or instrument values."""
    return not grey(fp) and fp.dtype == "uint8"


def norm_layers(fp: Fingerprint, model: ModelConfig) -> Rules:
    if MIXED_GREY <= fp.grey_share <= 1 - MIXED_GREY and fp.channels > 1:
        return {"norm": ("instance", f"grey and colour images mixed ({fp.grey_share:.0%} grey): instance norm, each patch "
                                     "by its own statistics, where one batch statistic would serve both kinds (DSB "
                                     "2018, 15 min, seeds 0 / 1: mean IoU 0.895 / 0.897 -> 0.909 / 0.907, AP "
                                     "0.366 / 0.363 -> 0.373 / 0.376)")}
    return {"norm": (model.norm, f"one kind of image: the preset's {model.norm} norm")}


def resolution(fp: Fingerprint) -> Rules:
    if regions(fp):
        return {"stem_stride": (2, f"regions, not objects (half the labelled pixels in regions over "
                                   f"{fp.object_area:,.0f} px): a stride-2 first conv runs the U-Net at half "
                                   "resolution, 2.5x the steps in the time (15 min: Amazon non-forest IoU, seeds 0-2, "
                                   "0.877 / 0.881 / 0.871 -> 0.895 / 0.897 / 0.892; Dubai mean IoU, seeds 0 / 1, "
                                   "0.584 / 0.601 -> 0.596 / 0.593)")}
    return {"stem_stride": (1, "objects: the top level at full resolution keeps their rims and the gaps between them "
                               "(DSB 2018: half resolution drew stained tissue worse)")}


def regions(fp: Fingerprint) -> bool:
    """The labels are regions ("stuff": land cover, sky, road), not objects: half the labelled pixels lie in
    regions of a quarter patch or more."""
    return not fp.instances and fp.object_area >= STUFF_AREA


def default_patch(net: UNet, smallest_side: int) -> int:
    """Same padding: 256 px, or the images' side rounded down to a multiple of total_stride.

    Valid padding: the smallest input whose output is at least 128 px (or the images' side).
    """
    if net.margin:
        wanted = min(128, smallest_side) + 2 * net.margin
        return net.valid_input_size(wanted, wanted)[0]
    unit = net.config.total_stride
    return max(unit, min(DEFAULT_PATCH, smallest_side) // unit * unit)


def patch_and_batch(fp: Fingerprint, model: ModelConfig, memory_mb: float) -> Rules:
    model = dataclasses.replace(model, in_channels=fp.channels, n_classes=len(fp.class_shares))
    with torch.device("meta"):  # for its size arithmetic: no weights allocated
        net = build_model(model)
    patch = default_patch(net, fp.min_side)
    batch = TrainConfig().batch_size
    while batch > 1 and training_megabytes(model, patch, batch) > memory_mb:
        batch //= 2
    unit = net.config.total_stride  # valid sides are this far apart
    while training_megabytes(model, patch, batch) > memory_mb and patch - unit > 2 * net.margin:
        patch -= unit
    if net.margin:
        side = f"the smallest valid input with {min(128, fp.min_side)} px of output (images from {fp.min_side} px)"
    elif patch >= DEFAULT_PATCH:
        side = f"the default (images from {fp.min_side} px)"
    else:
        side = f"the images' smallest side, {fp.min_side} px, in whole steps of {net.config.total_stride}"
    need = training_megabytes(model, patch, batch)
    return {"patch_size": (patch, side),
            "batch_size": (batch, f"{need:,.0f} MB per step of a {memory_mb:,.0f} MB budget (estimate)")}


def orientation(fp: Fingerprint) -> Rules:
    layout = f"class layout top/bottom {fp.top_bottom:.2f}, left/right {fp.left_right:.2f}"
    if fp.sampled >= UP_MIN_MASKS and fp.top_bottom >= UP_DIFFERENCE and fp.top_bottom >= UP_CONTROL * fp.left_right:
        return {"rotate": (0.0, f"the scenes have an up ({layout}): no rotations, no vertical flips"),
                "flip": (True, "horizontal flips keep the up")}
    if photographs(fp):
        return {"rotate": (0.0, f"colour photographs, as taken ({layout}): no rotations (aerial, 15 min: Dubai mean IoU "
                                "0.564 -> 0.584, Amazon non-forest IoU 0.884 -> 0.888)"),
                "flip": (True, "horizontal flips")}
    return {"rotate": (AugmentConfig().rotate, f"no canonical up ({layout}): all rotations"),
            "flip": (AugmentConfig().flip, "with the rotations: all 8 flips and quarter turns")}


def border_weights(fp: Fingerprint) -> Rules:
    near = f"{fp.near_share:.0%} of the objects within {NEAR_PX} px of another"
    if fp.instances:
        return {"weight_map": (True, f"instance masks ({near}): the border weights separate touching objects"),
                "sigma": border_width(fp)}
    if regions(fp):
        return {"weight_map": (False, f"regions, not objects (half the labelled pixels in regions over "
                                      f"{fp.object_area:,.0f} px): no borders to keep open")}
    if fp.near_share >= NEAR_SHARE:
        return {"weight_map": (True, f"objects touch ({near}): the border weights keep the gaps open")}
    return {"weight_map": (TrainConfig().weight_map, f"objects stand apart ({near}): the border term is near zero; "
                                                     "kept as the paper's")}


def border_width(fp: Fingerprint) -> tuple[float, str]:
    """The border term's sigma for objects of `fp`'s size (the paper's 5 px at most, for its cells ~80 px across)."""
    diameter = 2 * math.sqrt(fp.object_area / math.pi)
    sigma = round(min(max(diameter * SIGMA_PER_DIAMETER, MIN_SIGMA), TrainConfig().sigma), 1)
    return sigma, (f"objects {diameter:.0f} px across (pixel-weighted median): a 23rd of that, 2 to 5 px, keeps the "
                   "border term in the gaps, off the rims (DSB 2018, 15 min, sigma 5 -> 2, seeds 0 / 1: AP 0.350 / 0.355 -> "
                   "0.366 / 0.363, mean IoU 0.888 / 0.889 -> 0.895 / 0.897)")


def class_balance(fp: Fingerprint) -> Rules:
    shares = [s for s in fp.class_shares if s > 0]
    rarest, ratio = min(shares), max(shares) / min(shares)
    listed = " / ".join(f"{s:.1%}" for s in fp.class_shares)
    if fp.instances:
        weights = ("none", f"instance masks ({listed}): Dice and the border weights carry the objects; inverse frequency "
                           "on top drew them smaller (DSB 2018, 15 min, seeds 0 / 1: mean IoU 0.909 / 0.907 -> "
                           "0.913 / 0.914, AP 0.376 / 0.380 -> 0.395 / 0.380)")
    elif ratio <= BALANCED:
        weights = ("none", f"classes balanced ({listed})")
    elif len(shares) == 2:
        weights = (TrainConfig().class_weights, f"two classes, {listed}: inverse frequency (the paper's w_c)")
    else:
        weights = ("median", f"{len(shares)} classes, {listed}: median frequency (inverse would weigh the rarest "
                             f"{1 / (len(shares) * rarest):.0f}x)")
    if fp.instances:
        loss = ("ce+dice", "instance masks: Dice counts each object's overlap, not its pixels "
                           "(DSB 2018, 15 min: AP 0.316 -> 0.350, mean IoU 0.881 -> 0.888)")
    elif rarest < RARE_SHARE:
        loss = ("ce+dice", f"rarest class {rarest:.1%} of the pixels: Dice counts it by overlap, not by pixels")
    else:
        loss = (TrainConfig().loss, f"rarest class {rarest:.1%} of the pixels: cross-entropy")
    return {"class_weights": weights, "loss": loss}


def validation(fp: Fingerprint, fixed_hold_out: bool = False, timed: bool = False) -> Rules:
    if every_image_trains(fp, fixed_hold_out, timed):
        return {"val_fraction": (0.0, f"{fp.images} pairs under a time budget: every image trains and the model is the "
                                      "last weights, at the schedule's end (15 min, seeds 0 / 1: Amazon non-forest IoU "
                                      "0.888 / 0.816 -> 0.877 / 0.881; ISBI pixel error 0.080 / 0.078 -> 0.077 / 0.079, "
                                      "Rand error 0.057 / 0.056 -> 0.061 / 0.058)")}
    if fp.groups:
        sizes = ", ".join(f"{k or '(none)'} x{n}" for k, n in list(fp.groups.items())[:4])
        return {"val_split": ("group", f"{len(fp.groups)} groups in the file names ({sizes}, ...): whole groups held "
                                       "out, files of a group overlap")}
    if fp.names == "ids":
        return {"val_split": ("random", "file names are ids with no order: a seeded random draw")}
    return {"val_split": (TrainConfig().val_split, f"{fp.names} file names: the last by name (neighbours are alike)")}


def every_image_trains(fp: Fingerprint, fixed_hold_out: bool, timed: bool) -> bool:
    """A small set under a time budget trains on every image: a refit would halve the steps of both runs."""
    return timed and not fixed_hold_out and fp.images <= SMALL_SET


def refit(fp: Fingerprint, fixed_hold_out: bool, timed: bool) -> Rules:
    """Never planned on: under a time budget a small set trains on every image in one run (docs/RESULTS.md, "The final
    model on every image"); without one the second run would take as long again."""
    if fixed_hold_out:
        return {"refit": (False, "validation fixed by the user (names, folds, a share or a refit): the final model is the held-out run's")}
    if fp.images > SMALL_SET:
        return {"refit": (False, f"{fp.images} pairs: the hold-out costs little; the final model is the held-out run's")}
    if every_image_trains(fp, fixed_hold_out, timed):
        return {"refit": (False, f"{fp.images} pairs: every image trains already, no hold-out")}
    return {"refit": (False, f"{fp.images} pairs, but a final model on every image doubles the run's time; --refit asks for it")}
