import json
import shutil

import numpy as np
import pytest
import tifffile
from skimage.segmentation import find_boundaries

import unetkit
from unetkit.cli import main
from unetkit.io import write_image

ISBI_KEYS = ("pixel_error", "rand_error", "info_error", "warping_error", "mean_iou", "dice")


def _label(seed: int, shape=(40, 40), cells=8) -> np.ndarray:
    """ISBI-style ground truth: 255 cell interior, 0 one-pixel membranes."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, shape, (cells, 2))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
    return np.where(find_boundaries(ids, mode="inner"), 0, 255).astype(np.uint8)


def _probability(label: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip((label > 0) * 0.8 + 0.1 + rng.normal(0, 0.15, label.shape), 0, 1).astype(np.float32)


@pytest.fixture
def folders(tmp_path):
    """gt/: three masks; labels/: the masks themselves; probs/: noisy probabilities of the interior."""
    for name in ("gt", "labels", "probs"):
        (tmp_path / name).mkdir()
    for i in range(3):
        label = _label(i)
        write_image(tmp_path / "gt" / f"s{i}.png", label)
        write_image(tmp_path / "labels" / f"s{i}_labels.png", label)
        tifffile.imwrite(tmp_path / "probs" / f"s{i}_probs.tif", _probability(label, i))
    return tmp_path


def test_identity_gives_zero_errors_and_iou_one(folders):
    results = unetkit.evaluate(folders / "labels", folders / "gt", boundary_class=0, threshold_sweep=True, progress=False)
    assert set(results["images"]) == {"s0", "s1", "s2"}
    for part in [*results["images"].values(), results["mean"], results["stack"]]:
        for key in ISBI_KEYS:
            assert part[key] == (1 if key in ("mean_iou", "dice") else 0), key


def test_probabilities_json_and_report(folders, capsys):
    out = folders / "out"
    code = main(
        ["evaluate", "--pred", str(folders / "probs"), "--gt", str(folders / "gt"), "--boundary-class", "0"]
        + ["--threshold-sweep", "--instances", "--json", str(out / "r.json"), "--report", str(out / "report")]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "rand_error" in printed and "3 image(s)" in printed
    results = json.loads((out / "r.json").read_text())
    for part in [*results["images"].values(), results["mean"]]:
        for key in (*ISBI_KEYS, "ap", "seg", "rand_error_at_0.5"):
            assert isinstance(part[key], float), key
    image = results["images"]["s0"]
    assert image["rand_error_threshold"] in results["sweep"]["thresholds"] and image["rand_error"] <= image["rand_error_at_0.5"]
    assert 0 < results["mean"]["rand_error"] < 1 and results["stack"]["warping_error"] >= 0
    assert len(results["sweep"]["thresholds"]) == 11 and len(results["sweep"]["warping_thresholds"]) == 10
    html = (out / "report" / "report.html").read_text()
    for png in ("overlays/s0.png", "plots/errors.png", "plots/sweep.png"):
        assert png in html and (out / "report" / png).is_file()
    assert not list(out.rglob("*.tmp"))


def test_report_takes_a_headline_and_extra_figures(folders):
    from PIL import Image

    Image.new("RGB", (16, 8), "white").save(folders / "curves.png")
    unetkit.evaluate(
        folders / "labels",
        folders / "gt",
        boundary_class=0,
        report_dir=folders / "report",
        report_headline="All cells found.",
        report_figures=[("training curves", folders / "curves.png")],
        progress=False,
    )
    page = (folders / "report" / "report.html").read_text()
    assert "All cells found." in page and "training curves" in page and "overlays/s2.png" in page


def test_labels_and_probabilities_of_one_stem_are_both_used(folders):
    both = folders / "both"
    shutil.copytree(folders / "labels", both)
    for path in (folders / "probs").iterdir():
        shutil.copy(path, both)
    results = unetkit.evaluate(both, folders / "gt", boundary_class=0, progress=False)
    image = results["images"]["s0"]
    assert image["mean_iou"] == 1  # class metrics from the (perfect) labels ...
    assert image["pred"].endswith("s0_labels.png")
    assert image["rand_error"] > 0  # ... ISBI scores from the (noisy) probabilities


def test_a_predict_output_folder_evaluates_as_it_is(folders):
    from unetkit.evaluation.metrics import label_objects

    out = folders / "predicted"
    for i in range(3):
        label = _label(i)
        interior = _probability(label, i)
        objects = label_objects(label > 0)
        objects[objects == 1] = 0  # the instance file misses one object
        write_image(out / f"s{i}_labels.png", label)
        write_image(out / f"s{i}_probs.tif", np.stack([1 - interior, interior]))  # (K, H, W), axes CYX
        write_image(out / f"s{i}_instances.tif", objects.astype(np.uint16))
        write_image(out / f"s{i}_overlay.png", np.zeros((3, *label.shape), np.uint8))
    results = unetkit.evaluate(out, folders / "gt", boundary_class=0, instances=True, progress=False)
    image = results["images"]["s0"]
    assert image["mean_iou"] == 1 and image["rand_error"] > 0
    assert image["n_pred_objects"] == image["n_gt_objects"] - 1 and image["seg"] < 1


def test_per_class_probabilities_and_arrays():
    label = _label(5)
    interior = _probability(label, 5)
    per_class = np.stack([1 - interior, interior])
    from_stack = unetkit.evaluate(per_class, label, boundary_class=0, progress=False)
    from_one = unetkit.evaluate(interior, label, boundary_class=0, progress=False)
    for key in ISBI_KEYS:
        assert from_stack["images"]["image"][key] == pytest.approx(from_one["images"]["image"][key]), key
    no_boundary = unetkit.evaluate(interior, label, progress=False)
    assert no_boundary["images"]["image"]["rand_error"] is None and no_boundary["mean"]["mean_iou"] > 0.5


def test_ignore_index_excludes_pixels():
    label = _label(6)
    gt = label.copy()
    gt[:5] = 7  # unknown
    pred = label.copy()
    pred[:5] = 255 - pred[:5]  # wrong only where the ground truth is unknown
    results = unetkit.evaluate(pred, gt, boundary_class=0, ignore_index=7, progress=False)
    image = results["images"]["image"]
    assert image["pixel_error"] == 0 and image["mean_iou"] == 1 and image["warping_error"] == 0


def test_isbi_slices_against_themselves(isbi_dir, tmp_path):
    for name in ("pred", "gt"):
        (tmp_path / name).mkdir()
        for i in (0, 1):
            shutil.copy(isbi_dir / "train" / "labels" / f"{i:02d}.png", tmp_path / name / f"{i:02d}.png")
    results = unetkit.evaluate(tmp_path / "pred", tmp_path / "gt", boundary_class=0, instances=True, progress=False)
    stack = results["stack"]
    assert stack["rand_error"] == stack["info_error"] == stack["warping_error"] == stack["pixel_error"] == 0
    assert stack["mean_iou"] == 1 and stack["seg"] == 1 and stack["ap"] == 1


# --------------------------------------------------------------------------- bad input: one line, names the files


def _one_line_error(capsys, argv, *needles):
    assert main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err  # the progress bar may come first; the error is one line
    errors = [line for line in err.splitlines() if line.startswith("unetkit evaluate: error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n"), err
    for needle in needles:
        assert needle in errors[0], (needle, err)


def test_size_mismatch_names_both_files(folders, capsys):
    write_image(folders / "labels" / "s1_labels.png", _label(1, shape=(30, 40)))
    _one_line_error(capsys, ["--pred", str(folders / "labels"), "--gt", str(folders / "gt")], "s1_labels.png", "s1.png", "30 x 40")


def test_unpaired_files_are_named(folders, capsys):
    write_image(folders / "labels" / "extra_labels.png", _label(9))
    (folders / "gt" / "s2.png").unlink()
    _one_line_error(capsys, ["--pred", str(folders / "labels"), "--gt", str(folders / "gt")], "extra_labels.png", "s2_labels.png")
    (folders / "labels" / "extra_labels.png").unlink()
    (folders / "labels" / "s2_labels.png").unlink()
    (folders / "gt" / "s0.png").rename(folders / "gt" / "lonely.png")
    _one_line_error(capsys, ["--pred", str(folders / "labels"), "--gt", str(folders / "gt")], "ground truth without a prediction: lonely.png")


def test_label_value_outside_the_classes_names_the_file(folders, capsys):
    bad = _label(0).astype(np.uint8)
    bad[0, :3] = [0, 1, 2]  # three values: not a two-class mask
    write_image(folders / "labels" / "s0_labels.png", bad)
    _one_line_error(capsys, ["--pred", str(folders / "labels"), "--gt", str(folders / "gt")], "s0_labels.png", "not class ids")
    write_image(folders / "gt" / "s1.png", bad)
    (folders / "labels" / "s0_labels.png").unlink()
    (folders / "gt" / "s0.png").unlink()
    _one_line_error(capsys, ["--pred", str(folders / "labels"), "--gt", str(folders / "gt")], "s1.png", "not class ids")


def test_bad_probabilities_and_flags(folders, capsys):
    tifffile.imwrite(folders / "probs" / "s0_probs.tif", np.full((40, 40), 3.0, np.float32))
    _one_line_error(capsys, ["--pred", str(folders / "probs"), "--gt", str(folders / "gt")], "s0_probs.tif", "[0, 1]")
    _one_line_error(capsys, ["--pred", str(folders / "labels"), "--gt", str(folders / "gt"), "--instances"], "--boundary-class")
    _one_line_error(capsys, ["--pred", str(folders / "labels"), "--gt", str(folders / "gt"), "--boundary-class", "5"], "boundary class 5")
