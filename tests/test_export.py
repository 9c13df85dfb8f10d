import json
import os

import numpy as np
import onnx
import pytest
import torch

from _runs import save_run
from unetkit import UserError, create_model
from unetkit.checkpoint import load_run
from unetkit.prediction import predict
from unetkit.prediction.export import FORMATS, export_model, export_run, onnx_logits_fn, parity_inputs, torchscript_logits_fn

MODELS = {
    "same": dict(preset="tiny"),
    "valid": dict(preset="paper", base_width=4, depth=3, dropout=0.0),
    "attention-bilinear": dict(preset="residual", base_width=4, depth=2, attention=True),
    "strided-stem": dict(preset="tiny", stem_stride=2),
}


def model_of(name):
    torch.manual_seed(0)
    spec = dict(MODELS[name])
    return create_model(spec.pop("preset"), **spec).eval()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_parity(tmp_path, name, fmt):
    model = model_of(name)
    result = export_model(model, tmp_path / FORMATS[fmt], fmt)
    assert result.path.exists() and result.max_abs_diff < 1e-4
    # Independently: another size and batch than the traced one, through the saved file.
    x = torch.rand(3, model.config.in_channels, *model.valid_input_size(100, 140))
    with torch.inference_mode():
        reference = model(x).numpy()
    runtime = onnx_logits_fn(result.path) if fmt == "onnx" else torchscript_logits_fn(result.path)
    out = runtime(x.numpy())
    assert out.shape == reference.shape
    np.testing.assert_allclose(out, reference, atol=1e-4, rtol=0)


def test_parity_inputs_differ_from_the_traced_shape():
    model = model_of("valid")
    trace, check = parity_inputs(model)
    assert trace.shape != check.shape and trace.shape[0] != check.shape[0]
    for x in (trace, check):
        model.check_input_size(*x.shape[-2:])


@pytest.fixture
def run_dir(tmp_path):
    model = model_of("same")
    run = tmp_path / "run"
    return save_run(run, model)


def test_export_run_writes_into_the_run_with_its_config(run_dir):
    result = export_run(run_dir, "onnx")
    assert result.path == run_dir / "model.onnx"
    meta = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(meta["unetkit_config"])["model"]["base_width"] == 4
    assert "parity" in result.summary() and str(result.path) in result.summary()


def test_onnxruntime_backend_predicts_like_torch(run_dir):
    export_run(run_dir, "onnx")
    image = np.random.default_rng(0).integers(0, 255, (90, 130), dtype=np.uint8)
    torch_probs = predict(run_dir, image, tile_size=64)
    onnx_probs = predict(run_dir, image, tile_size=64, backend="onnxruntime")
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    bare = predict(load_run(run_dir).model, image, tile_size=64, backend="onnxruntime")  # exported on the fly
    np.testing.assert_allclose(bare, torch_probs, atol=1e-4)


def test_onnxruntime_backend_needs_a_current_export(run_dir):
    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(UserError, match="no ONNX export"):
        predict(run_dir, image, backend="onnxruntime")
    export_run(run_dir, "onnx")
    weights = run_dir / "model.safetensors"
    os.utime(run_dir / "model.onnx", (1, 1))  # exported long before the weights
    assert os.stat(weights).st_mtime > 1
    with pytest.raises(UserError, match="older than the weights"):
        predict(run_dir, image, backend="onnxruntime")


def test_damaged_onnx_file_is_a_user_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load ONNX model"):
        onnx_logits_fn(bad)


def test_unknown_format(run_dir):
    with pytest.raises(UserError, match="unknown export format"):
        export_run(run_dir, "tflite")
