"""bioimage.io packages: `unetkit export RUN --format bioimageio`, checked by bioimageio.core's own test, and
`unetkit predict PACKAGE.zip`, which must give what `unetkit predict RUN` gives."""

import io
import shutil
import zipfile

import numpy as np
import pytest
import torch
import yaml

from _runs import save_run
from _train_data import make_dataset
from unetkit import create_model
from unetkit.checkpoint import load_run
from unetkit.cli import main
from unetkit.config import DataConfig
from unetkit.io import read_image
from unetkit.prediction import predict
from unetkit.zoo import export_package
from unetkit.zoo.readme import validation_section
from unetkit.zoo.tensors import Sizes, make_test_tensors, sizes_of

TOLERANCE = dict(rtol=1e-3, atol=1e-3)  # bioimage.io's default reproducibility tolerance
MODELS = {  # tiny widths of the default preset (same padding) and of the paper's (valid padding)
    "same": dict(preset="default", base_width=4),
    "valid": dict(preset="paper", base_width=4, dropout=0.0),
}


@pytest.fixture(scope="module")
def threads():
    """Tiny models run fastest on one thread on a shared CPU (see conftest.one_torch_thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), n=4, size=64)[0]


def make_run(folder, name):
    """A freshly initialised run whose loss weighted class 1 by 1.25 (the package must undo it, and the labels stay mixed)."""
    torch.manual_seed(0)
    spec = dict(MODELS[name])
    model = create_model(spec.pop("preset"), **spec)
    data = DataConfig(n_classes=2, mask_kind="values", mask_values=(0, 255), normalization="percentile", class_weights=(1.0, 1.25))
    return save_run(folder, model, data, split={"train": ["00", "01", "02"], "val": ["03"]})


@pytest.fixture(scope="module")
def same(tmp_path_factory, data, threads):
    """(run folder, its package) of the same-padding run; the package written without bioimageio.core's test."""
    pytest.importorskip("bioimageio.core")
    run = make_run(tmp_path_factory.mktemp("same") / "run", "same")
    return run, export_package(run, data, test=False).path


def package_files(path) -> tuple[dict, dict]:
    """(rdf.yaml, {name: array} of the .npy files) of a package."""
    with zipfile.ZipFile(path) as z:
        arrays = {n: np.load(io.BytesIO(z.read(n))) for n in z.namelist() if n.endswith(".npy")}
        return yaml.safe_load(z.read("rdf.yaml")), arrays


def test_package_passes_bioimageio_core_test(same):
    """bioimageio.core runs the ONNX graph with the spec's preprocessing on the test input and finds the test output
    (which unetkit's predictor wrote). Every weights format: test_every_weights_format_passes_bioimageio_core."""
    from bioimageio.core import test_model

    summary = test_model(same[1], weight_format="onnx")
    assert summary.status == "passed", [e.msg for d in summary.details for e in d.errors]


def test_package_describes_tiling_normalisation_and_origin(same):
    run, package = same
    rdf, arrays = package_files(package)
    assert rdf["format_version"].startswith("0.5.") and rdf["type"] == "model"
    (input,), (output,) = rdf["inputs"], rdf["outputs"]
    assert [a.get("id", a["type"]) for a in input["axes"]] == ["batch", "channel", "y", "x"]
    assert input["axes"][2]["size"] == {"min": 48, "step": 16}  # same padding, depth 4: sides step by 16
    assert [a.get("halo") for a in output["axes"]] == [None, None, 16, 16]
    assert [p["id"] for p in input["preprocessing"]] == ["ensure_dtype", "scale_range", "ensure_dtype"]
    assert input["preprocessing"][1]["kwargs"] == {"axes": ["y", "x"], "min_percentile": 1.0, "max_percentile": 99.8}
    from unetkit.zoo.describe import preprocessing

    joint = preprocessing(DataConfig(normalization="percentile-joint"))[0].kwargs
    assert [str(a) for a in joint.axes] == ["channel", "y", "x"]  # one range over the channels too
    assert input["pad"] == {"mode": "symmetric"}
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert rdf["config"]["unetkit"]["run"]["model"]["base_width"] == 4 and rdf["config"]["unetkit"]["test_image"] == "03"
    assert arrays["test_input.npy"].shape == (1, 1, 64, 64) and arrays["test_output.npy"].shape == (1, 2, 64, 64)
    with zipfile.ZipFile(package) as z:
        readme = z.read(rdf["documentation"]["source"]).decode()
    assert "## Validation\n\nnot measured" in readme  # the run has no metrics.csv


def test_test_output_is_unetkit_predict_of_the_test_input(same):
    run, package = same
    _, arrays = package_files(package)
    probs = predict(run, arrays["test_input.npy"][0])
    np.testing.assert_allclose(arrays["test_output.npy"][0], probs, **TOLERANCE)


def test_predict_package_gives_the_labels_of_predict_run(same, data, tmp_path):
    run, package = same
    assert main(["predict", str(package), str(data), "--out", str(tmp_path / "package"), "--no-probs", "--no-overlay"]) == 0
    assert main(["predict", str(run), str(data), "--out", str(tmp_path / "run"), "--no-probs", "--no-overlay"]) == 0
    onnx = ["--backend", "onnxruntime", "--out", str(tmp_path / "onnx"), "--no-probs", "--no-overlay"]
    assert main(["predict", str(package), str(data), *onnx]) == 0  # a package has no RUN/model.onnx: exported on the fly
    for name in ("00", "03"):
        labels = read_image(tmp_path / "package" / f"{name}_labels.png")
        np.testing.assert_array_equal(labels, read_image(tmp_path / "run" / f"{name}_labels.png"))
        np.testing.assert_array_equal(labels, read_image(tmp_path / "onnx" / f"{name}_labels.png"))
    assert len(np.unique(labels)) == 2  # both classes: the comparison is not of two blank masks


