"""Issue 3's acceptance run: the default preset on ISBI 2012, trained for 15 minutes.

Trains on sections 00-24, validates on 25-29 (whole 512 x 512 sections), and
prints the held-out pixel error next to the all-foreground baseline (every
pixel called cell interior: the membrane share, about 0.22). The run folder
holds metrics.csv and curves.png. Equivalent command:

    unetkit train --images ../shared/data/isbi2012/train/images \\
        --masks ../shared/data/isbi2012/train/labels --out runs/isbi-default \\
        --preset default --val-names 25 26 27 28 29 --time-budget 15

    .venv/bin/python benchmarks/train_isbi.py                         # full figures (15 min)
    .venv/bin/python benchmarks/train_isbi.py --minutes 0.5 --out /tmp/isbi   # a quick check
Extra arguments after `--` go to `unetkit train` (e.g. `-- --batch-size 8`).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012" / "train"
VALIDATION = ["25", "26", "27", "28", "29"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ISBI, help="folder with images/ and labels/")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / f"isbi-default-{datetime.date.today()}")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--preset", default="default")
    parser.add_argument("extra", nargs="*", help="more `unetkit train` flags, after --")
    args = parser.parse_args()
    command = ["train", "--images", str(args.data / "images"), "--masks", str(args.data / "labels"), "--out", str(args.out),
               "--preset", args.preset, "--val-names", *VALIDATION, "--time-budget", str(args.minutes), *args.extra]
    print("unetkit " + " ".join(command))
    from unetkit.cli import main as cli

    if cli(command) != 0:
        sys.exit(2)
    rows = list(csv.DictReader(open(args.out / "metrics.csv")))
    last, best = rows[-1], max(rows, key=lambda r: float(r["val_mean_iou"]))
    result = {
        "command": "unetkit " + " ".join(command),
        "steps": int(last["step"]), "minutes": float(last["time_s"]) / 60,
        "val_pixel_error_last": float(last["val_pixel_error"]), "val_pixel_error_best_iou_epoch": float(best["val_pixel_error"]),
        "val_mean_iou_last": float(last["val_mean_iou"]), "all_foreground_baseline": all_foreground_error(args.data),
        "curves": str(args.out / "curves.png"),
    }
    print(json.dumps(result, indent=2))
    (args.out / "isbi_result.json").write_text(json.dumps(result, indent=2) + "\n")


def all_foreground_error(data: Path) -> float:
    """Pixel error of calling every held-out pixel cell interior: the membrane share."""
    from unetkit.io import read_mask

    labels = [read_mask(data / "labels" / f"{name}.png") for name in VALIDATION]
    return float(np.mean([np.mean(label == 0) for label in labels]))


if __name__ == "__main__":
    main()
