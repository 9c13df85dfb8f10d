import numpy as np
import pytest
from scipy import ndimage

from unetkit.prediction.postprocess import (
    InstanceConfig,
    distance_seeds,
    fill_holes,
    instances,
    remove_small_objects,
    separate_instances,
)


def touching_disks(seed=0, count=9, radius=11, size=160):
    """Disks drawn in pairs and chains that overlap their neighbours, plus their count."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    centres = []
    while len(centres) < count:
        if centres and rng.random() < 0.7:  # touch the previous disk: centres 1.8 radii apart
            angle = rng.uniform(0, 2 * np.pi)
            cy, cx = np.array(centres[-1]) + 1.8 * radius * np.array([np.sin(angle), np.cos(angle)])
        else:
            cy, cx = rng.uniform(radius, size - radius, 2)
        if not (radius <= cy < size - radius and radius <= cx < size - radius):
            continue
        if any(np.hypot(cy - y, cx - x) < 1.75 * radius for y, x in centres):
            continue  # three disks closer than sqrt(3) radii would cover their centroid: one blob
        centres.append((cy, cx))
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask, count


def as_probs(mask):
    p = np.where(mask, 0.9, 0.1).astype(np.float32)
    return np.stack([1 - p, p])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_touching_disks_are_separated(seed):
    mask, drawn = touching_disks(seed)
    merged = ndimage.label(mask)[1]
    assert merged < drawn  # plain connected components merge touching disks
    labels = instances(as_probs(mask), InstanceConfig(min_size=0))
    assert labels.max() == drawn == len(np.unique(labels)) - 1
    assert np.array_equal(labels > 0, fill_holes(mask))  # the foreground is kept whole (holes filled)


def test_probability_seeds_separate_objects_the_model_is_sure_about():
    mask, drawn = touching_disks(0)
    distance = ndimage.distance_transform_edt(mask)
    p = np.clip(distance / 8, 0, 1) * 0.5 + 0.5 * mask  # interiors peak at the centres, necks stay below 0.9
    probs = np.stack([1 - p, p]).astype(np.float32)
    labels = instances(probs, InstanceConfig(seeds="probability", seed_threshold=0.95, min_size=0))
    assert labels.max() == drawn


def test_objects_without_seed_are_kept():
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = mask[10:18, 10:18] = True
    seeds = np.zeros((20, 20), int)
    seeds[14, 14] = 1
    labels = separate_instances(mask, seeds)
    assert labels.max() == 2 and np.array_equal(labels > 0, mask)


def test_remove_small_objects_and_fill_holes():
    mask = np.zeros((30, 30), bool)
    mask[1:3, 1:3] = True  # 4 px
    mask[10:20, 10:20] = True
    mask[12, 12] = False  # 1-px hole
    mask[14:17, 14:17] = False  # 9-px hole
    cleaned = remove_small_objects(mask, 5)
    assert not cleaned[1:3, 1:3].any() and cleaned[10, 10]
    assert np.array_equal(remove_small_objects(mask, 4), mask)  # an object of exactly min_size stays
    assert fill_holes(mask)[12, 12] and fill_holes(mask)[15, 15]
    partly = fill_holes(mask, max_size=4)
    assert partly[12, 12] and not partly[15, 15]
    assert np.array_equal(fill_holes(mask, max_size=0), mask)


def test_distance_seeds_one_per_disk():
    mask, drawn = touching_disks(1)
    assert distance_seeds(mask, h=2.0).max() == drawn


def test_instance_config_rejects_bad_values():
    with pytest.raises(ValueError):
        InstanceConfig(seeds="magic")
    with pytest.raises(ValueError):
        InstanceConfig(min_size=-1)
