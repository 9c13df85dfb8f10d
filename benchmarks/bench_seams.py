"""Seams of same-padding tiled prediction: the default preset, tiled, against one forward pass.

    .venv/bin/python benchmarks/bench_seams.py                       # full figures (4 min 50 s on 2 cores at load 4-7)
    .venv/bin/python benchmarks/bench_seams.py --steps 20 --tiles 256 --no-save   # a quick check

The default preset (same padding, width 16) is trained briefly (`--steps`
Adam steps on 4 random 192 x 192 patches, or fewer if `--train-minutes` run
out first on a busy machine; plain cross-entropy; then BatchNorm statistics
re-estimated on clean patches) on ISBI 2012 slices 6-29 when
`--isbi` holds the data (default ../shared/data/isbi2012), else on synthetic
EM (`unetkit.synthetic`). The test image is 1000 x 1300: a 2 x 3 mosaic of
ISBI slices 0-5 (cropped), or one synthetic section.

For each tile size and overlap, `Predictor.probabilities` (what `unetkit
predict` does) is compared with ONE forward pass over the whole image
mirror-padded by the context the tiling gives the border (half the overlap,
rounded down to the pooling grid; bottom/right up to a poolable size). Reported
for the foreground (cell) probability: max and mean |dp|, the max beyond 32 px
of the image border (seams only), and the share of pixels whose label
(argmax) differs. Saves dated JSON with machine info under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from unetkit import create_model
from unetkit.config import DataConfig
from unetkit.data import normalize
from unetkit.io import list_images, read_image
from unetkit.prediction import PredictConfig, Predictor, to_probabilities
from unetkit.synthetic import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 1000, 1300
PATCH, BATCH = 192, 4
BORDER = 32  # "interior" pixels lie at least this far from the image border


def load_data(isbi: Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, str]:
    """(training images (C, H, W) normalised, training labels (H, W) int64, the 1000 x 1300 test image, its source)."""
    if (isbi / "train" / "images").is_dir():
        images = [read_image(p)[0] for p in list_images(isbi / "train" / "images")]
        labels = [read_image(p)[0] for p in list_images(isbi / "train" / "labels")]
        mosaic = np.block([images[0:3], images[3:6]])[:HEIGHT, :WIDTH]
        train, source = list(range(6, len(images))), f"ISBI 2012 {isbi}: train on slices 6-29, mosaic of slices 0-5"
    else:
        pairs = [generate((512, 512), seed=seed) for seed in range(1, 9)]
        images, labels = [i for i, _ in pairs], [m for _, m in pairs]
        mosaic, train, source = generate((HEIGHT, WIDTH), seed=0)[0], range(len(pairs)), "synthetic EM (ISBI data not found)"
    x = [normalize(images[i][None], DataConfig()) for i in train]
    y = [(labels[i] > 0).astype(np.int64) for i in train]  # 1 = cell interior, 0 = membrane
    return x, y, mosaic, source


def random_patches(rng, x, y, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random PATCH x PATCH crops, each rotated and flipped at random."""
    images, labels = [], []
    for _ in range(count):
        i = rng.integers(len(x))
        top, left = rng.integers(0, x[i].shape[1] - PATCH + 1), rng.integers(0, x[i].shape[2] - PATCH + 1)
        k, flip = rng.integers(4), rng.integers(2)
        for out, array in ((images, x[i]), (labels, y[i][None])):
            crop = np.rot90(array[:, top : top + PATCH, left : left + PATCH], k, axes=(1, 2))
            out.append(np.ascontiguousarray(crop[:, :, ::-1] if flip else crop))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.concatenate(labels))


