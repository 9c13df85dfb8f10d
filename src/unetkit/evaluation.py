"""`evaluate`: score predictions against ground truth, per image and over the set; JSON and HTML report.

Prediction files pair with ground-truth files by stem (`_probs`, `_labels`,
`_instances` endings dropped; pages of TIFF stacks pair page by page, named
"stem:page"); `predict`'s output folder can be evaluated as it is:
- float TIFF: probabilities. One channel: the probability of class 1 (cell
  interior for ISBI-style masks, where 255 -> class 1); K channels: one per
  class (`NAME_probs.tif` as prediction writes it). Class ids are the argmax
  (one channel: p > 0.5).
- integer images (`NAME_labels.png`, `NAME.png`, integer TIFF): class ids, or
  two values read with the mask conventions (0/255 -> 0/1).
- `NAME_instances.tif`: object ids (0 = background) for the instance scores;
  without it, objects are the 4-connected components of the predicted foreground.
- `NAME_overlay.png` (predict's picture for people) is skipped.
A stem may have several: the class metrics use the labels, the ISBI scores
the probabilities (each falls back on the other). Ground truth follows the
mask conventions of DESIGN.md (`data.mask_to_classes`).

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

from .config import DataConfig
from .data import MASK_STEM_SUFFIXES, check_paired, mask_to_classes
from .errors import UserError
from .io import count_pages, list_images, read_image, read_mask, write_text
from . import metrics
from .metrics import InstanceCounts, SweepCounts

PRED_ROLES = {"_probs": "probs", "_instances": "instances", "_labels": "labels"}  # stem ending -> role
SKIPPED_STEM_SUFFIXES = ("_overlay",)
ISBI_KEYS = ("rand_error", "info_error", "warping_error", "pixel_error_fscore")
PROBABILITY_TOLERANCE = 1e-3  # float rounding (e.g. softmax sums) may overshoot [0, 1] a little


@dataclasses.dataclass(frozen=True)
class PredictionPair:
    """One ground-truth image and its prediction files (either may be missing, not both)."""

    gt: Path
    labels: Path | None
    probs: Path | None
    instances: Path | None = None
    page: int | None = None

    @property
    def name(self) -> str:
        stem = _strip(self.gt.stem, MASK_STEM_SUFFIXES)
        return stem if self.page is None else f"{stem}:{self.page}"

    @property
    def pred(self) -> Path:
        return self.labels or self.probs


@dataclasses.dataclass
class Prediction:
    """A prediction in memory: class ids, and the foreground probability for the ISBI scores."""

    classes: np.ndarray  # (H, W) int64
    foreground: np.ndarray | None  # (H, W) float64 in [0, 1], None without a boundary class
    objects: np.ndarray | None = None  # (H, W) predicted object ids, from NAME_instances.tif


@dataclasses.dataclass
class ImageScore:
    """What one image contributes: its summary and the additive counts that pool over the set."""

    summary: dict
    confusion: np.ndarray
    sweep: SweepCounts | None = None
    instances: InstanceCounts | None = None
    overlay: np.ndarray | None = None  # (H, W, 3) uint8 for the report


# --------------------------------------------------------------------------- files


def _strip(stem: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def pair_predictions(pred_dir: str | Path, gt_dir: str | Path) -> list[PredictionPair]:
    """Pair prediction files with ground-truth files by stem; unpaired or doubled files are an error."""
    preds: dict[str, list[Path]] = {}
    for path in list_images(pred_dir):
        if _strip(path.stem, SKIPPED_STEM_SUFFIXES) == path.stem:
            preds.setdefault(_strip(path.stem, tuple(PRED_ROLES)), []).append(path)
    gts: dict[str, Path] = {}
    for path in list_images(gt_dir):
        key = _strip(path.stem, MASK_STEM_SUFFIXES)
        if key in gts:
            raise UserError(f"two ground-truth files for {key}: {gts[key].name} and {path.name}", path=gt_dir, fix="keep one")
        gts[key] = path
    lonely_preds = [p for key in sorted(set(preds) - set(gts)) for p in preds[key]]
    lonely_gts = [gts[key] for key in sorted(set(gts) - set(preds))]
    check_paired(
        {"predictions without ground truth": lonely_preds, "ground truth without a prediction": lonely_gts},
        f"{pred_dir} + {gt_dir}",
        "name each prediction like its ground truth (NAME.png, NAME_labels.png or NAME_probs.tif), or move the others out",
    )
    pairs = []
    for key, gt in sorted(gts.items()):
        roles = _roles(preds[key])
        pages = count_pages(gt)
        for path in filter(None, roles.values()):
            if count_pages(path) != pages:
                raise UserError(
                    f"prediction has {count_pages(path)} page(s) but its ground truth {gt.name} has {pages}",
                    path=path,
                    fix="predict every page of the stack",
                )
        pairs += [PredictionPair(gt, **roles, page=None if pages == 1 else page) for page in range(pages)]
    return pairs


def _roles(paths: list[Path]) -> dict[str, Path]:
    """One stem's prediction files by role (labels, probs, instances): at most one of each."""
    roles: dict[str, Path] = {}
    for path in paths:
        role = next((r for suffix, r in PRED_ROLES.items() if path.stem.lower().endswith(suffix)), "labels")
        if role in roles:
            raise UserError(
                f"two {role} files for one image: {roles[role].name} and {path.name}",
                path=path.parent,
                fix="keep one of them",
            )
        roles[role] = path
    if set(roles) == {"instances"}:
        raise UserError("instances but no labels or probabilities", path=roles["instances"], fix="add NAME_labels.png or NAME_probs.tif")
    return {"labels": roles.get("labels"), "probs": roles.get("probs"), "instances": roles.get("instances")}


