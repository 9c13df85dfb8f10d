import json

import pytest

from unetkit.cli import main


def test_demo_runs_the_whole_loop_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--minutes", "0.05", "--preset", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "held-out metrics" in printed and "report.html" in printed
    report = (out / "report" / "report.html").read_text()
    assert "curves" in report  # the training curves figure is in the report
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["images"]) == {"12", "13", "14", "15"}  # the four held-out sections
    for key in ("pixel_error", "rand_error", "warping_error", "mean_iou"):
        assert 0 <= metrics["mean"][key] <= 1
    (out / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out), "--minutes", "0.05", "--preset", "tiny"]) == 0  # again, same folder
    assert (out / "notes.txt").read_text() == "mine"  # only the demo's own outputs are replaced


def test_demo_with_a_folder_missing_labels_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert main(["demo", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no labels/ folder" in err and err.count("\n") == 1


@pytest.mark.slow
def test_demo_on_isbi_learns(isbi_dir, tmp_path):
    from unetkit.demo import run_demo

    results = run_demo(tmp_path, data=isbi_dir / "train", minutes=2)
    assert results["mean"]["pixel_error"] < 0.22  # the all-foreground baseline
