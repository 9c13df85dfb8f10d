"""Peak memory and speed of training on one huge tiled TIFF, read window by window (lazy training, #16).

    .venv/bin/python benchmarks/bench_lazy_train.py                  # 20000 x 20000, default preset, 20 steps (long)
    .venv/bin/python benchmarks/bench_lazy_train.py --side 2048 --preset tiny --steps 3 --lazy-above 1 --no-save   # a check

Writes (once; `--data DIR` keeps it for later runs) a synthetic uint8 image of
side x side px and its 0/255 mask, both tiled 256 x 256 and zlib-compressed as
large scenes are, built band by band so this script stays small too: blobs of
a coarse random field (many objects, some spanning hundreds of rows) under
noise. Then runs `unetkit train` (planned, as a user runs it) for `--steps`
steps in a fresh child process and reports its peak RSS (`ru_maxrss` of the
child), the wall time, the seconds per training step (`step_s` of
metrics.csv) and the time before the first step (reading headers, the plan,
streamed statistics, class counts, the objects' components). Target (#16):
within 2 GB RSS at 20000 x 20000. `--val-side S` adds a validation image of
S x S px (predicted band by band at the end); by default one image trains
without validation. Saves dated JSON with machine info under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

TARGET_RSS_MB = 2048
TILE = 256


def write_scene(images: Path, masks: Path, name: str, side: int, seed: int) -> None:
    """A side x side uint8 image and 0/255 mask, tiled TIFFs, written one row of tiles at a time."""
    import tifffile

    rng = np.random.default_rng(seed)
    cell = 48  # px per cell of the coarse field: blobs of tens of px, merging into larger objects
    field = rng.random((side // cell + 2, side // cell + 2))

    def mask_band(y: int) -> np.ndarray:
        rows = np.arange(y, min(y + TILE, side)) // cell
        return (np.repeat(field[rows], cell, axis=1)[:, :side] > 0.7).astype(np.uint8) * 255

    def tiles(kind: str):
        for y in range(0, side, TILE):
            band = mask_band(y)
            if kind == "image":
                band = (60 + band // 3 + rng.integers(0, 60, band.shape, dtype=np.uint8)).astype(np.uint8)
            yield from (np.ascontiguousarray(band[:, x : x + TILE]) for x in range(0, side, TILE))

    for folder, kind in ((masks, "mask"), (images, "image")):
        folder.mkdir(parents=True, exist_ok=True)
        with tifffile.TiffWriter(folder / f"{name}.tif", bigtiff=side * side > 2**31) as tif:
            tif.write(tiles(kind), shape=(side, side), dtype=np.uint8, tile=(TILE, TILE), compression="zlib")


def train_child(data: Path, out: Path, args) -> dict:
    """Run `unetkit train` in a child process; its peak RSS (ru_maxrss) and wall time."""
    command = [sys.executable, "-m", "unetkit", "train", "--images", str(data / "images"), "--masks", str(data / "masks"),
               "--out", str(out), "--preset", args.preset, "--steps", str(args.steps), "--lazy-above", str(args.lazy_above),
               "--weight-map", "--quiet", *([] if args.val_side else ["--val-fraction", "0"]), *args.extra]
    begin = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - begin
    stderr = child.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"train failed ({os.waitstatus_to_exitcode(status)}):\n{stderr[-3000:]}")
    with open(out / "metrics.csv") as file:
        last = list(csv.DictReader(file))[-1]
    step_s, train_s = float(last["step_s"]), float(last["time_s"])
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "step_s": step_s,
            "before_first_step_s": wall - train_s, "train_s": train_s, "stderr_tail": stderr[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20000, help="training image side in px (default 20000)")
    parser.add_argument("--val-side", type=int, default=0, help="a validation image of this side (default: none)")
    parser.add_argument("--preset", default="default", help="model preset (default: default)")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--lazy-above", type=float, default=64, help="--lazy-above of unetkit train, megapixels (default 64)")
    parser.add_argument("--data", type=Path, help="keep the data here and reuse it (default: a temporary folder)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `unetkit train` flags")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="what this run measures, saved in the JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        begin = time.perf_counter()
        if not (data / "images" / "scene.tif").exists():
            write_scene(data / "images", data / "masks", "scene", args.side, seed=0)
            if args.val_side:
                write_scene(data / "images", data / "masks", "scene_val", args.val_side, seed=1)
        print(f"data in {data} ({time.perf_counter() - begin:.0f} s to write)", flush=True)
        row = train_child(data, Path(tmp) / "run", args)
    print(f"{args.side} x {args.side} ({args.side**2 / 1e6:.0f} MP), {args.preset}, {args.steps} steps: peak RSS "
          f"{row['peak_rss_mb']:.0f} MB (target < {TARGET_RSS_MB}), {row['step_s']:.2f} s/step, "
          f"{row['before_first_step_s']:.1f} s before the first step, wall {row['wall_s']:.1f} s")
    if not args.no_save:
        save("lazy_train", {"note": args.note, "side": args.side, "val_side": args.val_side, "preset": args.preset,
                            "steps": args.steps, "lazy_above_mpix": args.lazy_above, "flags": args.extra,
                            "target_peak_rss_mb": TARGET_RSS_MB, **row})


if __name__ == "__main__":
    main()