def read_prediction(pair: PredictionPair, n_classes: int, boundary_class: int | None) -> Prediction:
    """Class ids from the label file (or the probabilities' argmax), foreground from the probabilities (or labels)."""
    from_probs = from_labels = None
    if pair.probs is not None:
        from_probs = interpret_prediction(read_image(pair.probs, pair.page), n_classes, boundary_class, pair.probs)
    if pair.labels is not None:
        from_labels = interpret_prediction(read_image(pair.labels, pair.page), n_classes, boundary_class, pair.labels)
    prediction = from_probs or from_labels
    if from_probs is not None and from_labels is not None:
        _check_same_size(from_labels.classes, from_probs.classes, pair.labels, pair.probs)
        prediction = Prediction(from_labels.classes, from_probs.foreground)
    if pair.instances is not None:
        prediction.objects = read_mask(pair.instances, pair.page).astype(np.int64)
        _check_same_size(prediction.objects, prediction.classes, pair.instances, pair.pred)
    return prediction


def _check_same_size(array: np.ndarray, reference: np.ndarray, path: Path, reference_path: Path) -> None:
    if array.shape != reference.shape:
        raise UserError(
            f"size {_size(array)} differs from {Path(reference_path).name} ({_size(reference)})",
            path=path,
            fix="pass files of one prediction run, at the ground truth's size",
        )


