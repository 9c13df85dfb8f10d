"""The whole loop in one call: data -> train -> predict held-out images -> evaluate -> report.

With no data folder it generates the embedded synthetic EM set; with one it
takes the ISBI 2012 layout (`DIR/images`, `DIR/labels`, labels 255 = cell
interior, 0 = membrane) and holds out the last fifth of the sections.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import UserError
from .evaluation import evaluate
from .io import list_images, write_bytes
from .prediction import PredictConfig, predict_files
from .synthetic import write_dataset
from .training import train

MEMBRANE = 0  # class 0 of ISBI-style labels (raw 0 = membrane, 255 = cell interior)
HEADLINE_KEYS = ("pixel_error", "rand_error", "warping_error", "info_error", "mean_iou")


def synthetic_split(folder: Path, seed: int = 0) -> tuple[Path, list[str]]:
    """16 synthetic 256 x 256 sections: 00-11 train, 12-15 held out."""
    write_dataset(folder, count=16, shape=(256, 256), seed=seed)
    return folder, [f"{i:02d}" for i in range(12, 16)]


def held_out_names(folder: Path) -> list[str]:
    """The last fifth of the sections by name (at least one)."""
    stems = [p.stem for p in list_images(folder / "images")]
    if len(stems) < 2:
        raise UserError("the demo needs at least 2 images", path=folder / "images", fix="add images and labels")
    return stems[-max(1, len(stems) // 5) :]


def run_demo(out: str | Path, data: str | Path | None = None, minutes: float = 4.0, preset: str = "default", seed: int = 0) -> dict:
    """Run the loop; returns the evaluation results (with `report` and `run` paths added).

    A second run into the same `out` replaces the demo's own outputs there.
    """
    out = Path(out)
    _clear_previous(out)
    if data is None:
        data, test_names = synthetic_split(out / "data", seed)
    else:
        data = Path(data)
        for sub in ("images", "labels"):
            if not (data / sub).is_dir():
                raise UserError(f"no {sub}/ folder", path=data, fix="lay the data out as DIR/images and DIR/labels")
        test_names = held_out_names(data)

    # The held-out sections are the validation set: logged each epoch, but the
    # demo predicts with the last weights, so they never influence the model.
    run = train(data / "images", data / "labels", out / "run", preset=preset, time_budget=minutes, val_names=tuple(test_names), seed=seed)
    images = [p for p in list_images(data / "images") if p.stem in test_names]
    labels = out / "held_out_labels"
    for path in list_images(data / "labels"):
        if path.stem in test_names:
            write_bytes(labels / path.name, path.read_bytes())
    predict_files(run, images, out / "predictions", PredictConfig(weights="last"))
    headline = (
        f"{preset} preset, {minutes:g} min of training on {len(list_images(data / 'images')) - len(images)} images; "
        f"metrics on {len(images)} held-out images (last weights: the held-out set picked nothing)"
    )
    results = evaluate(
        out / "predictions", labels, boundary_class=MEMBRANE, threshold_sweep=True,
        json_path=out / "metrics.json", report_dir=out / "report", report_title="unetkit demo",
        report_headline=headline, report_figures=[("training curves", run / "curves.png")],
    )
    results["report"] = str(out / "report" / "report.html")
    results["run"] = str(run)
    return results


DEMO_OUTPUTS = ("data", "run", "predictions", "held_out_labels", "report", "metrics.json")


def _clear_previous(out: Path) -> None:
    """Remove what an earlier demo wrote into `out` (only those names), so `make demo` can run again."""
    for name in DEMO_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def headline(results: dict) -> str:
    """The held-out set scored as the ISBI challenge scored its stack: one threshold for the whole set."""
    stack = results["stack"]
    return "   ".join(f"{key} {stack[key]:.4f}" for key in HEADLINE_KEYS if stack.get(key) is not None)
