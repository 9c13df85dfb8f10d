from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from _train_data import make_dataset
from unetkit import DataConfig, UserError
from unetkit.data import (
    Example,
    Pair,
    PatchDataset,
    crop_mirrored,
    load_examples,
    mask_to_classes,
    normalize,
    pair_files,
    split_pairs,
)
from unetkit.io import write_image


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


def test_joint_percentiles_keep_a_colour_and_equal_the_per_channel_ones_on_grey():
    dark = np.arange(100, dtype=np.uint8).reshape(1, 10, 10)
    colour = np.concatenate([dark, dark + 100])  # channel 1 brighter than channel 0 everywhere
    per_channel_of = lambda x: normalize(x, DataConfig(percentiles=(0, 100)))  # noqa: E731
    joint_of = lambda x: normalize(x, DataConfig(normalization="percentile-joint", percentiles=(0, 100)))  # noqa: E731
    per_channel, joint = per_channel_of(colour), joint_of(colour)
    np.testing.assert_allclose(per_channel[0], per_channel[1])  # each channel stretched alone: the colour is gone
    np.testing.assert_allclose(joint[1] - joint[0], 100 / 199, rtol=1e-6)  # one range: the difference stays
    assert joint.min() == 0 and joint.max() == 1
    grey = np.repeat(dark, 3, axis=0)
    np.testing.assert_array_equal(joint_of(grey), per_channel_of(grey))


def test_meanstd_normalisation():
    image = np.full((2, 4, 4), 10, np.uint8)
    x = normalize(image, DataConfig(normalization="meanstd", mean=(10.0, 5.0), std=(1.0, 5.0)))
    np.testing.assert_allclose(x[0], 0)
    np.testing.assert_allclose(x[1], 1)


# --------------------------------------------------------------------------- training data



def test_pairs_by_stem_with_mask_suffixes(tmp_path):
    images, masks = make_dataset(tmp_path, n=3, size=16)
    (masks / "01.png").rename(masks / "01_mask.png")
    pairs = pair_files(images, masks)
    assert [(p.image.name, p.mask.name) for p in pairs] == [("00.png", "00.png"), ("01.png", "01_mask.png"), ("02.png", "02.png")]


def test_unpaired_files_are_named_both_ways(tmp_path):
    images, masks = make_dataset(tmp_path, n=3, size=16)
    (masks / "01.png").rename(masks / "zz.png")
    with pytest.raises(UserError, match=r"images without a mask: 01\.png; masks without an image: zz\.png.*fix: give each image a mask"):
        pair_files(images, masks)


