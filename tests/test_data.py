import numpy as np
import pytest

from unetkit import DataConfig, UserError
from unetkit.data import mask_to_classes, normalize


@pytest.mark.parametrize("low,high", [(0, 255), (0, 1), (False, True)])
def test_two_valued_masks_mean_background_foreground(low, high):
    raw = np.array([[low, high], [high, low]])
    np.testing.assert_array_equal(mask_to_classes(raw, DataConfig()), [[0, 1], [1, 0]])


def test_foreground_value_flips_polarity():
    raw = np.array([[0, 255], [255, 0]], np.uint8)  # ISBI: 0 is membrane
    np.testing.assert_array_equal(mask_to_classes(raw, DataConfig(foreground_value=0)), [[1, 0], [0, 1]])


def test_class_ids_and_ignore_index():
    raw = np.array([[0, 1, 2], [255, 4, 3]], np.uint8)
    classes = mask_to_classes(raw, DataConfig(n_classes=5, ignore_index=255))
    np.testing.assert_array_equal(classes, [[0, 1, 2], [255, 4, 3]])


def test_too_many_values_names_the_file_and_fix():
    raw = np.array([[0, 1, 2, 7]])
    with pytest.raises(UserError, match=r"m\.png: mask values 2, 7 .*fix: raise --classes"):
        mask_to_classes(raw, DataConfig(n_classes=2), path="m.png")


def test_percentile_normalisation_maps_percentiles_to_0_and_1():
    image = np.arange(10000, dtype=np.uint16).reshape(1, 100, 100)
    x = normalize(image, DataConfig(percentiles=(0, 100)))
    assert x.dtype == np.float32 and x.min() == 0 and x.max() == 1


def test_meanstd_normalisation():
    image = np.full((2, 4, 4), 10, np.uint8)
    x = normalize(image, DataConfig(normalization="meanstd", mean=(10.0, 5.0), std=(1.0, 5.0)))
    np.testing.assert_allclose(x[0], 0)
    np.testing.assert_allclose(x[1], 1)
