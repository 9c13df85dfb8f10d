import numpy as np
import torch

from unetkit.metrics import class_scores, confusion_matrix


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
