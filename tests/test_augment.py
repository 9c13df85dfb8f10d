import dataclasses
import math

import numpy as np
import pytest
import torch
from skimage.draw import disk, rectangle

from unetkit.config import AugmentConfig
from unetkit.data.augment import augment_batch, elastic_field, gaussian_blur, required_slack, sample_params, sampling_grid

STILL = AugmentConfig(elastic_std=0, rotate=0, scale=0, shift=0, flip=False, brightness=0, contrast=0, gamma=0, noise=0, blur=0)
ELASTIC_ONLY = dataclasses.replace(STILL, elastic_std=10)


def shape_batch(side=160, n=4):
    """A disc plus a bar: image channel and weight equal the mask, so misalignment shows."""
    mask = np.zeros((side, side), np.int64)
    mask[disk((side // 2, side // 2), side // 5, shape=mask.shape)] = 1
    mask[rectangle((20, 30), extent=(12, side - 60), shape=mask.shape)] = 2
    masks = torch.from_numpy(np.stack([mask] * n))
    return {"image": masks[:, None].float(), "mask": masks, "weight": masks.float(), "seed": torch.arange(n) + 7}


def test_still_config_is_the_centre_crop():
    batch = shape_batch()
    image, mask, weight = augment_batch(batch, STILL, input_size=96, target_size=64)
    off_in, off_out = (160 - 96) // 2, (160 - 64) // 2
    torch.testing.assert_close(image, batch["image"][..., off_in : off_in + 96, off_in : off_in + 96], atol=1e-4, rtol=0)
    assert torch.equal(mask, batch["mask"][:, off_out : off_out + 64, off_out : off_out + 64])
    torch.testing.assert_close(weight, batch["weight"][:, off_out : off_out + 64, off_out : off_out + 64], atol=1e-4, rtol=0)


@pytest.mark.parametrize("config", [ELASTIC_ONLY, dataclasses.replace(AugmentConfig(), brightness=0, contrast=0, gamma=0, noise=0, blur=0)])
def test_shape_deforms_identically_in_image_mask_and_weight(config):
    batch = shape_batch()
    image, mask, weight = augment_batch(batch, config, input_size=128, target_size=128)
    assert not torch.equal(mask, batch["mask"][:, 16:144, 16:144])  # it did move
    # Bilinear image vs nearest mask: they may differ only on the one-pixel rim of the shapes.
    assert (image[:, 0].round().long() != mask).float().mean() < 0.02
    assert (weight.round().long() != mask).float().mean() < 0.02
    assert set(mask.unique().tolist()) <= {0, 1, 2}  # class ids stay class ids


def test_elastic_field_std_follows_the_option_and_is_smooth():
    n, size = 400, 65
    for std in (5.0, 20.0):
        coarse = sample_params(range(n), dataclasses.replace(STILL, elastic_std=std))["elastic"]
        assert coarse.shape == (n, 2, 3, 3)
        assert coarse.std().item() == pytest.approx(std, rel=0.05)
        field = elastic_field(coarse, size)
        # bicubic with align_corners=True passes through the coarse grid points
        nodes = field[:, :, ::32, ::32]
        torch.testing.assert_close(nodes, coarse, atol=1e-4, rtol=0)
        assert field[:, :, size // 2, size // 2].std().item() == pytest.approx(std, rel=0.15)
        first, second = field.diff(dim=-1).abs().mean(), field.diff(dim=-1).diff(dim=-1).abs().mean()
        assert first < 4 * std / size  # neighbours move alike: the coarse differences spread over ~size/2 px
        assert second < 0.1 * first  # and the slope changes slowly: smooth, not noisy


def test_rotation_by_90_degrees_matches_rot90():
    image = torch.arange(25.0).view(1, 1, 5, 5)
    params = {k: torch.zeros(1) for k in ("shift_x", "shift_y")}
    params.update(angle=torch.tensor([math.pi / 2]), scale=torch.ones(1), flip=torch.ones(1), elastic=torch.zeros(1, 2, 3, 3))
    grid = sampling_grid(params, 5, 5)
    out = torch.nn.functional.grid_sample(image, grid, mode="nearest", align_corners=True)
    assert torch.equal(out, torch.rot90(image, k=1, dims=(2, 3))) or torch.equal(out, torch.rot90(image, k=-1, dims=(2, 3)))


def test_parameters_are_a_function_of_the_seed():
    a = sample_params([1, 2], AugmentConfig())
    b = sample_params([1, 2], AugmentConfig())
    c = sample_params([3, 2], AugmentConfig())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["elastic"][0], c["elastic"][0]) and torch.equal(a["elastic"][1], c["elastic"][1])


def test_grey_values_change_the_image_only():
    batch = shape_batch(n=2)
    grey = dataclasses.replace(STILL, brightness=0.5, contrast=0.5, gamma=0.5, noise=0.2, blur=2, blur_prob=1.0)
    image, mask, _ = augment_batch(batch, grey, input_size=128, target_size=128)
    assert torch.equal(mask, batch["mask"][:, 16:144, 16:144])
    assert not torch.allclose(image, batch["image"][..., 16:144, 16:144])


def test_blur_sigma_zero_is_identity_and_positive_sigma_smooths():
    image = torch.rand(2, 3, 20, 20)
    out = gaussian_blur(image, torch.tensor([0.0, 2.0]), radius=6)
    torch.testing.assert_close(out[0], image[0])
    assert out[1].std() < image[1].std() / 2


def test_only_the_samples_drawn_for_blur_are_blurred():
    batch = shape_batch(n=8)
    some = dataclasses.replace(STILL, blur=2, blur_prob=0.5)  # the draws do not depend on blur_prob: same seeds, same rest
    drawn = sample_params(batch["seed"].tolist(), some)["blur"] > 0
    assert 0 < drawn.sum() < 8
    blurred, _, _ = augment_batch(batch, some, input_size=128, target_size=128)
    plain, _, _ = augment_batch(batch, dataclasses.replace(some, blur_prob=0), input_size=128, target_size=128)
    assert torch.equal(blurred[~drawn], plain[~drawn])
    assert all(not torch.allclose(b, p) for b, p in zip(blurred[drawn], plain[drawn]))


def test_slack_keeps_the_warp_inside_the_source_window():
    config = dataclasses.replace(AugmentConfig(), elastic_std=0)  # rotation, scale, shift at their maximum
    side = 64
    source = side + 2 * required_slack(config, side)
    params = sample_params(range(200), config)
    params["angle"][:] = math.pi / 4
    params["scale"][:] = 1 / (1 + config.scale)
    params["shift_x"][:] = config.shift
    assert sampling_grid(params, side, source).abs().max() <= 1.0
    assert required_slack(dataclasses.replace(config, enabled=False), side) == 0
