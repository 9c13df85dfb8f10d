import subprocess
import sys

import numpy as np
import pytest

from _train_data import make_dataset
from unetkit.cli import main
from unetkit.io import write_image

TINY_FLAGS = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--quiet"]


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data", n=4, size=48)


def train(images, masks, out, *flags):
    return main(["train", "--images", str(images), "--masks", str(masks), "--out", str(out), *TINY_FLAGS, *flags])


def test_train_then_resume_longer(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(*data, out, "--steps", "6", "--no-augment", "--loss", "ce+dice") == 0
    assert train(*data, out, "--resume", "--steps", "9") == 0
    assert (out / "metrics.csv").read_text().splitlines()[-1].split(",")[1] == "9"
    assert train(*data, out, "--resume", "--steps", "9", "--loss", "dice") == 2
    assert "loss differ" in capsys.readouterr().err


def one_line_error(capsys, code, *needles):
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fix:" in err, err
    for needle in needles:
        assert needle in err, err


def test_size_mismatch(data, tmp_path, capsys):
    images, masks = data
    write_image(masks / "02.png", np.zeros((48, 40), np.uint8))
    one_line_error(capsys, train(images, masks, tmp_path / "run", "--steps", "1"), "02.png", "48 x 40", "same size")


def test_more_mask_values_than_classes(data, tmp_path, capsys):
    images, masks = data
    write_image(masks / "01.png", np.arange(48 * 48).reshape(48, 48).astype(np.uint8) % 4)
    one_line_error(capsys, train(images, masks, tmp_path / "run", "--steps", "1", "--classes", "2"), "01.png", "--classes")
    # Without --classes: ids 0..3 in one file, 0/255 in the others: asked, not guessed.
    one_line_error(capsys, train(images, masks, tmp_path / "run2", "--steps", "1"), "01.png", "--ignore-index 255")


def test_truncated_file(data, tmp_path, capsys):
    images, masks = data
    blob = (images / "03.png").read_bytes()
    (images / "03.png").write_bytes(blob[: len(blob) // 2])
    one_line_error(capsys, train(images, masks, tmp_path / "run", "--steps", "1"), "03.png", "truncated")


def test_empty_folder(data, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, train(tmp_path / "empty", data[1], tmp_path / "run"), "empty", "no images")


def test_unpaired_files(data, tmp_path, capsys):
    images, masks = data
    (masks / "02.png").unlink()
    one_line_error(capsys, train(images, masks, tmp_path / "run"), "images without a mask: 02.png")


def test_one_image(tmp_path, capsys):
    images, masks = make_dataset(tmp_path / "one", n=1, size=48)
    one_line_error(capsys, train(images, masks, tmp_path / "run"), "00.png", "only one image", "--val-fraction 0")
    assert train(images, masks, tmp_path / "run", "--val-fraction", "0", "--steps", "2") == 0
    assert not (tmp_path / "run" / "best.safetensors").exists()  # no validation, no "best"


def test_torchrun_cli(data, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "unetkit",
               "train", "--images", str(data[0]), "--masks", str(data[1]), "--out", str(out), *TINY_FLAGS,
               "--batch-size", "4", "--steps", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    # The workers' own tracebacks come before torchrun's summary: keep them all for a rare failure.
    assert result.returncode == 0, result.stderr[-30000:]
    assert (out / "model.safetensors").exists() and (out / "metrics.csv").read_text().count("\n") == 2


def test_a_log_file_gets_one_line_per_epoch_and_quiet_keeps_the_summary(data, tmp_path):
    """Progress bars only on a terminal: redirected to a file, training writes plain lines."""
    flags = ["--images", str(data[0]), "--masks", str(data[1]), "--preset", "tiny", "--batch-size", "2", "--patch-size", "32"]
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-m", "unetkit", "train", *flags, "--out", str(tmp_path / "a"), "--epochs", "3"],
                       stdout=out, stderr=subprocess.STDOUT, check=True, timeout=300)
    text = log.read_text()
    assert "\r" not in text, "a progress bar was redrawn into the log file"
    assert sum(line.startswith("epoch ") for line in text.splitlines()) == 3  # one line per epoch
    quiet = subprocess.run([sys.executable, "-m", "unetkit", "train", *flags, "--out", str(tmp_path / "b"), "--steps", "2",
                            "--quiet"], capture_output=True, text=True, check=True, timeout=300)
    assert quiet.stdout.strip().count("\n") == 0 and quiet.stdout.startswith("stopped after 2 steps"), quiet.stdout
