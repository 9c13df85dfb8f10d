import pytest
import torch
from torch.nn import functional as F

from unetkit.model.losses import make_loss, soft_dice_loss, weighted_cross_entropy


def sample(n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, n_classes, 8, 8, generator=g, requires_grad=True)
    target = torch.randint(0, n_classes, (2, 8, 8), generator=g)
    return logits, target


def test_unit_weights_equal_plain_cross_entropy():
    logits, target = sample()
    plain = F.cross_entropy(logits, target)
    torch.testing.assert_close(weighted_cross_entropy(logits, target), plain)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, torch.ones(2, 8, 8)), plain)


def test_pixel_weights_scale_the_pixel_terms():
    logits, target = sample()
    weight = torch.ones(2, 8, 8)
    weight[0, 0, 0] = 11.0
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    expected = (per_pixel.sum() + 10 * per_pixel[0, 0, 0]) / per_pixel.numel()
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weight), expected)


def test_class_weights():
    logits, target = sample()
    class_weights = torch.tensor([1.0, 2.0, 0.0])
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    expected = (per_pixel * class_weights[target]).mean()
    torch.testing.assert_close(weighted_cross_entropy(logits, target, class_weights=class_weights), expected)


@pytest.mark.parametrize("name", ["ce", "dice", "ce+dice"])
def test_ignored_pixels_count_in_no_loss(name):
    logits, target = sample()
    target[:, :4] = 255
    loss_fn = make_loss(name, ignore_index=255)
    loss = loss_fn(logits, target, None)
    loss.backward()
    assert torch.all(logits.grad[:, :, :4] == 0) and logits.grad[:, :, 4:].abs().sum() > 0
    other = logits.detach().clone()
    other[:, :, :4] = 100.0  # anything at ignored pixels
    torch.testing.assert_close(loss_fn(other, target, None), loss.detach())


def test_dice_perfect_and_wrong_predictions():
    _, target = sample(n_classes=3)
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(perfect, target) < 1e-3
    wrong = F.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(wrong, target) > 0.95


def test_sum_is_the_sum_and_unknown_names_fail():
    logits, target = sample()
    weight = torch.rand(2, 8, 8)
    total = make_loss("ce+dice")(logits, target, weight)
    torch.testing.assert_close(total, make_loss("ce")(logits, target, weight) + make_loss("dice")(logits, target, weight))
    with pytest.raises(ValueError, match="valid losses: ce, dice, ce\\+dice"):
        make_loss("focal")