def test_valid_padding_halo_is_the_margin_and_the_test_output_unetkit_predict(tmp_path, data, threads):
    """The paper's network: the halo is its margin; the test input is the image part inside a mirrored halo, the test
    output `unetkit predict` of that part (its own percentiles: within the spec's tolerance), zero in the halo."""
    run = load_run(make_run(tmp_path / "run", "valid"))
    assert sizes_of(run.model) == Sizes(min=188, step=16, halo=92)
    test_input, test_output, cover = make_test_tensors(run, read_image(data / "03.png"))
    assert test_input.shape == (1, 1, 236, 236) and test_output.shape == (1, 2, 236, 236)  # 52 px of image + 2 x 92
    part = test_input[0, :, 92:-92, 92:-92]
    np.testing.assert_array_equal(test_input[0, :, 91::-1, 92:-92], test_input[0, :, 92:184, 92:-92])  # mirrored ("symmetric")
    np.testing.assert_allclose(test_output[0, :, 92:-92, 92:-92], predict(run, part), **TOLERANCE)
    assert not test_output[0, :, :92].any() and cover.shape[1] * 2 == cover.shape[2]


def test_validation_section_reports_the_exported_weights_scores(tmp_path):
    run = load_run(make_run(tmp_path / "run", "same"))
    (tmp_path / "run" / "metrics.csv").write_text("epoch,step,train_loss,val_loss,val_mean_iou,val_pixel_error,val_iou_0,val_iou_1\n"
                                                  "1,10,0.5,0.4,0.81,0.09,0.9,0.72\n2,20,0.3,0.45,0.79,0.1,0.88,0.7\n")
    best, last = validation_section(run, "best", curves=False), validation_section(run, "last", curves=False)
    assert "at step 10 (best weights)" in best and "| mean IoU | 0.8100 |" in best and "| IoU of class 1 | 0.7200 |" in best
    assert "at step 20 (last weights)" in last and "| pixel error | 0.1000 |" in last and "held-out image(s) (03)" in last


def rewritten(package, folder, change):
    """A copy of `package` whose rdf.yaml went through `change(rdf)`."""
    copy = folder / "changed.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(copy, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "rdf.yaml":
                rdf = yaml.safe_load(content)
                change(rdf)
                content = yaml.safe_dump(rdf).encode()
            target.writestr(name, content)
    return copy


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_predict_refuses_another_format_version(same, data, tmp_path, capsys):
    package = rewritten(same[1], tmp_path, lambda rdf: rdf.update(format_version="0.4.10"))
    err = one_line_error(capsys, ["predict", str(package), str(data), "--out", str(tmp_path / "out")])
    assert "format 0.4.10" in err and "bioimageio predict" in err


def test_predict_refuses_a_package_unetkit_did_not_write(same, data, tmp_path, capsys):
    package = rewritten(same[1], tmp_path, lambda rdf: rdf["config"].pop("unetkit"))
    err = one_line_error(capsys, ["predict", str(package), str(data), "--out", str(tmp_path / "out")])
    assert "not written by unetkit" in err and "bioimageio predict" in err


def test_export_refuses_a_folder_that_is_not_a_run(data, tmp_path, capsys):
    err = one_line_error(capsys, ["export", str(data), "--format", "bioimageio", "--images", str(data)])
    assert "not a unetkit run folder" in err


def test_export_needs_the_runs_images(same, tmp_path, capsys):
    assert "needs --images" in one_line_error(capsys, ["export", str(same[0]), "--format", "bioimageio"])
    other = tmp_path / "other"
    make_dataset(other, n=1, size=32)
    shutil.move(other / "images" / "00.png", other / "images" / "elsewhere.png")
    err = one_line_error(capsys, ["export", str(same[0]), "--format", "bioimageio", "--images", str(other / "images")])
    assert "none of the run's images" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_weights_format_passes_bioimageio_core(name, data, tmp_path, threads):
    """The acceptance test: `bioimageio test` passes (every weights format, several sizes and batches), and the test
    output is `unetkit predict`'s within the spec's tolerance: of the test input itself for same padding; for valid
    padding, of the image inside the mirrored halo (predicted with its own percentiles), zero in the halo."""
    from bioimageio.core import test_model

    run = make_run(tmp_path / "run", name)
    package = export_package(run, data, tmp_path / "model.bioimageio.zip", test=False).path
    summary = test_model(package)
    assert summary.status == "passed", [e.msg for d in summary.details for e in d.errors]
    rdf, arrays = package_files(package)
    halo = rdf["outputs"][0]["axes"][2]["halo"]
    margin = 92 if name == "valid" else 0
    assert halo == (margin or 16)  # the paper's margin for valid padding
    image = arrays["test_input.npy"][0][:, margin : -margin or None, margin : -margin or None]
    output = arrays["test_output.npy"][0]
    np.testing.assert_allclose(output[:, margin : -margin or None, margin : -margin or None], predict(run, image), **TOLERANCE)
    assert not output[:, :margin].any()
