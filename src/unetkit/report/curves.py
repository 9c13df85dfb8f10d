"""Training curves: losses and validation scores against the samples seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_path

CURVES_FILE = "curves.png"


def plot_curves(run_dir: Path, history: list[dict]) -> None:
    """curves.png: losses (left) and validation scores (right) against training samples."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation cross-entropy")):
        left.plot(*_series(history, key), marker=".", label=label)
    for key, label in (("val_mean_iou", "mean IoU"), ("val_mean_dice", "mean Dice"), ("val_pixel_error", "pixel error")):
        right.plot(*_series(history, key), marker=".", label=label)
    left.set(xlabel="training samples", ylabel="loss", yscale="log", title="loss")
    right.set(xlabel="training samples", ylim=(0, 1), title="validation")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend()
    fig.tight_layout()
    with atomic_path(run_dir / CURVES_FILE) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _series(history: list[dict], key: str) -> tuple[list, list]:
    """(samples, values) of the rows that hold `key`: validation runs on some epochs only, and its line joins them."""
    rows = [row for row in history if row.get(key) is not None and np.isfinite(row[key])]
    return [row["samples"] for row in rows], [row[key] for row in rows]
