"""Atomic writes: a write that fails midway leaves the previous file whole under its final name.

Every file unetkit writes goes through `io.atomic_path`. Each writer case below
writes a good version, then a second, different version that fails inside the
library call putting the bytes on disk: the call writes a few bytes to the file
it was handed, then raises "No space left on device" (or the work itself fails
midway: a tile batch while streaming, the parity check of an export). The
final name must still hold the first version's bytes, and no partial or
temporary file may be left beside it.

The fsync rule (kept as the code has it): the temporary file is fsynced after
it is written and before the rename (else a power cut can leave the new name
pointing at an empty file), the folder after the rename (else the rename itself
can be lost); an fsync error is never swallowed.
"""

import dataclasses
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from matplotlib.figure import Figure
from PIL import Image

from unetkit import UserError, create_model
from unetkit.checkpoint import save_config, save_train_state, save_weights
from unetkit.config import DataConfig
from unetkit.evaluation import evaluate
from unetkit.io import atomic_path, write_bytes, write_image
from unetkit.prediction import PredictConfig, Predictor, predict_files
from unetkit.prediction.export import PARITY_TOLERANCE, export_model
from unetkit.report import plot_curves, write_report
from unetkit.training.logs import write_metrics
from unetkit.training.options import write_recipe

DISK_FULL = os.strerror(errno.ENOSPC)  # "No space left on device"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- failure injection


def is_for(target, name: str) -> bool:
    """`target` is the file `name` itself, or atomic_path's temporary file for it (.NAME.XXXX.tmp)."""
    base = Path(target).name
    return base == name or (base.startswith(f".{name}.") and base.endswith(".tmp"))


def disk_full_in(owner, attr: str, target_arg: int = 0):
    """An injector: `owner.attr`, when it writes the file `name`, writes a few bytes there and fails with ENOSPC."""

    def inject(monkeypatch, name: str) -> None:
        real = getattr(owner, attr)

        def write(*args, **kwargs):
            target = args[target_arg]
            if not is_for(target, name):
                return real(*args, **kwargs)
            with open(target, "wb") as file:
                file.write(b"partial")
            raise OSError(errno.ENOSPC, DISK_FULL)

        monkeypatch.setattr(owner, attr, write)

    return inject


# Path.write_bytes writes the bytes of weights, training state, JSON, YAML, CSV and HTML files. Their
# serialisers (safetensors' save, torch.save, json.dumps, yaml.safe_dump) make the bytes in memory before
# any reaches a file, so a failure there would touch no file and prove nothing.
WRITE_BYTES = disk_full_in(Path, "write_bytes")
PIL_SAVE = disk_full_in(Image.Image, "save", 1)
TIFF_WRITE = disk_full_in(tifffile, "imwrite")
SAVEFIG = disk_full_in(Figure, "savefig", 1)

STREAMED = (320, 40)  # (H, W) of the streamed image: more rows than one 256-row output tile


def fail_on_last_tile_batch(monkeypatch, name: str) -> None:
    """The predictor's probabilities fail on the last tile batch: every band but the last is in the
    probability TIFF (and the labels writer) by then."""
    real_init = Predictor.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        inner, calls, last = self.probability_fn, [], self.grid(*STREAMED).count  # tile_batch=1: a batch per tile

        def probability_fn(batch):
            calls.append(len(batch))
            if len(calls) == last:
                raise RuntimeError("tile batch failed")
            return inner(batch)

        self.probability_fn = probability_fn

    monkeypatch.setattr(Predictor, "__init__", init)


def no_injection(monkeypatch, name: str) -> None:
    """The writer fails by itself (version 1 asks for it)."""


# --------------------------------------------------------------------------- the writers, version 0 (good) or 1


def tiny(seed: int):
    torch.manual_seed(seed)
    return create_model("tiny").eval()


HISTORY = [{"epoch": i, "samples": 8 * i, "train_loss": 1 / i, "val_loss": 1.5 / i, "val_mean_iou": 0.2 * i} for i in (1, 2, 3)]


def write_weights(folder: Path, v: int) -> None:
    save_weights(folder, tiny(v))


def write_config(folder: Path, v: int) -> None:
    save_config(folder, create_model("tiny").config, DataConfig(), note=f"version {v}")


def write_state(folder: Path, v: int) -> None:
    save_train_state(folder, {"epoch": v, "step": torch.tensor(10 * v)})


def write_recipe_yaml(folder: Path, v: int) -> None:
    write_recipe(folder, {"model": {"n_classes": 2}, "run": {"epochs": 1 + v}})


def write_metrics_csv(folder: Path, v: int) -> None:
    write_metrics(folder, HISTORY[: 2 + v])


def write_curves(folder: Path, v: int) -> None:
    plot_curves(folder, HISTORY[: 2 + v])


def write_png(folder: Path, v: int) -> None:
    write_image(folder / "a.png", np.full((8, 8), 100 * v, np.uint8))


def write_tiff(folder: Path, v: int) -> None:
    write_image(folder / "a.tif", np.full((8, 8), v, np.float32))


def write_streamed(folder: Path, v: int) -> None:
    image = np.random.default_rng(v).integers(0, 255, STREAMED, dtype=np.uint8)
    source = folder.parent / "img.tif"
    tifffile.imwrite(source, image)
    config = PredictConfig(tile_size=32, tile_batch=1, stream_above_mpix=0.001, overlay=False)
    predict_files(tiny(0), [source], folder, config)


