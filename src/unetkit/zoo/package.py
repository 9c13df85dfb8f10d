"""`unetkit export RUN --format bioimageio`: a run folder -> a bioimage.io model package (zip), tested.

The package holds rdf.yaml (built and validated by `bioimageio.spec`), the
three weights formats of one graph (graph.py: the U-Net, calibration and
softmax), test tensors from a real image of the run, a cover, a README with
the run's validation scores, and under `config.unetkit` the run's whole
config.json, from which `unetkit predict PACKAGE.zip` rebuilds the run.
`bioimageio.core`'s own test then runs every weights format on the test input.
"""

from __future__ import annotations

import dataclasses
import getpass
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_run, resolved_weights
from ..errors import UserError, first_line
from ..io import atomic_path, write_image, write_text
from ..prediction.export import export_model
from ..version import __version__
from . import graph
from .readme import readme
from .tensors import find_test_image, make_test_tensors, sizes_of

PACKAGE_SUFFIX = ".bioimageio.zip"
WEIGHT_FILES = {"pytorch_state_dict": "weights.pt", "torchscript": "weights.torchscript.pt", "onnx": "weights.onnx"}


@dataclasses.dataclass(frozen=True)
class PackageResult:
    path: Path
    test_image: str
    tested: str  # bioimageio.core's verdict: "passed", or "skipped"

    def summary(self) -> str:
        return f"wrote {self.path} (bioimage.io model 0.5; test image {self.test_image}); bioimageio.core test: {self.tested}"


def _import_spec():
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        raise UserError("bioimage.io export needs the bioimageio.core package", fix='pip install "unetkit[bioimageio]"') from exc


def export_package(run_dir: str | Path, images: str | Path, out: str | Path | None = None, *, weights: str = "auto",
                   name: str | None = None, authors: tuple[str, ...] = (), license: str = "CC-BY-4.0", test: bool = True) -> PackageResult:
    """Write a bioimage.io package of a run (default RUN/NAME.bioimageio.zip); the test image comes from `images`."""
    run_dir = Path(run_dir)
    weights = resolved_weights(run_dir, weights)
    run = load_run(run_dir, weights)
    image, image_name = find_test_image(run, images)
    _import_spec()  # after the checks of the user's input: importing it takes seconds
    folder_name = run_dir.resolve().name
    name = name or "unetkit U-Net " + re.sub(r"[^A-Za-z0-9_+\- ()]", "-", folder_name)  # the characters the spec allows
    out = Path(out) if out is not None else run_dir / f"{folder_name}{PACKAGE_SUFFIX}"
    with tempfile.TemporaryDirectory(prefix="unetkit-bioimageio-") as folder:
        descr = _describe(run, Path(folder), image, image_name, name=name, weights=weights, license=license,
                          authors=list(authors) or [_login_name()])
        _save(descr, out)
    tested = _test(out) if test else "skipped"
    return PackageResult(out, image_name, tested)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"


def _describe(run, folder: Path, image: np.ndarray, image_name: str, *, name: str, weights: str, license: str, authors: list[str]):
    from . import describe

    sizes = sizes_of(run.model)
    test_input, test_output, cover = make_test_tensors(run, image)
    files = _write_weights(run, folder)
    np.save(folder / "test_input.npy", test_input)
    np.save(folder / "test_output.npy", test_output)
    write_image(folder / "cover.png", cover)
    curves = run.path / "curves.png"
    attachments = [shutil.copy(curves, folder / curves.name)] if curves.exists() else []
    write_text(folder / "README.md", readme(run, name, weights, sizes, image_name, curves=bool(attachments)))
    architecture = Path(shutil.copy(graph.__file__, folder / "unetkit_graph.py"))
    try:
        return describe.model_descr(
            run, name=name, authors=authors, license=license, documentation=folder / "README.md", cover=folder / "cover.png",
            attachments=[Path(a) for a in attachments],
            inputs=describe.input_descr(run, sizes, folder / "test_input.npy"),
            outputs=describe.output_descr(run, sizes, folder / "test_output.npy"),
            weights=describe.weights_descr(files, architecture, _graph_kwargs(run)),
            unetkit={"version": __version__, "weights": weights, "test_image": image_name, "run": run.config},
        )
    except ValueError as exc:  # pydantic's ValidationError: a field the spec refuses (a name, a license id, ...)
        raise UserError(f"bioimage.io refuses the description ({_first_error(exc)})", fix="check --name, --author and --license") from exc


def _first_error(exc: ValueError) -> str:
    """'field.path: message' of a pydantic ValidationError's first error (its str() starts with a count)."""
    errors = getattr(exc, "errors", lambda: [])()
    if not errors:
        return first_line(exc)
    return f"{'.'.join(map(str, errors[0]['loc']))}: {first_line(Exception(errors[0]['msg']))}"


def _graph_kwargs(run) -> dict:
    from ..config import to_dict
    from ..data import prior_offsets

    offsets = prior_offsets(run.data.class_weights)
    return {"model": to_dict(run.model.config), "offsets": None if offsets is None else [float(v) for v in offsets]}


def _write_weights(run, folder: Path) -> dict[str, Path]:
    """The graph in the three formats; TorchScript and ONNX checked against PyTorch by `export_model`."""
    network = graph.UNetProbabilities(**_graph_kwargs(run))
    network.net.load_state_dict(run.model.state_dict())
    network.eval()
    files = {fmt: folder / file for fmt, file in WEIGHT_FILES.items()}
    torch.save(network.state_dict(), files["pytorch_state_dict"])
    for fmt in ("torchscript", "onnx"):
        export_model(network, files[fmt], fmt)
    return files


def _save(descr, out: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_bioimageio_package(descr, output_path=tmp)


def _test(path: Path) -> str:
    """bioimageio.core's test of every weights format on the test tensors; a failure is an error (a bug here)."""
    from bioimageio.core import test_model

    summary = test_model(path)
    if summary.status != "passed":
        failed = [f"{d.name}: {first_line(Exception(e.msg))}" for d in summary.details if d.status == "failed" for e in d.errors]
        raise UserError(f"the package fails bioimageio.core's test ({'; '.join(failed[:2]) or summary.status})", path=path,
                        fix="report this as a bug (the package is kept for inspection)")
    return "passed"
