import numpy as np
import pytest
import torch

from _runs import save_run
from unetkit import create_model
from unetkit.cli import main
from unetkit.io import read_image, write_image


@pytest.fixture
def run_dir(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    return save_run(tmp_path / "run", model)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_image(tmp_path / "images" / f"{name}.png", rng.integers(0, 255, (48, 40), dtype=np.uint8))
    return tmp_path / "images"


def test_predict_folder_in_folder_out(tmp_path, run_dir, images, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(images), "--out", str(out), "--tta", "--instances", "--min-size", "0"]) == 0
    assert "wrote 8 files" in capsys.readouterr().out
    for name in ("a", "b"):
        assert read_image(out / f"{name}_labels.png").shape == (1, 48, 40)
        assert read_image(out / f"{name}_instances.tif").shape == (1, 48, 40)
    assert (out / "predict_config.json").exists()


def test_export_then_predict_with_onnxruntime(tmp_path, run_dir, images, capsys):
    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "parity: max |logit difference| vs PyTorch" in printed and "model.onnx" in printed
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert (tmp_path / "m.pt").exists()
    flags = ["--no-probs", "--no-overlay"]
    assert main(["predict", str(run_dir), str(images / "a.png"), "--out", str(tmp_path / "ort"), "--backend", "onnxruntime", *flags]) == 0
    assert main(["predict", str(run_dir), str(images / "a.png"), "--out", str(tmp_path / "pt"), *flags]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "ort" / "a_labels.png"), read_image(tmp_path / "pt" / "a_labels.png"))
    assert sorted(p.name for p in (tmp_path / "ort").iterdir()) == [".unetkit-predict", "a_labels.png", "predict_config.json"]


@pytest.mark.parametrize(
    "argv_tail,message",
    [
        (["missing.png"], "missing.png: file not found"),
        (["--overlap", "1.5"], "overlap must be in [0, 1)"),
        (["--backend", "onnxruntime"], "no ONNX export"),
    ],
)
def test_predict_errors_are_one_line_exit_2(tmp_path, run_dir, images, capsys, argv_tail, message):
    inputs = [] if argv_tail[0].endswith(".png") else [str(images)]
    argv = ["predict", str(run_dir), *inputs, *[str(tmp_path / a) if a.endswith(".png") else a for a in argv_tail]]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_export_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "not a unetkit run folder" in capsys.readouterr().err