def write_html_report(folder: Path, v: int) -> None:
    scores = {"pixel_error": 0.1 + v / 10, "rand_error": 0.05 + v / 10}
    figure = folder.parent / f"v{v}" / "curves.png"  # same name in both versions: same target in the report
    figure.parent.mkdir(exist_ok=True)
    Image.new("L", (4 + v, 4)).save(figure)
    write_report(
        folder,
        {"images": {"a": scores}, "mean": scores, "stack": scores},
        overlays={"a": np.full((8, 8, 3), 50 * v, np.uint8)},
        extra_figures=[figure],
        title=f"version {v}",
    )


def write_scores_json(folder: Path, v: int) -> None:
    gt = np.zeros((16, 16), np.uint8)
    gt[:, 8:] = 255
    pred = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16) ** (1 + v)
    evaluate(pred, gt, warping=False, progress=False, json_path=folder / "scores.json")


def export_as(fmt: str, name: str) -> Callable[[Path, int], None]:
    def write(folder: Path, v: int) -> None:
        export_model(tiny(v), folder / name, fmt, tolerance=PARITY_TOLERANCE if v == 0 else -1.0)  # -1: parity fails

    return write


@dataclasses.dataclass(frozen=True)
class Case:
    write: Callable[[Path, int], None]
    targets: tuple[str, ...]  # files (relative to the folder) whose second write fails; the first one names the injection
    inject: Callable = WRITE_BYTES
    error: str = DISK_FULL


CASES = {
    "weights": Case(write_weights, ("model.safetensors",)),
    "config": Case(write_config, ("config.json",)),
    "train-state": Case(write_state, ("train_state.pt",)),
    "recipe": Case(write_recipe_yaml, ("recipe.yaml",)),
    "metrics": Case(write_metrics_csv, ("metrics.csv",)),
    "curves": Case(write_curves, ("curves.png",), SAVEFIG),
    "image-png": Case(write_png, ("a.png",), PIL_SAVE),
    "image-tiff": Case(write_tiff, ("a.tif",), TIFF_WRITE),
    "streamed-tiffs": Case(write_streamed, ("img_labels.tif", "img_probs.tif"), fail_on_last_tile_batch, "tile batch failed"),
    "report-html": Case(write_html_report, ("report.html",)),
    "report-plot": Case(write_html_report, ("plots/errors.png",), SAVEFIG),
    "report-overlay": Case(write_html_report, ("overlays/a.png",), PIL_SAVE),
    "report-figure": Case(write_html_report, ("figures/00_curves.png",)),
    "evaluation-json": Case(write_scores_json, ("scores.json",)),
    "export-onnx": Case(export_as("onnx", "model.onnx"), ("model.onnx",), no_injection, "disagrees with PyTorch"),
    "export-torchscript": Case(export_as("torchscript", "model.pt"), ("model.pt",), no_injection, "disagrees with PyTorch"),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch, case):
    folder = tmp_path / "out"
    folder.mkdir()
    case.write(folder, 0)
    before = snapshot(folder)
    assert set(case.targets) <= set(before), f"the good write made {sorted(before)}"
    case.inject(monkeypatch, Path(case.targets[0]).name)
    with pytest.raises(Exception, match=case.error):
        case.write(folder, 1)
    after = snapshot(folder)
    assert not [name for name in after if name.endswith(".tmp")], f"temporary files left: {sorted(after)}"
    assert sorted(after) == sorted(before), "a file appeared or vanished"
    for target in case.targets:
        assert after[target] == before[target], f"{target} is not the previous file"


# --------------------------------------------------------------------------- atomic_path itself: rename and fsync


@pytest.fixture
def old_file(tmp_path) -> Path:
    path = tmp_path / "file.bin"
    path.write_bytes(b"old contents")
    return path


def test_a_failed_rename_leaves_the_previous_file_intact(old_file, monkeypatch):
    def replace(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UserError, match="cannot write"):
        write_bytes(old_file, b"new contents")
    assert old_file.read_bytes() == b"old contents"
    assert [p.name for p in old_file.parent.iterdir()] == ["file.bin"]


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", "folder" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(src).parent == Path(dst).parent, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    final = tmp_path / "file.bin"
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"contents")
        events.append(("written",))
    file_inode, folder_inode = final.stat().st_ino, tmp_path.stat().st_ino  # the rename keeps the inode
    assert events == [("written",), ("fsync", "file", file_inode), ("replace", True, "file.bin"), ("fsync", "folder", folder_inode)]


@pytest.mark.parametrize("failing", ["file", "folder"])
def test_a_failed_fsync_is_an_error_and_leaves_a_whole_file(old_file, monkeypatch, failing):
    """The file's fsync failing: the old file stays. The folder's failing (after the rename): the new file is
    whole, but the rename may not survive a power cut, so the caller is told."""
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode) == (failing == "folder"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(UserError, match=os.strerror(errno.EIO)):
        write_bytes(old_file, b"new contents")
    assert old_file.read_bytes() == (b"old contents" if failing == "file" else b"new contents")
    assert [p.name for p in old_file.parent.iterdir()] == ["file.bin"]