def train(model, x, y, steps: int, minutes: float) -> tuple[int, float]:
    """Brief training, then BatchNorm statistics averaged over clean patches; returns (steps done, final loss)."""
    rng, optimizer = np.random.default_rng(0), torch.optim.Adam(model.parameters(), lr=2e-3)
    deadline, done = time.perf_counter() + 60 * minutes, 0
    model.train()
    while done < steps and time.perf_counter() < deadline:
        images, labels = random_patches(rng, x, y, BATCH)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        if done % 25 == 1:
            print(f"  step {done:4d}  loss {loss.item():.4f}", flush=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calibration batches
    with torch.no_grad():
        for _ in range(4):
            model(random_patches(rng, x, y, BATCH)[0])
    model.eval()
    return done, loss.item()


def whole_image(model, x: np.ndarray, context_y: int, context_x: int) -> np.ndarray:
    """Foreground probability of one forward over the normalised (C, H, W) image mirror-padded by the context."""
    align, (height, width) = model.config.total_stride, x.shape[1:]
    bottom = -(-(height + context_y) // align) * align - height
    right = -(-(width + context_x) // align) * align - width
    padded = np.pad(x, ((0, 0), (context_y, bottom), (context_x, right)), mode="symmetric")
    with torch.inference_mode():
        probs = to_probabilities(model(torch.from_numpy(padded[None])).numpy())[0]
    return probs[1, context_y : context_y + height, context_x : context_x + width]


def border_context(axis, align: int) -> int:
    """The mirrored context the tiling gives the image border: half the overlap, on the pooling grid."""
    return (axis.tile - axis.step) // 2 // align * align


def compare(model, image: np.ndarray, tile: int, overlap: float) -> dict:
    """Tiled prediction of `image` against one forward over it, mirror-padded by the same context."""
    predictor = Predictor.create(model, PredictConfig(tile_size=tile, overlap=overlap))
    grid, align = predictor.grid(*image.shape), model.config.total_stride
    context = border_context(grid.rows, align), border_context(grid.cols, align)
    start = time.perf_counter()
    tiled = predictor.probabilities(image)[1]
    seconds = time.perf_counter() - start
    reference = whole_image(model, normalize(image[None], DataConfig()), *context)
    dp = np.abs(tiled - reference)
    return {
        "tile": tile,
        "overlap": overlap,
        "tiles": grid.count,
        "step": [grid.rows.step, grid.cols.step],
        "border_context": list(context),
        "max_dp": float(dp.max()),
        "mean_dp": float(dp.mean()),
        "max_dp_interior": float(dp[BORDER:-BORDER, BORDER:-BORDER].max()),
        "labels_differ": float(((tiled > 0.5) != (reference > 0.5)).mean()),
        "tiled_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isbi", type=Path, default=ROOT.parent / "shared" / "data" / "isbi2012", help="ISBI 2012 folder (train/images, train/labels)")
    parser.add_argument("--steps", type=int, default=150, help="training steps of 4 patches of 192 x 192")
    parser.add_argument("--train-minutes", type=float, default=1.5, help="stop training earlier when this is spent")
    parser.add_argument("--tiles", nargs="+", type=int, default=[256, 384, 512], help="tile sides")
    parser.add_argument("--overlaps", nargs="+", type=float, default=[0.25, 0.5])
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    load_before = os.getloadavg()  # common.save's machine info reads the load at the end
    x, y, image, source = load_data(args.isbi)
    print(f"data: {source}; load {load_before[0]:.1f}")
    torch.manual_seed(0)
    model = create_model("default")
    start = time.perf_counter()
    steps, loss = train(model, x, y, args.steps, args.train_minutes)
    train_seconds = time.perf_counter() - start
    print(f"trained {steps} steps in {train_seconds:.0f} s (last loss {loss:.3f}); load {os.getloadavg()[0]:.1f}")

    print(f"{'tile':>5} {'overlap':>7} {'tiles':>5} {'max |dp|':>9} {'mean |dp|':>9} {'max >32px':>9} {'labels':>8} {'s':>5}")
    results = []
    for tile in args.tiles:
        for overlap in args.overlaps:
            r = compare(model, image, tile, overlap)
            results.append(r)
            print(f"{tile:5d} {overlap:7.2f} {r['tiles']:5d} {r['max_dp']:9.4f} {r['mean_dp']:9.2e} "
                  f"{r['max_dp_interior']:9.4f} {r['labels_differ']:8.4%} {r['tiled_seconds']:5.1f}", flush=True)
    print(f"load at the end {os.getloadavg()}")
    if not args.no_save:
        save("seams", {
            "data": source, "image": [HEIGHT, WIDTH], "model": "default (width 16)", "train_steps": steps,
            "train_patch": PATCH, "train_batch": BATCH, "train_seconds": train_seconds, "final_loss": loss,
            "load_average_before": load_before, "load_average_at_end": os.getloadavg(), "results": results,
        })


if __name__ == "__main__":
    main()
