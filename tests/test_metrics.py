import numpy as np
import torch

from unetkit.evaluation.metrics import class_scores, confusion_matrix


def test_confusion_counts_and_scores():
    target = np.array([[0, 0, 1, 1], [1, 1, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [1, 0, 2, 2]])
    cm = confusion_matrix(pred, target, 3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 3, 0], [0, 0, 1]])
    scores = class_scores(cm)
    np.testing.assert_allclose(scores["iou"], [1 / 3, 3 / 5, 1])
    assert abs(scores["pixel_error"] - 2 / 7) < 1e-12
    np.testing.assert_array_equal(confusion_matrix(torch.as_tensor(pred), torch.as_tensor(target), 3, 255), cm)


def test_identity_gives_iou_one():
    target = np.random.default_rng(0).integers(0, 4, (32, 32))
    scores = class_scores(confusion_matrix(target, target, 4))
    assert scores["mean_iou"] == 1 and scores["pixel_error"] == 0


# --------------------------------------------------------------------------- ISBI 2012 metrics

import itertools  # noqa: E402

import pytest  # noqa: E402
from skimage.metrics import adapted_rand_error, variation_of_information  # noqa: E402

from unetkit.evaluation import metrics as M  # noqa: E402


def _two_cells(height=16, width=21, wall=(10,)):
    """ISBI polarity: 255 cell interior, 0 membrane; two cells split by a vertical wall."""
    gt = np.full((height, width), 255, np.uint8)
    gt[:, list(wall)] = 0
    return gt


def _voronoi(shape=(48, 48), cells=12, seed=0):
    """A small EM-like label image: Voronoi cells with 1-pixel walls (0), interiors 255."""
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, shape, (cells, 2))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
    return np.where(find_boundaries(ids, mode="inner"), 0, 255).astype(np.uint8)


def test_java_thresholds_accumulate_like_a_double_loop():
    assert len(M.THRESHOLDS) == 11 and len(M.WARPING_THRESHOLDS) == 10
    assert M.THRESHOLDS[3] == 0.30000000000000004 and M.THRESHOLDS[5] == 0.5
    assert M.THRESHOLDS[-1] == 0.9999999999999999  # so p = 1 still counts as interior at the last level


def test_identity_gives_every_error_zero():
    gt = _voronoi()
    counts, _ = M.threshold_sweep(gt, gt)
    summary = counts.summarize()
    for key in ("rand_error", "info_error", "warping_error", "warping_error_classic", "pixel_error_fscore"):
        assert summary[key] == 0, key
    assert M.pixel_error(gt, gt) == 0 and M.rand_error(gt, gt, pair_counting="n_choose_2") == 0


def test_one_pixel_gap_counts_only_the_pixel_that_merges():
    gt = _two_cells(wall=(9, 10, 11))
    pred = gt.copy()
    pred[8, 9:12] = 255  # a gap three pixels long through the membrane joins the two cells
    assert M.warping_error(pred, gt, threshold=0.5) == 1 / gt.size  # one topological error ...
    assert M.warping_error(pred, gt, threshold=0.5, classic=True) == 1 / gt.size
    assert M.pixel_error(pred, gt) == 3 / gt.size  # ... where the pixels differ in three
    # Two equal cells merged: TP = sum a^2 = 2 s^2, sum b^2 = 4 s^2, F = 2/3.
    assert M.rand_error(pred, gt) == pytest.approx(1 / 3)


def test_thickened_membrane_changes_pixels_not_topology():
    gt = _two_cells(wall=(10,))
    pred = _two_cells(wall=(10, 11))
    assert M.warping_error(pred, gt) == 0
    assert M.pixel_error(pred, gt) > 0
    assert M.rand_error(pred, gt) > 0  # the membrane pixels are singletons: a small Rand cost


def test_split_raises_rand_and_warping_errors():
    gt = _two_cells(wall=(10,))
    split = gt.copy()
    split[7, :10] = 0
    assert M.rand_error(split, gt) > M.rand_error(gt, gt) == 0
    assert M.info_error(split, gt) > 0
    counts, _ = M.threshold_sweep(split, gt, thresholds=(0.5,), warping_thresholds=(0.5,))
    summary = counts.summarize()
    assert summary["splits"] >= 1 and summary["merges"] == 0 and summary["warping_error"] > 0