def interpret_prediction(array: np.ndarray, n_classes: int, boundary_class: int | None, source) -> Prediction:
    """A (C, H, W) or (H, W) prediction array -> class ids and foreground probability (see the module doc)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if np.issubdtype(array.dtype, np.floating):
        return _from_probabilities(array, n_classes, boundary_class, source)
    if array.shape[0] != 1 and not all(np.array_equal(array[0], c) for c in array[1:]):
        raise UserError(f"label image has {array.shape[0]} different channels", path=source, fix="save labels as one channel")
    classes = mask_to_classes(array[0].astype(np.int64), DataConfig(n_classes=n_classes), path=source)
    foreground = None if boundary_class is None else (classes != boundary_class).astype(np.float64)
    return Prediction(classes, foreground)


def _from_probabilities(probs: np.ndarray, n_classes: int, boundary_class: int | None, source) -> Prediction:
    channels = probs.shape[0]
    if channels not in (1, n_classes) or (channels == 1 and n_classes != 2):
        raise UserError(
            f"probability map has {channels} channel(s) for {n_classes} classes",
            path=source,
            fix="save one channel (class 1 of 2) or one per class, or set --classes",
        )
    low, high = float(np.nanmin(probs)), float(np.nanmax(probs))
    if not (np.all(np.isfinite(probs)) and low >= -PROBABILITY_TOLERANCE and high <= 1 + PROBABILITY_TOLERANCE):
        raise UserError(
            f"probabilities must lie in [0, 1], found [{low:.4g}, {high:.4g}]",
            path=source,
            fix="save softmax/sigmoid outputs, or integer class ids",
        )
    probs = np.clip(probs.astype(np.float64), 0.0, 1.0)
    if channels == 1:
        class1 = probs[0]
        classes = (class1 > 0.5).astype(np.int64)
        foreground = None if boundary_class is None else (class1 if boundary_class == 0 else 1 - class1)
    else:
        classes = probs.argmax(axis=0)
        foreground = None if boundary_class is None else 1 - probs[boundary_class]
    return Prediction(classes, foreground)


def read_ground_truth(pair: PredictionPair, n_classes: int, ignore_index: int | None) -> np.ndarray:
    raw = read_mask(pair.gt, pair.page)
    return mask_to_classes(raw, DataConfig(n_classes=n_classes, ignore_index=ignore_index), path=pair.gt)


# --------------------------------------------------------------------------- scoring


def score_image(
    pred: Prediction,
    gt_classes: np.ndarray,
    *,
    n_classes: int,
    boundary_class: int | None,
    ignore_index: int | None,
    threshold_sweep_levels: bool,
    instances: bool,
    warping: bool,
    overlay: bool,
) -> ImageScore:
    """Class metrics at 0.5 (argmax); with a boundary class the ISBI scores and, if asked, instance scores."""
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
        objects = metrics.label_objects(pred.foreground > 0.5) if pred.objects is None else pred.objects
        score.instances = metrics.instance_counts(objects, metrics.label_objects(gt_fg))
        score.summary.update(score.instances.summarize())
    if overlay:
        from .report import error_overlay

        pred_fg = pred.classes != separator
        score.overlay = error_overlay(gt_fg, pred_fg, valid, None if types is None else types[0])
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
    threshold_sweep: bool = False,
    instances: bool = False,
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
    probabilities, `gt` (H, W) raw mask values). `boundary_class`: the
    membrane/background class that separates objects; without it only the
    class metrics are computed (the ISBI keys are None). `threshold_sweep`:
    the challenge's sweep (best threshold per score, and the value at 0.5);
    else every score at 0.5. `instances`: AP, F1 and SEG of the connected
    objects. `warping=False` skips the (slowest) warping error. `report_dir`:
    write the HTML report there, with `report_title`, `report_headline` and
    `report_figures` (PNG paths or (caption, path) pairs) passed to
    `report.write_report`.

    Results: `images` (name -> scores, with `pred`/`gt` files), `mean` (the
    per-image mean), `stack` (the set pooled as one stack with one threshold
    per score, as the challenge scored its 30-slice stack), `sweep` (pooled
    error per threshold) and `settings`.
    """
    if instances and boundary_class is None:
        raise UserError("instance scores need the class that separates objects", fix="pass --boundary-class (0 for ISBI)")
    if boundary_class is not None and not 0 <= boundary_class < n_classes:
        raise UserError(f"boundary class {boundary_class} is not one of 0..{n_classes - 1}", fix="pass a class id")
    options = dict(
        n_classes=n_classes,
        boundary_class=boundary_class,
        ignore_index=ignore_index,
        threshold_sweep_levels=threshold_sweep,
        instances=instances,
        warping=warping,
        overlay=report_dir is not None,
    )
    names, files, scores = [], [], []
    for name, pred_path, gt_path, prediction, gt_classes in _load(pred, gt, n_classes, boundary_class, ignore_index, progress):
        _check_same_size(prediction.classes, gt_classes, pred_path, gt_path)
        names.append(name)
        files.append({"pred": str(pred_path), "gt": str(gt_path)})
        scores.append(score_image(prediction, gt_classes, **options))
    results = {
        "images": {n: {**f, **s.summary} for n, f, s in zip(names, files, scores)},
        "mean": _mean([s.summary for s in scores]),
        "stack": _pooled(scores),
        "sweep": None if scores[0].sweep is None else functools.reduce(operator.add, [s.sweep for s in scores]).curves(),
        "settings": {k: v for k, v in options.items() if k not in ("overlay", "threshold_sweep_levels")}
        | {"threshold_sweep": threshold_sweep, "n_images": len(scores)},
    }
    results = _json_ready(results)
    if json_path is not None:
        write_text(json_path, json.dumps(results, indent=2) + "\n")
    if report_dir is not None:
        from .report import write_report

        overlays = dict(zip(names, (s.overlay for s in scores)))
        write_report(
            report_dir, results, overlays=overlays, extra_figures=report_figures, title=report_title, headline=report_headline
        )
    return results


def _size(array: np.ndarray) -> str:
    return f"{array.shape[-2]} x {array.shape[-1]}"


def _load(pred, gt, n_classes: int, boundary_class: int | None, ignore_index: int | None, progress: bool):
    """Yield (name, pred source, gt source, Prediction, ground-truth classes) for folders or one array pair."""
    if isinstance(pred, (str, Path)) or isinstance(gt, (str, Path)):
        if not (isinstance(pred, (str, Path)) and isinstance(gt, (str, Path))):
            raise UserError("pass two folders or two arrays", fix="give --pred and --gt as folders")
        from tqdm import tqdm

        for pair in tqdm(pair_predictions(pred, gt), desc="evaluating", unit="image", disable=not progress):
            yield pair.name, pair.pred, pair.gt, read_prediction(pair, n_classes, boundary_class), read_ground_truth(
                pair, n_classes, ignore_index
            )
        return
    prediction = interpret_prediction(np.asarray(pred), n_classes, boundary_class, "prediction array")
    config = DataConfig(n_classes=n_classes, ignore_index=ignore_index)
    yield "image", "prediction array", "ground-truth array", prediction, mask_to_classes(np.asarray(gt), config, "ground-truth array")


def format_summary(results: dict) -> str:
    """A few lines for the terminal: each score of the set pooled as one stack and as the per-image mean."""
    keys = ["pixel_error", "mean_iou", "dice", "rand_error", "info_error", "warping_error", "pixel_error_fscore", "ap", "seg"]
    keys = [k for k in keys if results["stack"].get(k) is not None or results["mean"].get(k) is not None]
    width = max(len(k) for k in keys)
    lines = [f"{results['settings']['n_images']} image(s)", f"{'':{width}}  {'stack':>10}  {'mean':>10}"]
    for key in keys:
        cells = [results[part].get(key) for part in ("stack", "mean")]
        lines.append(f"{key:{width}}  " + "  ".join("      n/a " if v is None else f"{v:10.6f}" for v in cells))
    return "\n".join(lines)
