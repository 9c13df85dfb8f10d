"""Prediction files paired with ground truth and read into class ids, foreground probabilities and objects.

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
mask conventions of DESIGN.md (`data.mask_to_classes`); instance label maps
give both their classes (as trained: objects, and background where objects
touch) and their instances, which the instance scores match.

The ISBI scores (Rand, information, warping, F-score pixel error) and
instance scores need `boundary_class`: the class that separates objects (the
membrane; 0 for ISBI). Their "foreground" is every other class, and a
prediction's foreground probability is 1 - P(boundary class).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..data import MASK_STEM_SUFFIXES, check_paired, mask_to_classes, strip_suffix
from ..errors import UserError
from ..io import count_pages, list_images, read_image, read_mask

PRED_ROLES = {"_probs": "probs", "_instances": "instances", "_labels": "labels"}  # stem ending -> role
SKIPPED_STEM_SUFFIXES = ("_overlay",)
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
        stem = strip_suffix(self.gt.stem, MASK_STEM_SUFFIXES)
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


# --------------------------------------------------------------------------- files


def pair_predictions(pred_dir: str | Path, gt_dir: str | Path) -> list[PredictionPair]:
    """Pair prediction files with ground-truth files by stem; unpaired or doubled files are an error."""
    preds: dict[str, list[Path]] = {}
    for path in list_images(pred_dir):
        if strip_suffix(path.stem, SKIPPED_STEM_SUFFIXES) == path.stem:
            preds.setdefault(strip_suffix(path.stem, tuple(PRED_ROLES)), []).append(path)
    gts: dict[str, Path] = {}
    for path in list_images(gt_dir):
        key = strip_suffix(path.stem)
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


def read_prediction(pair: PredictionPair, masks: DataConfig, boundary_class: int | None) -> Prediction:
    """Class ids from the label file (or the probabilities' argmax), foreground from the probabilities (or labels)."""
    from_probs = from_labels = None
    if pair.probs is not None:
        from_probs = interpret_prediction(read_image(pair.probs, pair.page), masks, boundary_class, pair.probs)
    if pair.labels is not None:
        from_labels = interpret_prediction(read_image(pair.labels, pair.page), masks, boundary_class, pair.labels)
    prediction = from_probs or from_labels
    if from_probs is not None and from_labels is not None:
        check_same_size(from_labels.classes, from_probs.classes, pair.labels, pair.probs)
        prediction = Prediction(from_labels.classes, from_probs.foreground)
    if pair.instances is not None:
        prediction.objects = read_mask(pair.instances, pair.page).astype(np.int64)
        check_same_size(prediction.objects, prediction.classes, pair.instances, pair.pred)
    return prediction


def check_same_size(array: np.ndarray, reference: np.ndarray, path: Path, reference_path: Path) -> None:
    if array.shape != reference.shape:
        raise UserError(
            f"size {_size(array)} differs from {Path(reference_path).name} ({_size(reference)})",
            path=path,
            fix="pass files of one prediction run, at the ground truth's size",
        )


def interpret_prediction(array: np.ndarray, masks: DataConfig, boundary_class: int | None, source) -> Prediction:
    """A (C, H, W) or (H, W) prediction array -> class ids and foreground probability (see the module doc).

    `masks` is the mask convention (class count; for a colour-coded run, its colours, which its label images use).
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if np.issubdtype(array.dtype, np.floating):
        return _from_probabilities(array, masks.n_classes, boundary_class, source)
    if masks.mask_kind == "colours" and array.shape[0] == 3:
        classes = mask_to_classes(array.transpose(1, 2, 0), masks, path=source)
    elif array.shape[0] != 1 and not all(np.array_equal(array[0], c) for c in array[1:]):
        raise UserError(f"label image has {array.shape[0]} different channels", path=source, fix="save labels as one channel")
    else:
        classes = mask_to_classes(array[0].astype(np.int64), DataConfig(n_classes=masks.n_classes), path=source)
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


def read_ground_truth(pair: PredictionPair, masks: DataConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Class ids by the mask convention and, for instance label maps, the map itself (the objects to match)."""
    raw = read_mask(pair.gt, pair.page, palette_colours=masks.mask_kind == "colours")
    return ground_truth(raw, masks, pair.gt)


def ground_truth(raw: np.ndarray, masks: DataConfig, source) -> tuple[np.ndarray, np.ndarray | None]:
    objects = raw.astype(np.int64) if masks.mask_kind == "instances" and raw.ndim == 2 else None
    return mask_to_classes(raw, masks, path=source), objects


def _size(array: np.ndarray) -> str:
    return f"{array.shape[-2]} x {array.shape[-1]}"
