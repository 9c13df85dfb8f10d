"""Speed of the ISBI 2012 metrics and of `unetkit evaluate` end to end.

    .venv/bin/python benchmarks/bench_metrics.py            # full figures (about 1-2 minutes)
    .venv/bin/python benchmarks/bench_metrics.py --slices 3 --repeats 1 --no-save   # a quick check

Measures, on ISBI 2012 training slices (labels: 255 cell interior, 0 membrane)
against a degraded copy turned into probabilities (each slice eroded or
dilated by one pixel, blurred, with noise: deterministic per slice):
- Rand error of one 512 x 512 pair, at t = 0.5 and over the 11-level sweep (target < 0.2 s);
- warping error of one pair, at t = 0.5 and over the 10-level sweep (target < 2 s);
- `unetkit.evaluate` of the training set (30 slices) from files, with the
  threshold sweep and all scores (target < 1 minute).
Prints a table and saves dated JSON with machine info under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

import unetkit
from unetkit.evaluation import metrics
from unetkit.io import write_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"rand_error_sweep": 0.2, "warping_error_sweep": 2.0, "evaluate_set": 60.0}


def degraded_probability(label: np.ndarray, seed: int) -> np.ndarray:
    """A plausible imperfect cell-interior probability map made from a label image."""
    rng = np.random.default_rng(seed)
    interior = label > 0
    interior = ndimage.binary_erosion(interior) if rng.random() < 0.5 else ndimage.binary_dilation(interior)
    prob = ndimage.gaussian_filter(interior.astype(np.float64), 1.0) + rng.normal(0, 0.1, label.shape)
    return np.clip(prob, 0, 1).astype(np.float32)


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isbi", type=Path, default=ROOT.parent / "shared" / "data" / "isbi2012", help="ISBI 2012 folder")
    parser.add_argument("--slices", type=int, default=30, help="training slices for the end-to-end run (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the single-pair timings")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    label_files = sorted((args.isbi / "train" / "labels").glob("*.png"))[: args.slices]
    if not label_files:
        raise SystemExit(f"no ISBI 2012 labels under {args.isbi}/train/labels")
    gt = np.asarray(Image.open(label_files[0]))
    prob = degraded_probability(gt, 0)
    timings = {
        "rand_error_0.5": best_time(lambda: metrics.rand_error(prob, gt, threshold=0.5), args.repeats),
        "rand_error_sweep": best_time(lambda: metrics.rand_error(prob, gt), args.repeats),
        "warping_error_0.5": best_time(lambda: metrics.warping_error(prob, gt, threshold=0.5), args.repeats),
        "warping_error_sweep": best_time(lambda: metrics.warping_error(prob, gt), args.repeats),
    }
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir, gt_dir = Path(tmp) / "pred", Path(tmp) / "gt"
        for i, path in enumerate(label_files):
            label = np.asarray(Image.open(path))
            write_image(gt_dir / path.name, label)
            write_image(pred_dir / f"{path.stem}_probs.tif", degraded_probability(label, i))
        start = time.perf_counter()
        results = unetkit.evaluate(pred_dir, gt_dir, boundary_class=0, threshold_sweep=True, instances=True, progress=False)
        timings["evaluate_set"] = time.perf_counter() - start

    print(f"{'measurement':24} {'seconds':>9} {'target':>8}")
    for name, seconds in timings.items():
        target = f"< {TARGETS[name]:g}" if name in TARGETS else ""
        print(f"{name:24} {seconds:9.3f} {target:>8}")
    print(f"(evaluate_set: {len(label_files)} slices of {gt.shape[0]} x {gt.shape[1]}, sweep + instances + warping)")
    stack = results["stack"]
    print("stack scores: " + ", ".join(f"{k} {stack[k]:.6f}" for k in ("rand_error", "info_error", "warping_error", "pixel_error")))

    if not args.no_save:
        save("metrics", {
            "slices": len(label_files),
            "repeats": args.repeats,
            "seconds": timings,
            "targets_seconds": TARGETS,
            "stack_scores": {k: stack[k] for k in ("rand_error", "info_error", "warping_error", "pixel_error", "mean_iou")},
        })


if __name__ == "__main__":
    main()