def test_rand_fscore_matches_brute_force_pair_counting():
    rng = np.random.default_rng(1)
    gt = _voronoi((10, 10), cells=4, seed=1)
    prob = rng.uniform(size=gt.shape)
    pred_fg = prob > 0.5
    gt_objects = M.label_objects(gt > 0)
    pred_segments = M.label_objects(pred_fg)
    # Every predicted-membrane pixel is a segment of its own.
    pred_segments = np.where(pred_fg, pred_segments, -np.arange(1, pred_fg.size + 1).reshape(pred_fg.shape))
    pixels = [(int(gt_objects[p]), int(pred_segments[p])) for p in zip(*np.nonzero(gt_objects))]
    same_both = sum(a == c and b == d for (a, b), (c, d) in itertools.product(pixels, pixels))
    same_gt = sum(a == c for (a, _), (c, _) in itertools.product(pixels, pixels))
    same_pred = sum(b == d for (_, b), (_, d) in itertools.product(pixels, pixels))
    expected = 2 * same_both / (same_gt + same_pred)  # ordered pairs, self-pairs included (N^2)
    assert M.rand_error(prob, gt, threshold=0.5) == pytest.approx(1 - expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scikit_image_where_definitions_coincide(seed):
    rng = np.random.default_rng(seed)
    gt = _voronoi(seed=seed)
    prob = np.clip((gt > 0) * 0.8 + rng.normal(0, 0.25, gt.shape), 0, 1)
    pred_fg = prob > 0.5
    # scikit-image sees the same segments when every predicted-membrane pixel has its own label
    # and the ground-truth membrane (label 0) is ignored.
    pred_labels = M.label_objects(pred_fg)
    pred_labels[~pred_fg] = pred_labels.max() + 1 + np.arange(np.count_nonzero(~pred_fg))
    gt_labels = M.label_objects(gt > 0)
    are, _, _ = adapted_rand_error(gt_labels, pred_labels, ignore_labels=(0,))
    assert M.rand_error(prob, gt, threshold=0.5, pair_counting="n_choose_2") == pytest.approx(are, abs=1e-9)
    h_pred_given_gt, h_gt_given_pred = variation_of_information(gt_labels, pred_labels, ignore_labels=(0,))
    counts, _ = M.threshold_sweep(prob, gt, thresholds=(0.5,), warping=False)
    info = M.information_scores(counts.segments[0])
    assert info["h_pred_given_gt"] == pytest.approx(h_pred_given_gt, abs=1e-9)
    assert info["h_gt_given_pred"] == pytest.approx(h_gt_given_pred, abs=1e-9)


def test_sweep_picks_the_best_threshold_with_strict_comparison():
    gt = _two_cells(wall=(10,))
    prob = np.where(gt > 0, 0.9, 0.3)
    prob[8, 10] = 0.6  # a weak gap: membrane only for t >= 0.6
    summary = M.threshold_sweep(prob, gt)[0].summarize()
    assert summary["rand_error_threshold"] == 0.6  # the first perfect level (0.6 > 0.6 is false)
    assert summary["rand_error"] == 0 and summary["rand_error_at_0.5"] == pytest.approx(1 / 3)
    assert summary["warping_error"] == 0 and summary["warping_error_at_0.5"] == 1 / gt.size
    # 0.9 > 0.8999999999999999: the Java-accumulated level keeps the interior.
    assert M.rand_error(prob, gt, threshold=M.THRESHOLDS[9]) == 0


def test_stack_pools_counts_with_one_threshold():
    gt = np.stack([_two_cells(), _two_cells(wall=(5,))])
    prob = np.stack([np.where(gt[0] > 0, 0.9, 0.3), np.where(gt[1] > 0, 0.7, 0.1)])
    pooled = M.threshold_sweep(prob, gt)[0]
    first, second = M.threshold_sweep(prob[0], gt[0])[0], M.threshold_sweep(prob[1], gt[1])[0]
    np.testing.assert_array_equal((first + second).segments, pooled.segments)
    assert pooled.summarize()["rand_error_threshold"] == 0.30000000000000004  # the first level right for both


def test_ignored_pixels_count_nowhere():
    gt = _two_cells(wall=(10,))
    pred = gt.copy()
    pred[8, 10] = 255  # a merge, but on a pixel the ground truth says to ignore
    ignore = np.zeros(gt.shape, bool)
    ignore[8, 10] = True
    assert M.warping_error(pred, gt, ignore=ignore) == 0
    assert M.pixel_error(pred, gt, ignore=ignore) == 0
    assert M.rand_error(pred, gt, ignore=ignore) > 0  # the prediction's objects still merge through it


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="must be equal"):
        M.rand_error(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.rand_error(np.full((4, 4), 2.0), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="pair_counting"):
        M.rand_fscore(np.ones(7), pair_counting="n3")


def test_speed_of_rand_and_warping_on_512(isbi_dir):
    import time

    from PIL import Image

    gt = np.asarray(Image.open(isbi_dir / "train" / "labels" / "00.png"))
    prob = np.clip(gt / 255 * 0.8 + np.random.default_rng(0).normal(0.1, 0.1, gt.shape), 0, 1)
    start = time.perf_counter()
    M.rand_error(prob, gt)
    rand_seconds = time.perf_counter() - start
    start = time.perf_counter()
    M.warping_error(prob, gt, threshold=0.5)
    warp_seconds = time.perf_counter() - start
    # Loose bounds (the machine is shared); benchmarks/bench_metrics.py measures properly.
    assert rand_seconds < 1.0 and warp_seconds < 4.0


# --------------------------------------------------------------------------- instance scores


def test_instance_scores_on_known_objects():
    gt = np.zeros((20, 20), int)
    gt[1:9, 1:9] = 1  # 64 px
    gt[11:19, 11:19] = 2  # 64 px
    gt[1:5, 14:18] = 3  # 16 px, missed
    pred = np.zeros_like(gt)
    pred[1:9, 1:9] = 7  # exact
    pred[11:19, 11:17] = 9  # 48 of 64: IoU 0.75
    pred[15:18, 2:5] = 4  # a false object
    summary = M.instance_counts(pred, gt).summarize()
    assert summary["n_gt_objects"] == 3 and summary["n_pred_objects"] == 3
    assert summary["ap_50"] == pytest.approx(2 / 4)  # TP 2, FP 1, FN 1
    assert summary["ap_75"] == pytest.approx(1 / 5)  # 0.75 > 0.75 is false: TP 1, FP 2, FN 2
    assert summary["seg"] == pytest.approx((1 + 0.75 + 0) / 3)
    assert summary["f1_50"] == pytest.approx(2 / 3)
    identity = M.instance_counts(gt, gt).summarize()
    assert identity["ap"] == 1 and identity["seg"] == 1


def test_instance_counts_pool_over_images():
    gt = np.zeros((6, 6), int)
    gt[1:3, 1:3] = 1
    empty = np.zeros_like(gt)
    pooled = (M.instance_counts(gt, gt) + M.instance_counts(empty, gt)).summarize()
    assert pooled["ap_50"] == pytest.approx(1 / 2) and pooled["seg"] == pytest.approx(1 / 2)
