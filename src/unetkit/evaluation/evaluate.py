"""`evaluate`: score predictions against ground truth, per image and pooled over the set; JSON and HTML report.

How files pair and what a prediction file may hold: `evaluation.files`.
The ISBI scores (Rand, information, warping, F-score pixel error) and
instance scores need `boundary_class`: the class that separates objects (the
membrane; 0 for ISBI). Their "foreground" is every other class, and a
prediction's foreground probability is 1 - P(boundary class).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import operator
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import UserError
from ..io import write_text
from ..report import error_overlay, write_report
from . import metrics
from .files import Prediction, check_same_size, ground_truth, interpret_prediction, pair_predictions, read_ground_truth, read_prediction
from .metrics import InstanceCounts, SweepCounts
from .topology import MERGE, SPLIT

ISBI_KEYS = ("rand_error", "info_error", "warping_error", "pixel_error_fscore")


@dataclasses.dataclass
class ImageScore:
    """What one image contributes: its summary and the additive counts that pool over the set."""

    summary: dict
    confusion: np.ndarray
    sweep: SweepCounts | None = None
    instances: InstanceCounts | None = None
    overlay: np.ndarray | None = None  # (H, W, 3) uint8 for the report


# --------------------------------------------------------------------------- scoring


def score_image(
    pred: Prediction,
    gt_classes: np.ndarray,
    gt_objects: np.ndarray | None = None,
    *,
    n_classes: int,
    boundary_class: int | None,
    ignore_index: int | None,
    threshold_sweep_levels: bool,
    instances: bool,
    warping: bool,
    overlay: bool,
) -> ImageScore:
    """Class metrics at 0.5 (argmax); with a boundary class the ISBI scores; if asked, instance scores.

    Instance scores match the predicted objects (`pred.objects`, else the connected components of the
    predicted foreground) with `gt_objects` (an instance label map), else the components of the true foreground.
    """
    cm = metrics.confusion_matrix(pred.classes, gt_classes, n_classes, ignore_index)
    score = ImageScore(_class_summary(cm), cm)
    score.summary.update(dict.fromkeys(ISBI_KEYS))
    ignore = None if ignore_index is None else gt_classes == ignore_index
    valid = np.ones(gt_classes.shape, bool) if ignore is None else ~ignore
    separator = 0 if boundary_class is None else boundary_class  # the overlay's "negative" class
    gt_fg = (gt_classes != separator) & valid
    types = None
    if boundary_class is not None:
        levels = {} if threshold_sweep_levels else {"thresholds": (0.5,), "warping_thresholds": (0.5,)}
        score.sweep, types = metrics.threshold_sweep(
            pred.foreground, gt_fg, ignore=ignore, warping=warping, keep_types_at=0.5 if overlay and warping else None, **levels
        )
        score.summary.update(score.sweep.summarize())
    if instances:
        objects = pred.objects
        if objects is None:
            objects = metrics.label_objects(pred.foreground > 0.5 if pred.foreground is not None else pred.classes != separator)
        truth = metrics.label_objects(gt_fg) if gt_objects is None else np.where(valid, gt_objects, 0)
        score.instances = metrics.instance_counts(objects, truth)
        score.summary.update(score.instances.summarize())
    if overlay:
        kinds = {} if types is None else {"splits": types[0] == SPLIT, "merges": types[0] == MERGE}
        score.overlay = error_overlay(gt_fg, pred.classes != separator, valid, **kinds)
    return score


def _class_summary(cm: np.ndarray) -> dict:
    scores = metrics.class_scores(cm)
    return {
        "pixel_error": scores["pixel_error"],
        "mean_iou": scores["mean_iou"],
        "dice": scores["mean_dice"],
        "iou_per_class": scores["iou"].tolist(),
        "dice_per_class": scores["dice"].tolist(),
    }


def _pooled(scores: list[ImageScore]) -> dict:
    """The set as one stack: summed confusion, pooled ISBI counts (one threshold), pooled instances."""
    summary = _class_summary(sum(s.confusion for s in scores))
    summary.update(dict.fromkeys(ISBI_KEYS))
    for part in ("sweep", "instances"):
        counts = [getattr(s, part) for s in scores]
        if counts[0] is not None:
            summary.update(functools.reduce(operator.add, counts).summarize())
    return summary


def _mean(summaries: list[dict]) -> dict:
    """Per-image arithmetic mean of every score (NaN and None skipped); thresholds and counts are left out."""
    mean = {}
    for key, value in summaries[0].items():
        if key.endswith("_threshold") or key.startswith("n_") or key in ("splits", "merges"):
            continue
        values = [s[key] for s in summaries]
        if value is None or isinstance(value, (int, float)):
            numbers = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            mean[key] = float(np.nanmean(numbers)) if np.any(np.isfinite(numbers)) else None
        else:  # per-class lists
            rows = np.array(values, dtype=np.float64)
            mean[key] = [float(np.nanmean(c)) if np.any(np.isfinite(c)) else None for c in rows.T]
    return mean


def _json_ready(value):
    """Plain Python for json: numpy scalars/arrays converted, NaN/inf -> None."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- the entry point


