import re

import numpy as np
from PIL import Image

from unetkit.report import COLOURS, error_overlay, write_report


def _results():
    image = {"pixel_error": 0.1, "mean_iou": 0.8, "dice": 0.9, "rand_error": 0.05, "info_error": 0.07, "warping_error": 0.0004}
    stack = {**image, "rand_error_threshold": 0.4, "rand_error_at_0.5": 0.06, "splits": 3, "merges": 1}
    sweep = {
        "thresholds": [0.0, 0.5, 1.0],
        "rand_error": [0.5, 0.06, 0.9],
        "info_error": [0.4, 0.07, 0.8],
        "pixel_error_fscore": [0.3, 0.1, 0.6],
        "warping_thresholds": [0.0, 0.5],
        "warping_error": [0.001, 0.0004],
        "warping_error_classic": [0.002, None],
    }
    return {"images": {"a<b>": image, "c:1": image}, "mean": image, "stack": stack, "sweep": sweep, "settings": {"boundary_class": 0}}


def test_error_overlay_colours():
    gt = np.zeros((9, 9), bool)
    gt[:, :4] = True
    pred = gt.copy()
    pred[0, 6] = True  # false positive
    pred[8, 0] = False  # false negative
    merges = np.zeros(gt.shape, bool)
    merges[4, 6] = True
    overlay = error_overlay(gt, pred, None, merges=merges)
    assert overlay.shape == (9, 9, 3) and overlay.dtype == np.uint8
    assert tuple(overlay[0, 6]) == COLOURS["false_positive"] and tuple(overlay[8, 0]) == COLOURS["false_negative"]
    assert tuple(overlay[5, 7]) == COLOURS["merge"]  # drawn 3 x 3
    assert tuple(overlay[2, 2]) == COLOURS["interior"] and tuple(overlay[2, 8]) == COLOURS["membrane"]


def test_report_is_self_contained_apart_from_its_pngs(tmp_path):
    curves = tmp_path / "curves.png"
    Image.new("RGB", (20, 10), "white").save(curves)
    overlay = np.zeros((8, 8, 3), np.uint8)
    path = write_report(
        tmp_path / "report",
        _results(),
        overlays={"a<b>": overlay, "c:1": overlay},
        extra_figures=[("training curves", curves)],
        title="Demo & co",
        headline="Rand error 0.05 <on the held-out slices>",
    )
    page = path.read_text()
    assert "Demo &amp; co" in page and "&lt;on the held-out slices&gt;" in page and "a&lt;b&gt;" in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert {"plots/errors.png", "plots/sweep.png", "figures/00_curves.png"} <= set(sources)
    assert all((path.parent / src).is_file() for src in sources)
    assert not re.search(r"(src|href)=\"(https?:|/)", page)  # nothing outside the folder
    assert "training curves" in page and "0.0004" in page and "set as one stack" in page
    assert not list(path.parent.rglob("*.tmp")) and not list(path.parent.rglob(".*"))


def test_report_of_figures_only(tmp_path):
    curves = tmp_path / "loss.png"
    Image.new("RGB", (20, 10), "white").save(curves)
    page = write_report(tmp_path / "r", None, extra_figures=[curves], title="training").read_text()
    assert "figures/00_loss.png" in page and "<table>" not in page
