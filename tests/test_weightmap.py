import numpy as np
import pytest
from scipy import ndimage

from unetkit.data.weightmap import balancing_weights, border_reach, border_weights, class_frequencies, prior_offsets, weight_map


def two_objects(gap: int = 1) -> np.ndarray:
    """Two 20 x 20 squares side by side, `gap` px apart, in a 100 x 100 mask."""
    mask = np.zeros((100, 100), np.int64)
    mask[40:60, 20:40] = 1
    mask[40:60, 40 + gap : 60 + gap] = 1
    return mask


def test_narrow_gap_weighs_about_wc_plus_w0_and_far_pixels_wc():
    mask = two_objects(gap=1)
    w_c = np.array([1.5, 0.7], np.float32)
    weights = weight_map(mask, w_c, w0=10, sigma=5)
    gap = weights[42:58, 40]  # d1 = d2 = 1 px: w0 * exp(-4 / 50) = 9.23
    np.testing.assert_allclose(gap, 1.5 + 10 * np.exp(-4 / 50), rtol=1e-5)
    assert gap.min() > 1.5 + 0.9 * 10
    assert weights[0:5, 0:5] == pytest.approx(1.5, abs=1e-6)  # > 40 px from both objects
    assert weights[45:55, 25:35] == pytest.approx(0.7)  # inside an object: w_c only


def test_border_term_matches_a_brute_force_computation():
    rng = np.random.default_rng(3)
    mask = (ndimage.gaussian_filter(rng.random((80, 90)), 3) > 0.52).astype(np.int64)
    objects, n = ndimage.label(mask)
    assert n >= 3
    distances = np.sort(np.stack([ndimage.distance_transform_edt(objects != k) for k in range(1, n + 1)]), axis=0)
    expected = 10 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * 5**2))
    expected[mask > 0] = 0
    # The windowed version drops only terms below CUTOFF * w0.
    np.testing.assert_allclose(border_weights(mask, 10, 5), expected, atol=10 * 1e-4)


def test_a_window_grown_by_the_reach_gives_the_exact_border_term():
    """What lazy training relies on (data/ondisk.py): with the whole image's objects, a window with `border_reach`
    px of context computes the border term of its centre bit for bit."""
    rng = np.random.default_rng(1)
    mask = (ndimage.gaussian_filter(rng.random((160, 160)), 3) > 0.56).astype(np.int64)  # sparse: d2 often beyond reach
    objects, n = ndimage.label(mask)
    assert n >= 15
    whole = border_weights(mask, 10, 5, objects=objects)
    reach = border_reach(5)
    for top in range(0, 160, 20):
        for left in range(0, 160, 20):
            y0, x0 = max(top - reach, 0), max(left - reach, 0)
            grown = (slice(y0, top + 20 + reach), slice(x0, left + 20 + reach))
            part = border_weights(mask[grown], 10, 5, objects=objects[grown])
            np.testing.assert_array_equal(part[top - y0 : top - y0 + 20, left - x0 : left - x0 + 20],
                                          whole[top : top + 20, left : left + 20], err_msg=f"window at {top}, {left}")


def test_one_object_has_no_border_term():
    mask = np.zeros((30, 30), np.int64)
    mask[10:20, 10:20] = 1
    assert not border_weights(mask).any()


def test_class_balance_averages_one_and_ignored_pixels_weigh_zero():
    mask = np.array([[0, 0, 0, 1], [0, 0, 255, 1]])
    counts = class_frequencies([mask], 2, ignore_index=255)
    assert counts.tolist() == [5, 2]
    w_c = balancing_weights(counts)
    assert (w_c * counts).sum() / counts.sum() == pytest.approx(1.0)
    weights = weight_map(mask, w_c, border=False, ignore_index=255)
    assert weights[1, 2] == 0 and weights[0, 3] == pytest.approx(w_c[1])


def test_sigma_widens_the_border_band():
    mask = two_objects(gap=8)
    narrow = border_weights(mask, sigma=2)[50, 44]
    wide = border_weights(mask, sigma=8)[50, 44]
    assert narrow < 0.01 < 5 < wide


def test_prior_offsets_recover_the_posterior_from_a_class_weighted_loss():
    import torch

    posterior = torch.tensor([0.8, 0.15, 0.05])
    weights = balancing_weights(np.array([80, 15, 5]))
    logits = torch.zeros(3, requires_grad=True)  # the best a network can do at one pixel, found by descent
    optimizer = torch.optim.LBFGS([logits], max_iter=200)

    def weighted_ce():
        optimizer.zero_grad()
        loss = -(posterior * torch.as_tensor(weights) * torch.log_softmax(logits, 0)).sum()
        loss.backward()
        return loss

    optimizer.step(weighted_ce)
    assert torch.softmax(logits, 0)[0] < 0.5  # the weighted optimum is far from the posterior ...
    corrected = torch.softmax(logits.detach() + torch.from_numpy(prior_offsets(weights)), 0)
    torch.testing.assert_close(corrected, posterior, atol=1e-4, rtol=0)  # ... and the offsets undo it


def test_prior_offsets_skip_what_there_is_nothing_to_undo():
    for nothing in (None, [1.0], [0.7, 0.7], [0.0, 3.0], [0.0, 0.0]):
        assert prior_offsets(nothing) is None
    np.testing.assert_allclose(prior_offsets([2.0, 0.0, 0.5]), [-np.log(2), 0, np.log(2)], rtol=1e-6)

