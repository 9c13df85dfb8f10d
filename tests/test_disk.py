"""Full and read-only disks, and two writers at once: clear errors, nothing lost, nothing torn."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _runs import save_run
from crashing import check_predictions
from unetkit import create_model
from unetkit.cli import main
from unetkit.io import write_image


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def run_and_image(tmp_path):
    run = tmp_path / "run"
    model = create_model("tiny")
    save_run(run, model)
    image = tmp_path / "in" / "big.png"
    write_image(image, np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8))
    return run, image


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_disk_is_a_clear_error_and_earlier_outputs_survive(small_disk, run_and_image, capsys):
    run, image = run_and_image
    earlier = small_disk / "earlier_labels.png"
    write_image(earlier, np.full((64, 64), 255, np.uint8))
    before, image_before = digest(earlier), digest(image)
    code = main(["predict", str(run), str(image), "--out", str(small_disk)])  # probabilities alone need 2 MiB
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "fix:" in err
    assert digest(earlier) == before and digest(image) == image_before
    check_predictions(small_disk)  # whatever sits under a final name is whole
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_read_only_output_is_a_clear_error(small_disk, run_and_image, capsys):
    run, image = run_and_image
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code = main(["predict", str(run), str(image), "--out", str(small_disk / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Read-only file system" in err and str(small_disk / "out") in err


def test_training_into_a_full_disk_stops_with_a_clear_error(small_disk, tmp_path, capsys):
    from crashing import TRAIN_FLAGS, make_data

    data = make_data(tmp_path / "data")
    flags = [f for f in TRAIN_FLAGS if f != "--quiet"]
    code = main(["train", "--images", str(data / "images"), "--masks", str(data / "labels"), "--out",
                 str(small_disk / "run"), *flags, "--preset", "default"])  # 7.8 MB of weights: cannot fit
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err


def test_two_predictions_into_one_folder_never_tear_a_file(run_and_image, tmp_path):
    """Two jobs at once: the second is refused in one line while the first holds the folder's lock (if they overlap)."""
    run, image = run_and_image
    out = tmp_path / "out"
    command = [sys.executable, "-m", "unetkit", "predict", str(run), str(image), "--out", str(out)]
    children = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    codes = []
    for child in children:
        codes.append(child.wait(timeout=300))
        err = child.stderr.read().decode()
        child.stderr.close()
        assert codes[-1] == 0 or (codes[-1] == 2 and err.count("\n") == 1 and "another prediction job writes here" in err), err[-1000:]
    assert 0 in codes
    check_predictions(out)
    assert sorted(p.name for p in out.iterdir()) == [".unetkit-predict", "big_labels.png", "big_overlay.png", "big_probs.tif", "predict_config.json"]
