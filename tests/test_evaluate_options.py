"""`unetkit evaluate` flags change what is computed: --no-warping, --classes K (end to end through the CLI)."""

import json

import numpy as np
import pytest
import tifffile
from skimage.segmentation import find_boundaries

from unetkit.cli import main
from unetkit.io import write_image


def cells(seed: int, side: int = 32) -> np.ndarray:
    """ISBI-style ground truth: 255 cell interiors between one-pixel membranes (0)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, side, (6, 2))
    yy, xx = np.mgrid[:side, :side]
    ids = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2, axis=-1)
    return np.where(find_boundaries(ids, mode="inner"), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def membranes(tmp_path_factory):
    """gt/: two membrane masks; pred/: noisy cell-interior probabilities of them."""
    root = tmp_path_factory.mktemp("membranes")
    (root / "pred").mkdir()
    for i in range(2):
        label = cells(i)
        noisy = (label > 0) * 0.8 + 0.1 + np.random.default_rng(i).normal(0, 0.3, label.shape)
        write_image(root / "gt" / f"s{i}.png", label)
        tifffile.imwrite(root / "pred" / f"s{i}_probs.tif", np.clip(noisy, 0, 1).astype(np.float32))
    return root


def evaluate_json(pred, gt, out, *flags) -> dict:
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(out), *flags]) == 0
    return json.loads(out.read_text())


def test_no_warping_skips_only_the_warping_error(membranes, tmp_path):
    flags = ("--boundary-class", "0")
    full = evaluate_json(membranes / "pred", membranes / "gt", tmp_path / "full.json", *flags)
    fast = evaluate_json(membranes / "pred", membranes / "gt", tmp_path / "fast.json", *flags, "--no-warping")
    for part in (*full["images"].values(), full["mean"], full["stack"]):
        assert part["warping_error"] is not None and part["rand_error"] is not None
    for part in (*fast["images"].values(), fast["mean"], fast["stack"]):
        assert part["warping_error"] is None and part["rand_error"] is not None
    assert fast["stack"]["rand_error"] == full["stack"]["rand_error"]


def test_three_classes_score_three_ious(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 3, (2, 24, 24)).astype(np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 3, gt.shape)).astype(np.uint8)
    for i in range(2):
        write_image(tmp_path / "gt" / f"s{i}.png", gt[i])
        write_image(tmp_path / "pred" / f"s{i}_labels.png", pred[i])
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2  # 2 classes: refused
    assert "are not class ids 0..1" in capsys.readouterr().err
    results = evaluate_json(tmp_path / "pred", tmp_path / "gt", tmp_path / "r.json", "--classes", "3")
    for i in range(2):
        iou = [np.sum((pred[i] == c) & (gt[i] == c)) / np.sum((pred[i] == c) | (gt[i] == c)) for c in range(3)]
        assert results["images"][f"s{i}"]["iou_per_class"] == pytest.approx(iou)
    pooled = [np.sum((pred == c) & (gt == c)) / np.sum((pred == c) | (gt == c)) for c in range(3)]
    assert results["stack"]["iou_per_class"] == pytest.approx(pooled)