def test_stacks_pair_page_by_page(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    tifffile.imwrite(tmp_path / "i" / "stack.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "m" / "stack.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    assert [p.name for p in pair_files(tmp_path / "i", tmp_path / "m")] == ["stack:0", "stack:1", "stack:2"]
    tifffile.imwrite(tmp_path / "m" / "stack.tif", np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(UserError, match="3 page.*has 2"):
        pair_files(tmp_path / "i", tmp_path / "m")


def fake_pairs(n):
    return [Pair(Path(f"{i:02d}.png"), Path(f"{i:02d}.png")) for i in range(n)]


def test_splits_by_file():
    pairs = fake_pairs(10)
    train, val = split_pairs(pairs, val_fraction=0.2)
    assert [p.name for p in val] == ["08", "09"] and len(train) == 8
    train, val = split_pairs(pairs, val_names=("00", "05"))
    assert [p.name for p in val] == ["00", "05"]
    folds = [split_pairs(pairs, folds=3, fold=k)[1] for k in range(3)]
    assert sorted(p.name for fold in folds for p in fold) == [p.name for p in pairs]  # each file held out once
    with pytest.raises(UserError, match="--val-names 42 match no image"):
        split_pairs(pairs, val_names=("42",))


def test_two_images_make_two_folds_and_one_image_needs_no_validation():
    train, val = split_pairs(fake_pairs(2), folds=2, fold=1)
    assert [p.name for p in train] == ["00"] and [p.name for p in val] == ["01"]
    with pytest.raises(UserError, match="only one image.*--val-fraction 0"):
        split_pairs(fake_pairs(1))
    assert split_pairs(fake_pairs(1), val_fraction=0) == (fake_pairs(1), [])


def test_mirrored_crop_equals_numpy_symmetric_padding():
    array = np.arange(2 * 5 * 7).reshape(2, 5, 7)
    padded = np.pad(array, ((0, 0), (6, 6), (6, 6)), mode="symmetric")
    np.testing.assert_array_equal(crop_mirrored(array, -6, -3, 12, 15), padded[:, 0:12, 3:18])
    np.testing.assert_array_equal(crop_mirrored(array, 1, 1, 2, 2), array[:, 1:3, 1:3])


def test_load_checks_sizes_channels_and_fills_meanstd(tmp_path):
    images, masks = make_dataset(tmp_path, n=3, size=16)
    pairs = pair_files(images, masks)
    train, val, config = load_examples(pairs[:2], pairs[2:], DataConfig(normalization="meanstd"), progress=False)
    assert config.mean is not None and len(config.mean) == 1 and train[0].image.dtype == np.float32
    assert abs(np.concatenate([e.image.ravel() for e in train]).mean()) < 1e-4  # training set only
    write_image(masks / "01.png", np.zeros((16, 15), np.uint8))
    with pytest.raises(UserError, match=r"01\.png: image is 16 x 16 but its mask 01\.png is 16 x 15"):
        load_examples(pairs, [], DataConfig(), progress=False)
    write_image(masks / "01.png", np.zeros((16, 16), np.uint8))
    write_image(images / "02.png", np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(UserError, match=r"02\.png: image has 3 channel"):
        load_examples(pairs, [], DataConfig(), progress=False)


@pytest.mark.parametrize(
    "array,axes",
    [
        (np.zeros((16, 16), np.uint16), "YX"),
        (np.zeros((16, 16), np.float32), "YX"),
        (np.zeros((5, 16, 16), np.uint16), "CYX"),  # multi-band, channels first
        (np.zeros((16, 16, 5), np.uint8), "YXS"),  # channels last
    ],
)
def test_loads_16_bit_float_and_multi_band_tiff(tmp_path, array, axes):
    (tmp_path / "i").mkdir()
    array = array + np.random.default_rng(0).integers(0, 100, array.shape).astype(array.dtype)
    tifffile.imwrite(tmp_path / "i" / "a.tif", array, metadata={"axes": axes} if axes != "YXS" else None,
                     photometric="minisblack" if axes != "YXS" else None, planarconfig="contig" if axes == "YXS" else None)
    write_image(tmp_path / "m" / "a.png", np.zeros((16, 16), np.uint8))
    train, _, config = load_examples(pair_files(tmp_path / "i", tmp_path / "m"), [], DataConfig(), progress=False)
    assert train[0].image.shape == (config.in_channels, 16, 16) and config.in_channels == (5 if "C" in axes or "S" in axes else 1)


def make_examples(n=3, size=20):
    rng = np.random.default_rng(0)
    return [Example(f"{i}", rng.random((1, size, size), np.float32), (rng.random((size, size)) > 0.9).astype(np.uint8),
                    rng.random((size, size), np.float32)) for i in range(n)]


def test_patches_are_a_pure_function_of_seed_and_index():
    examples = make_examples()
    a = PatchDataset(examples, target=8, margin=2, slack=3, seed=5)
    b = PatchDataset(examples, target=8, margin=2, slack=3, seed=5)
    assert a.side == 18 and len(a) == 27  # 3 images x ceil(20 / 8)^2
    for index in (40, 3, 40):
        x, y = a[index], b[index]
        assert all(torch.equal(x[k], y[k]) if k != "seed" else x[k] == y[k] for k in x)
    assert not torch.equal(a[1]["image"], PatchDataset(examples, target=8, margin=2, slack=3, seed=6)[1]["image"])
    epoch = [a.image_of(i) for i in range(27)]
    assert sorted(np.bincount(epoch).tolist()) == [9, 9, 9]  # each image equally often per epoch
    assert epoch != [a.image_of(i) for i in range(27, 54)]  # reshuffled each epoch


def test_patch_windows_align_image_mask_and_weight():
    examples = make_examples(n=1)
    dataset = PatchDataset(examples, target=8, margin=2, slack=3, seed=0)
    item = dataset[0]
    # Find the window in the mirrored image: the mask and weight must come from the same place.
    big = np.pad(examples[0].image[0], 30, mode="symmetric")
    hits = [(r, c) for r in range(big.shape[0] - 17) for c in range(big.shape[1] - 17)
            if np.array_equal(big[r : r + 18, c : c + 18], item["image"][0].numpy())]
    assert len(hits) == 1
    r, c = hits[0]
    np.testing.assert_array_equal(np.pad(examples[0].classes, 30, mode="symmetric")[r : r + 18, c : c + 18], item["mask"])
    np.testing.assert_array_equal(np.pad(examples[0].weight, 30, mode="symmetric")[r : r + 18, c : c + 18], item["weight"])
    # and the target window (centre 8 x 8) lies inside the image
    assert 0 <= r + 5 - 30 <= 12 and 0 <= c + 5 - 30 <= 12


def test_foreground_oversampling_centres_patches_on_foreground():
    classes = np.zeros((64, 64), np.uint8)
    classes[30:33, 40:43] = 1  # one small object
    examples = [Example("a", np.zeros((1, 64, 64), np.float32), classes)]
    def share_with_object(p):
        dataset = PatchDataset(examples, target=16, seed=0, fg_oversample=p)
        return np.mean([dataset[i]["mask"][6:10, 6:10].any().item() for i in range(60)])
    assert share_with_object(1.0) == 1.0  # the object is at the patch centre every time
    assert share_with_object(0.0) < 0.3
