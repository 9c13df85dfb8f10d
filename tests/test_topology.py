import numpy as np
import pytest
from scipy import ndimage

from unetkit.evaluation import topology as T


def _patch(code: int) -> np.ndarray:
    """The 3 x 3 pattern of a neighbourhood code inside a 5 x 5 membrane frame."""
    patch = np.zeros((5, 5), bool)
    for bit, (dy, dx) in enumerate(T.NEIGHBOURS):
        patch[2 + dy, 2 + dx] = bool(code >> bit & 1)
    return patch


def _component_counts(binary: np.ndarray) -> tuple[int, int]:
    return ndimage.label(binary, T.FOUR)[1], ndimage.label(~binary, T.EIGHT)[1]


def test_simple_point_table_agrees_with_component_counts_on_all_256_patterns():
    # Flipping a simple point keeps the number of 4-connected objects and 8-connected
    # membrane pieces; a non-simple one changes one of them (checked globally, not by T4/T8).
    table = T.simple_point_table()
    for code in range(256):
        on, off = _patch(code), _patch(code)
        on[2, 2], off[2, 2] = True, False
        assert table[code] == (_component_counts(on) == _component_counts(off)), code


def test_known_simple_and_non_simple_points():
    table = T.simple_point_table()
    assert not table[0]  # isolated pixel: flipping creates or deletes an object
    assert not table[255]  # interior pixel: flipping makes a hole
    left, right, up = 1 << 3, 1 << 4, 1 << 1
    assert not table[left | right]  # a bridge between two objects
    assert table[left]  # the end of a line
    assert table[left | up | 1]  # a corner filled in


def _two_cells(height=16, width=21, wall=(10,)):
    gt = np.ones((height, width), bool)
    gt[:, list(wall)] = False
    return gt


def test_warp_removes_geometric_differences_and_keeps_topological_ones():
    gt = _two_cells(wall=(9, 10, 11))
    pred = gt.copy()
    pred[8, 9:12] = True  # a gap through a 3-pixel membrane: merges the two cells
    warped = T.warp(gt, pred, np.full(gt.shape, 0.5))
    assert np.count_nonzero(warped != pred) == 1  # only the pixel that joins the cells is left
    assert ndimage.label(warped, T.FOUR)[1] == 2  # the warped ground truth keeps its two cells
    types = T.classify_mismatches(warped, pred)
    assert np.count_nonzero(types == T.MERGE) == 1 and np.count_nonzero(types) == 1


def test_warp_follows_confidence_order():
    gt = _two_cells(wall=(9, 10, 11))
    pred = gt.copy()
    pred[8, 9:12] = True
    priority = np.zeros(gt.shape)
    priority[8, 9:12] = [0.1, 0.1, 0.4]  # the right-hand pixel is the most confident: it flips first
    warped = T.warp(gt, pred, priority)
    assert warped[8, 11] and not warped[8, 10]  # so the one left behind is the next one in


def test_thickened_membrane_warps_away_completely():
    gt = _two_cells(wall=(10,))
    pred = _two_cells(wall=(10, 11))
    warped = T.warp(gt, pred, np.full(gt.shape, 0.5))
    np.testing.assert_array_equal(warped, pred)
    assert not T.classify_mismatches(warped, pred).any()


def test_split_is_classified_as_split():
    gt = _two_cells(wall=(10,))
    pred = gt.copy()
    pred[7, :10] = False  # a membrane across the left cell cuts it in two
    warped = T.warp(gt, pred, np.full(gt.shape, 0.5))
    types = T.classify_mismatches(warped, pred)
    assert np.count_nonzero(types == T.SPLIT) >= 1
    assert set(np.unique(types)) <= {0, T.SPLIT}


def test_object_addition_and_deletion():
    gt = np.zeros((7, 7), bool)
    gt[1, 1] = True  # an object the prediction misses
    pred = np.zeros((7, 7), bool)
    pred[5, 5] = True  # an object the ground truth does not have
    types = T.classify_mismatches(T.warp(gt, pred, np.ones(gt.shape)), pred)
    assert types[1, 1] == T.OBJECT_DELETION and types[5, 5] == T.OBJECT_ADDITION


def test_valid_mask_freezes_pixels():
    gt = _two_cells(wall=(10,))
    pred = _two_cells(wall=(10, 11))
    valid = np.ones(gt.shape, bool)
    valid[:, 11] = False
    warped = T.warp(gt, pred, np.full(gt.shape, 0.5), valid)
    np.testing.assert_array_equal(warped, gt)  # nothing else differs, and column 11 may not move
    assert not T.classify_mismatches(warped, pred, valid).any()


def test_warp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        T.warp(np.zeros((4, 4)), np.zeros((4, 5)), np.zeros((4, 4)))
