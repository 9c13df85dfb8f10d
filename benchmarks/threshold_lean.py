"""Where the 0.5 threshold falls: pixel error against threshold for finished ISBI runs.

For each run that `accuracy_isbi.py` trained, predicts the held-out sections
25-29 and, over the 5 sections together, reports: the share of pixels called
membrane at p > 0.5 against the truth, the pixel error at 0.5, the best
threshold of a fine sweep (0.30, 0.31, ..., 0.70) and its pixel error, and
the pixel error and the Rand error at 0.5, before and after one logit
offset fitted on the run's *training* sections (the least unweighted
cross-entropy): the calibration that would take the border weight's pull
towards membrane back out. The Rand error comes both ways: the 5 sections
as one stack (pair counts pooled, printed first) and the per-image mean.

    .venv/bin/python benchmarks/threshold_lean.py                                   # runs/accuracy_isbi
    .venv/bin/python benchmarks/threshold_lean.py --out runs/accuracy_isbi_seed1 --only unetkit-default monai-UNet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_isbi import CONTENDERS, DEFAULT_RUN, HELD_OUT, ISBI, ROOT, load_predictor  # noqa: E402
from common import save  # noqa: E402
from unetkit.checkpoint import read_config  # noqa: E402
from unetkit.evaluation.metrics import rand_error  # noqa: E402
from unetkit.io import read_image, read_mask  # noqa: E402

THRESHOLDS = np.round(np.arange(0.30, 0.701, 0.01), 2)


def cell_logits_and_masks(predictor, data: Path, names: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per section: log(p_cell / p_membrane) and the ground-truth mask (> 0: cell)."""
    logits, masks = [], []
    for name in names:
        probs = predictor.probabilities(read_image(data / "images" / f"{name}.png"))
        p_cell = np.clip(probs[1].astype(np.float64), 1e-7, 1 - 1e-7)
        logits.append(np.log(p_cell / (1 - p_cell)))
        masks.append(read_mask(data / "labels" / f"{name}.png"))
    return logits, masks


def flat(logits: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([x.ravel() for x in logits]), np.concatenate([m.ravel() > 0 for m in masks])


def mean_rand_error(logits: list[np.ndarray], masks: list[np.ndarray], offset: float = 0.0) -> float:
    """Per-image mean of the Rand error at p > 0.5 (after `offset`)."""
    return float(np.mean([rand_error((x + offset > 0).astype(np.uint8), m) for x, m in zip(logits, masks)]))


def stack_rand_error(logits: list[np.ndarray], masks: list[np.ndarray], offset: float = 0.0) -> float:
    """Rand error at p > 0.5 (after `offset`) of the sections as one stack: pair counts pooled."""
    binary = np.stack([(x + offset > 0).astype(np.uint8) for x in logits])
    return rand_error(binary, np.stack(masks), threshold=0.5)


def fitted_offset(logits: np.ndarray, truth: np.ndarray) -> float:
    """The logit offset b with the least mean cross-entropy of sigmoid(logits + b)."""
    sign = np.where(truth, 1.0, -1.0)
    return float(minimize_scalar(lambda b: np.mean(np.logaddexp(0, -sign * (logits + b))), bounds=(-3, 3),
                                 method="bounded").x)


def lean(name: str, out: Path, data: Path) -> dict:
    run = out / name
    _, predictor = load_predictor(name, run, data / "labels")
    sections = cell_logits_and_masks(predictor, data, HELD_OUT)
    logits, truth = flat(*sections)
    errors = [float(np.mean((logits > np.log(t / (1 - t))) != truth)) for t in THRESHOLDS]
    best = int(np.argmin(errors))
    offset = fitted_offset(*flat(*cell_logits_and_masks(predictor, data, read_config(run)["split"]["train"])))
    return {
        "membrane_share_at_0.5": float(np.mean(logits <= 0)),
        "true_membrane_share": float(np.mean(~truth)),
        "pixel_error_at_0.5": float(np.mean((logits > 0) != truth)),
        "best_threshold": float(THRESHOLDS[best]),
        "pixel_error_at_best": errors[best],
        "offset_fitted_on_training": offset,
        "pixel_error_at_0.5_after_offset": float(np.mean((logits + offset > 0) != truth)),
        "stack_rand_error_at_0.5": stack_rand_error(*sections),
        "stack_rand_error_at_0.5_after_offset": stack_rand_error(*sections, offset),
        "rand_error_at_0.5": mean_rand_error(*sections),  # per-image mean (the key older results have)
        "rand_error_at_0.5_after_offset": mean_rand_error(*sections, offset),
    }


def print_table(results: dict) -> None:
    """Stack figures first (pixel errors over the pooled sections, pooled Rand), then the per-image mean Rand."""
    print("-- stack, one threshold (the held-out sections pooled; Rand at p > 0.5)")
    print(f"{'model':<18} {'membrane@0.5':>12} {'truth':>6} {'pixel@0.5':>9} {'best t':>6} {'pixel@best':>10} "
          f"{'offset':>7} {'pixel@0.5 after offset':>22} {'Rand@0.5':>8} {'Rand@0.5 after offset':>21}")
    for name, r in results.items():
        print(f"{name:<18} {r['membrane_share_at_0.5']:>12.3f} {r['true_membrane_share']:>6.3f} {r['pixel_error_at_0.5']:>9.4f} "
              f"{r['best_threshold']:>6.2f} {r['pixel_error_at_best']:>10.4f} {r['offset_fitted_on_training']:>7.3f} "
              f"{r['pixel_error_at_0.5_after_offset']:>22.4f} {r['stack_rand_error_at_0.5']:>8.4f} "
              f"{r['stack_rand_error_at_0.5_after_offset']:>21.4f}")
    print("-- per-image mean (each section scored alone at p > 0.5, then averaged)")
    print(f"{'model':<18} {'Rand@0.5':>8} {'Rand@0.5 after offset':>21}")
    for name, r in results.items():
        print(f"{name:<18} {r['rand_error_at_0.5']:>8.4f} {r['rand_error_at_0.5_after_offset']:>21.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ISBI)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "accuracy_isbi")
    parser.add_argument("--only", nargs="*", choices=list(CONTENDERS), default=DEFAULT_RUN)
    args = parser.parse_args()
    results = {name: lean(name, args.out, args.data) for name in args.only}
    print_table(results)
    save("threshold_lean", {"out": str(args.out), "held_out": HELD_OUT, "results": results, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
