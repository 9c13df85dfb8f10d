import numpy as np
import pytest

from unetkit.io import list_images, read_image
from unetkit.synthetic import generate, write_dataset


def test_deterministic_from_seed():
    a, la = generate((96, 128), seed=3)
    b, lb = generate((96, 128), seed=3)
    c, _ = generate((96, 128), seed=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("shape", [(1, 1), (17, 300), (256, 256)])
def test_any_size_two_valued_labels(shape):
    image, label = generate(shape, seed=0)
    assert image.shape == label.shape == shape and image.dtype == label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 255}


def test_membranes_are_dark_and_a_plausible_share():
    image, label = generate((512, 512), seed=1)
    membrane = label == 0
    assert 0.08 < membrane.mean() < 0.3  # ISBI 2012 slices: about 0.22
    assert image[membrane].mean() < image[~membrane].mean() - 40


def test_write_dataset_uses_the_isbi_layout(tmp_path):
    write_dataset(tmp_path, count=3, shape=(40, 50), seed=2)
    images, labels = list_images(tmp_path / "images"), list_images(tmp_path / "labels")
    assert [p.name for p in images] == [p.name for p in labels] == ["00.png", "01.png", "02.png"]
    assert read_image(labels[0]).shape == (1, 40, 50)