def evaluate(
    pred,
    gt,
    *,
    boundary_class: int | None = None,
    ignore_index: int | None = None,
    n_classes: int = 2,
    masks: DataConfig | None = None,
    threshold_sweep: bool = False,
    instances: bool | None = None,
    warping: bool = True,
    json_path: str | Path | None = None,
    report_dir: str | Path | None = None,
    report_title: str = "unetkit evaluation",
    report_headline: str | None = None,
    report_figures=(),
    progress: bool = True,
) -> dict:
    """Score predictions against ground truth; returns (and optionally writes) the results dict.

    `pred`, `gt`: folders (paired by stem, see the module doc), or arrays for
    one image (`pred` (H, W) labels / probabilities or (K, H, W) per-class
    probabilities, `gt` (H, W) raw mask values). `masks`: a run's DataConfig
    (its mask convention: class count, ignored value, colours), instead of
    `n_classes` and `ignore_index`. `boundary_class`: the
    membrane/background class that separates objects; without it only the
    class metrics are computed (the ISBI keys are None). `threshold_sweep`:
    the challenge's sweep (best threshold per score, and the value at 0.5);
    else every score at 0.5. `instances`: AP, F1 and SEG of the connected
    objects (None: on where `masks` are instance label maps, whose instances
    are then the objects to match, with class 0 between them). `warping=False` skips the (slowest) warping error. `report_dir`:
    write the HTML report there, with `report_title`, `report_headline` and
    `report_figures` (PNG paths or (caption, path) pairs) passed to
    `report.write_report`.

    Results: `images` (name -> scores, with `pred`/`gt` files), `mean` (the
    per-image mean), `stack` (the set pooled as one stack with one threshold
    per score, as the challenge scored its 30-slice stack), `sweep` (pooled
    error per threshold) and `settings`.
    """
    masks = masks or DataConfig(n_classes=n_classes, ignore_index=ignore_index)  # a run's convention, or these
    n_classes, ignore_index = masks.n_classes, masks.ignore_index
    instances = _scores_instances(masks, boundary_class, instances)
    options = dict(n_classes=n_classes, boundary_class=boundary_class, ignore_index=ignore_index,
                   threshold_sweep_levels=threshold_sweep, instances=instances, warping=warping, overlay=report_dir is not None)
    scored = {}  # name -> (files, ImageScore)
    for name, pred_path, gt_path, prediction, (gt_classes, gt_objects) in _load(pred, gt, masks, boundary_class, progress):
        check_same_size(prediction.classes, gt_classes, pred_path, gt_path)
        scored[name] = {"pred": str(pred_path), "gt": str(gt_path)}, score_image(prediction, gt_classes, gt_objects, **options)
    results = _results(scored, options, threshold_sweep)
    if json_path is not None:
        write_text(json_path, json.dumps(results, indent=2) + "\n")
    if report_dir is not None:
        overlays = {name: score.overlay for name, (_, score) in scored.items()}
        write_report(
            report_dir, results, overlays=overlays, extra_figures=report_figures, title=report_title, headline=report_headline
        )
    return results


def _scores_instances(masks: DataConfig, boundary_class: int | None, instances: bool | None) -> bool:
    """Whether to score instances (None: where the masks are instance label maps); refuses what cannot be scored."""
    instance_maps = masks.mask_kind == "instances"  # their class 0 separates the objects
    if instances and boundary_class is None and not instance_maps:
        raise UserError("instance scores need the class that separates objects", fix="pass --boundary-class (0 for ISBI)")
    if boundary_class is not None and not 0 <= boundary_class < masks.n_classes:
        raise UserError(f"boundary class {boundary_class} is not one of 0..{masks.n_classes - 1}", fix="pass a class id")
    return instance_maps if instances is None else instances


def _results(scored: dict, options: dict, threshold_sweep: bool) -> dict:
    """The results dict (JSON-ready): per image, per-image mean, the set pooled as one stack, the pooled sweep."""
    scores = [score for _, score in scored.values()]
    return _json_ready({
        "images": {name: {**files, **score.summary} for name, (files, score) in scored.items()},
        "mean": _mean([s.summary for s in scores]),
        "stack": _pooled(scores),
        "sweep": None if scores[0].sweep is None else functools.reduce(operator.add, [s.sweep for s in scores]).curves(),
        "settings": {k: v for k, v in options.items() if k not in ("overlay", "threshold_sweep_levels")}
        | {"threshold_sweep": threshold_sweep, "n_images": len(scores)},
    })


def _load(pred, gt, masks: DataConfig, boundary_class: int | None, progress: bool):
    """Yield (name, pred source, gt source, Prediction, (ground-truth classes, objects)) for folders or one array pair."""
    if isinstance(pred, (str, Path)) or isinstance(gt, (str, Path)):
        if not (isinstance(pred, (str, Path)) and isinstance(gt, (str, Path))):
            raise UserError("pass two folders or two arrays", fix="give --pred and --gt as folders")
        from tqdm import tqdm

        for pair in tqdm(pair_predictions(pred, gt), desc="evaluating", unit="image", disable=None if progress else True):
            yield pair.name, pair.pred, pair.gt, read_prediction(pair, masks, boundary_class), read_ground_truth(pair, masks)
        return
    prediction = interpret_prediction(np.asarray(pred), masks, boundary_class, "prediction array")
    yield "image", "prediction array", "ground-truth array", prediction, ground_truth(np.asarray(gt), masks, "ground-truth array")


def format_summary(results: dict) -> str:
    """A few lines for the terminal: each score of the set pooled as one stack and as the per-image mean."""
    keys = ["pixel_error", "mean_iou", "dice", "rand_error", "info_error", "warping_error", "pixel_error_fscore", "ap", "seg"]
    keys = [k for k in keys if results["stack"].get(k) is not None or results["mean"].get(k) is not None]
    width = max(len(k) for k in keys)
    lines = [
        f"{results['settings']['n_images']} image(s); set: pooled as one stack, one threshold per score (the challenge's "
        "way); per-image: the mean of each image's own best threshold",
        f"{'':{width}}  {'set':>10}  {'per-image':>10}",
    ]
    for key in keys:
        cells = [results[part].get(key) for part in ("stack", "mean")]
        lines.append(f"{key:{width}}  " + "  ".join("      n/a " if v is None else f"{v:10.6f}" for v in cells))
    return "\n".join(lines)
