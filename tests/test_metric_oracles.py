"""unetkit's ISBI 2012 and class metrics against independent oracles.

The definitions are those of ../shared/DESIGN.md ("ISBI 2012 metric definitions").
Each oracle is written here or in tests/oracles.py from them, not
from unetkit's code: plain numpy counts for the pixel errors and class scores,
`scipy.stats.entropy` over the contingency table for the information scores,
and a brute-force warp that counts components over the whole image for the
warping error. Inputs are quantised probabilities, so equal priorities (ties)
and probabilities equal to a threshold (the strict `p > t`) both occur.
"""

from collections import Counter

import numpy as np
import pytest
from scipy import ndimage, stats

import oracles
from unetkit.evaluation.metrics import (
    WARPING_THRESHOLDS,
    class_scores,
    confusion_matrix,
    info_error,
    information_scores,
    pixel_error,
    threshold_sweep,
    warping_counts,
    warping_error,
)
from unetkit.evaluation.topology import warp
from unetkit.io import read_mask

FOUR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
SEEDS = range(6)


def quantised(prob: np.ndarray, levels: int) -> np.ndarray:
    """Probabilities rounded to multiples of 1 / levels: many ties, some exactly on a threshold."""
    return np.round(np.clip(prob, 0, 1) * levels) / levels


def blobs(rng, shape, interior: float = 0.65) -> np.ndarray:
    """A ground truth of smooth random cells (255) and membrane (0)."""
    field = ndimage.gaussian_filter(rng.random(shape), 1.2)
    return np.where(field > np.quantile(field, 1 - interior), 255, 0).astype(np.uint8)


def noisy_prediction(rng, gt: np.ndarray, levels: int = 20) -> np.ndarray:
    """A cell-interior probability that leans toward the truth."""
    return quantised(0.55 * (gt > 0) + 0.45 * rng.random(gt.shape), levels)


# --------------------------------------------------------------------------- pixel errors and class scores


def fscore_error_oracle(prob, gt, ignore) -> tuple[list[float], float, float]:
    """Per-threshold 1 - F of the interior over the kept pixels, the best value and its first threshold."""
    truth, kept = gt[~ignore] > 0, prob[~ignore]
    errors = []
    levels = oracles.java_levels(1.0)
    for t in levels:
        called = kept > t
        tp = np.sum(called & truth)
        precision, recall = tp / max(np.sum(called), 1), tp / np.sum(truth)
        errors.append(1 - (2 * precision * recall / (precision + recall) if tp else 0.0))
    best = int(np.argmin(errors))
    return errors, errors[best], levels[best]


@pytest.mark.parametrize("seed", SEEDS)
def test_pixel_errors_match_a_plain_count(seed):
    rng = np.random.default_rng(seed)
    gt = np.stack([blobs(rng, (18, 23)) for _ in range(2)])  # a stack: counts pool, one threshold
    prob = noisy_prediction(rng, gt)
    ignore = rng.random(gt.shape) < 0.15
    errors, best, best_t = fscore_error_oracle(prob, gt, ignore)

    counts, _ = threshold_sweep(prob, gt, ignore=ignore, warping=False)
    np.testing.assert_allclose(counts.curves()["pixel_error_fscore"], errors, rtol=0, atol=1e-12)
    summary = counts.summarize()
    assert summary["pixel_error_fscore"] == pytest.approx(best, abs=1e-12)
    assert summary["pixel_error_fscore_threshold"] == best_t
    assert summary["pixel_error_fscore_at_0.5"] == pytest.approx(errors[5], abs=1e-12)

    for t in (0.5, 0.4, 0.7):  # each is also a value of `prob`: the comparison must be strict
        expected = np.mean((prob > t)[~ignore] != (gt > 0)[~ignore])
        assert pixel_error(prob, gt, threshold=t, ignore=ignore) == pytest.approx(expected, abs=1e-15), t


def test_class_scores_match_a_plain_count():
    rng = np.random.default_rng(7)
    target = rng.integers(0, 4, size=(3, 17, 19))  # class 3 is the ignore index
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 3, target.shape))
    pred[0, :4] = 3  # a prediction of the ignored class still counts, as column 3
    kept = target != 3

    cm = confusion_matrix(pred, target, n_classes=4, ignore_index=3)
    for true_class in range(4):
        for pred_class in range(4):
            expected = np.sum((target == true_class) & (pred == pred_class) & kept)
            assert cm[true_class, pred_class] == expected, (true_class, pred_class)

    scores = class_scores(cm)
    for c in range(3):
        mine, theirs = (pred == c) & kept, (target == c) & kept
        assert scores["iou"][c] == pytest.approx(np.sum(mine & theirs) / np.sum(mine | theirs), abs=1e-15)
        assert scores["dice"][c] == pytest.approx(2 * np.sum(mine & theirs) / (mine.sum() + theirs.sum()), abs=1e-15)
    assert scores["pixel_error"] == pytest.approx(np.mean(pred[kept] != target[kept]), abs=1e-15)


# --------------------------------------------------------------------------- information scores


def contingency(prob, gt, t) -> Counter:
    """Pixel counts per (ground-truth object, predicted segment) over the ground-truth interior of a stack.

    Objects and segments are 4-connected components, distinct per image; a
    ground-truth interior pixel that the prediction calls membrane is a
    segment of its own.
    """
    table = Counter()
    for k in range(gt.shape[0]):
        objects = ndimage.label(gt[k] > 0, FOUR)[0]
        segments = ndimage.label(prob[k] > t, FOUR)[0]
        for y, x in zip(*np.nonzero(objects)):
            segment = (k, int(segments[y, x])) if segments[y, x] else (k, "alone", y, x)
            table[(k, int(objects[y, x])), segment] += 1
    return table


