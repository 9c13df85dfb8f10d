"""Export a model to ONNX or TorchScript, with a parity check against PyTorch.

    unetkit export RUN --format onnx          # RUN/model.onnx, dynamic batch/height/width
    unetkit export RUN --format torchscript   # RUN/model.torchscript.pt (traced)

ONNX goes through torch's TorchScript-based exporter (`dynamo=False`): the
dynamo exporter, torch's default, needs the extra `onnxscript` package and
the traced graph is all a U-Net needs. Sizes stay symbolic, so the valid
padding crops follow the input size. The parity check runs PyTorch and the
exported model on a random input of another size and batch than the one
traced, so it also proves the dynamic shapes. ONNX Runtime then serves as a
prediction backend through the same tiling code (`onnx_logits_fn`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, first_line
from ..io import atomic_path

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
OPSET = 17
PARITY_TOLERANCE = 1e-3  # max |logit difference| above which an export is refused


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float  # max |logit difference| against PyTorch on `check_shape`
    check_shape: tuple[int, ...]

    def summary(self) -> str:
        shape = " x ".join(map(str, self.check_shape))
        return f"wrote {self.path} ({self.format}); parity: max |logit difference| vs PyTorch = {self.max_abs_diff:.3g} on a {shape} input"


def parity_inputs(model, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(trace input, check input): random valid inputs of different batch and size."""
    generator = torch.Generator().manual_seed(seed)
    step = model.config.total_stride
    base = model.valid_input_size(2 * model.margin + step, 2 * model.margin + step)[0]
    channels = model.config.in_channels
    trace = torch.rand(2, channels, base, base + step, generator=generator)
    check = torch.rand(1, channels, base + 2 * step, base + step * 3, generator=generator)
    return trace, check


def export_model(model, path: str | Path, format: str = "onnx", metadata: dict | None = None, tolerance: float = PARITY_TOLERANCE) -> ExportResult:
    """Write `model` (a UNet; exported in eval mode, on the CPU) to `path` atomically and check parity."""
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}", fix=f"use one of {', '.join(FORMATS)}")
    model = copy.deepcopy(model).eval().cpu()  # the caller's model keeps its mode and device
    trace, check = parity_inputs(model)
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: the size checks are constant for any valid input
        if format == "onnx":
            _write_onnx(model, trace, tmp, metadata or {})
            exported = onnx_logits_fn(tmp)
        else:
            torch.jit.save(torch.jit.trace(model, trace), str(tmp))
            exported = torchscript_logits_fn(tmp)
        diff = max_logit_difference(model, exported, check)
        if not diff <= tolerance:
            raise UserError(f"exported model disagrees with PyTorch (max |logit difference| {diff:.3g} > {tolerance})", path=path, fix="report this as a bug")
    return ExportResult(path, format, diff, tuple(check.shape))


def _write_onnx(model, example: torch.Tensor, path: Path, metadata: dict) -> None:
    import onnx

    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "out_height", 3: "out_width"}},
        opset_version=OPSET,
    )
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def max_logit_difference(model, exported, x: torch.Tensor) -> float:
    with torch.inference_mode():
        reference = model(x).numpy()
    return float(np.abs(exported(x.numpy()) - reference).max())


def export_run(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, weights: str = "auto") -> ExportResult:
    """Export a run folder's model; by default to model.onnx or model.torchscript.pt beside its weights."""
    from ..checkpoint import load_run

    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}", fix=f"use one of {', '.join(FORMATS)}")
    run = load_run(run_dir, weights)
    out = Path(out) if out is not None else run.path / FORMATS[format]  # beside the weights (RUN/final for a final model)
    return export_model(run.model, out, format, metadata={"unetkit_config": json.dumps(run.config)})


# --------------------------------------------------------------------------- runtimes


def onnx_logits_fn(path: str | Path, threads: int | None = None):
    """Batch (N, C, h, w) float32 -> logits through ONNX Runtime (CPU, all graph optimisations)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        reason = first_line(exc)
        raise UserError(f"cannot load ONNX model ({reason})", path=path, fix="re-export it with `unetkit export RUN --format onnx`") from exc
    return lambda batch: session.run(None, {"image": np.ascontiguousarray(batch, dtype=np.float32)})[0]


def torchscript_logits_fn(path: str | Path):
    """Batch -> logits through a saved TorchScript module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream; still asked for
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def logits(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).numpy()

    return logits


def onnx_backend(run, threads: int | None = None):
    """ONNX Runtime logits for a run: its RUN/model.onnx (which must be newer than its weights), or for a run
    without a folder (a bare model, or one loaded from a bioimage.io package), an export made on the fly."""
    import tempfile

    from ..checkpoint import WEIGHT_FILES

    if run.path is None or not run.path.is_dir():
        with tempfile.TemporaryDirectory(prefix="unetkit-onnx-") as folder:
            path = export_model(run.model, Path(folder) / FORMATS["onnx"], "onnx").path
            return onnx_logits_fn(path, threads)  # the session holds the model: the file may go
    path = run.path / FORMATS["onnx"]
    if not path.exists():
        raise UserError("no ONNX export in the run folder", path=path, fix=f"run `unetkit export {run.path} --format onnx` first")
    newest = max((run.path / f).stat().st_mtime for f in WEIGHT_FILES.values() if (run.path / f).exists())
    if path.stat().st_mtime < newest:
        raise UserError("ONNX export is older than the weights", path=path, fix=f"re-run `unetkit export {run.path} --format onnx`")
    return onnx_logits_fn(path, threads)