def information_oracle(table: Counter) -> dict:
    """Entropies in bits from the contingency table; conditionals as weighted entropies of its rows/columns."""
    n = sum(table.values())
    by_object, by_segment = {}, {}
    for (obj, seg), count in table.items():
        by_object.setdefault(obj, []).append(count)
        by_segment.setdefault(seg, []).append(count)
    h_gt = stats.entropy([sum(c) for c in by_object.values()], base=2)
    h_pred = stats.entropy([sum(c) for c in by_segment.values()], base=2)
    h_gt_given_pred = sum(sum(c) / n * stats.entropy(c, base=2) for c in by_segment.values())
    h_pred_given_gt = sum(sum(c) / n * stats.entropy(c, base=2) for c in by_object.values())
    mutual = h_gt - h_gt_given_pred
    v_info = 2 * mutual / (h_gt + h_pred) if h_gt + h_pred > 0 else 1.0
    return {
        "h_gt": h_gt,
        "h_pred": h_pred,
        "h_gt_given_pred": h_gt_given_pred,
        "h_pred_given_gt": h_pred_given_gt,
        "mutual_information": mutual,
        "v_info": v_info,
    }


def label_maps(rng, n=2, shape=(14, 17)) -> np.ndarray:
    """Random label maps of blocky objects of a few pixels to a few dozen, 0 = membrane."""
    coarse = rng.integers(0, 4, size=(n, shape[0] // 3 + 1, shape[1] // 3 + 1))
    fine = np.kron(coarse, np.ones((1, 3, 3), int))[:, : shape[0], : shape[1]]
    return np.where(rng.random(fine.shape) < 0.1, 0, fine)


@pytest.mark.parametrize("seed", SEEDS)
def test_information_scores_match_scipy_entropies(seed):
    rng = np.random.default_rng(100 + seed)
    gt = label_maps(rng)
    prob = quantised(0.5 * (gt > 0) + 0.5 * rng.random(gt.shape), 10)

    counts, _ = threshold_sweep(prob, gt, warping=False)
    v_info = []
    for i, t in enumerate(counts.thresholds):
        expected = information_oracle(contingency(prob, gt, t))
        scores = information_scores(counts.segments[i])
        for key, value in expected.items():
            assert float(scores[key]) == pytest.approx(value, abs=1e-9), (t, key)
        v_info.append(expected["v_info"])
    assert info_error(prob, gt) == pytest.approx(1 - max(v_info), abs=1e-9)
    assert info_error(prob, gt, threshold=0.5) == pytest.approx(1 - v_info[5], abs=1e-9)


# --------------------------------------------------------------------------- warping error


def assert_warping_matches_oracle(prob: np.ndarray, gt: np.ndarray) -> None:
    """Counts at every level, the swept error, and the splits and merges at its best level, all exact."""
    everywhere = np.ones(gt.shape, bool)
    for t in WARPING_THRESHOLDS:
        counts = tuple(int(v) for v in warping_counts(prob, gt > 0, everywhere, t)[0])
        assert counts == oracles.warping_counts(prob, gt, t), f"(splits, merges, mismatches) at t={t}"
    error, splits, merges = oracles.warping_error(prob, gt)
    assert warping_error(prob, gt) == error
    summary = threshold_sweep(prob, gt)[0].summarize()
    assert (summary["splits"], summary["merges"]) == (splits, merges)


@pytest.mark.parametrize("seed", range(10))
def test_warping_error_matches_brute_force_on_random_maps(seed):
    rng = np.random.default_rng(200 + seed)
    gt = blobs(rng, tuple(rng.integers(12, 21, size=2)))
    prob = noisy_prediction(rng, gt, levels=16)
    assert_warping_matches_oracle(prob, gt)
    # the warped ground truth itself, at a level where many priorities tie
    target, priority = prob > 0.5, np.abs(prob - 0.5).astype(np.float32)
    np.testing.assert_array_equal(warp(gt > 0, target, priority), oracles.warp(gt > 0, target, priority))


def crop_with_cells(labels: np.ndarray, rng, size: int) -> np.ndarray:
    """A random size x size crop holding at least three cells (not all inside one cell)."""
    while True:
        y, x = rng.integers(0, np.array(labels.shape) - size)
        crop = labels[y : y + size, x : x + size]
        if ndimage.label(crop > 0, FOUR)[1] >= 3:
            return crop


@pytest.mark.parametrize("slice_name", ["00.png", "07.png", "15.png", "29.png"])
def test_warping_error_matches_brute_force_on_isbi_crops(isbi_dir, slice_name):
    labels = read_mask(isbi_dir / "train" / "labels" / slice_name)  # 255 = cell interior, 0 = membrane
    rng = np.random.default_rng(int(slice_name[:2]))
    for size in (24, 32):
        gt = crop_with_cells(labels, rng, size)
        blurred = ndimage.gaussian_filter((gt > 0).astype(float), 1.0)
        prob = quantised(blurred + rng.normal(0, 0.2, gt.shape), 255)  # an 8-bit probability map
        assert_warping_matches_oracle(prob, gt)
