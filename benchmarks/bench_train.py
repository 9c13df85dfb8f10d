"""How much of a training step goes to data: loading + augmentation + weight maps.

Trains the chosen preset for two short epochs and reads the second epoch's
row of metrics.csv (the engine times every step: waiting for the next batch,
cropping included, plus the on-device augmentation, against the whole step).
It also times the parts alone: the one-off weight maps per image, the crop
per sample and the augmentation per batch. Prints a table and saves dated
JSON with machine information under benchmarks/results/.

    .venv/bin/python benchmarks/bench_train.py                 # full figures (ISBI 2012, default preset)
    .venv/bin/python benchmarks/bench_train.py --steps 4 --patch-size 128   # a quick check

Target (issue 3): data share < 20% of a step for the default preset.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

import unetkit
from unetkit.config import AugmentConfig, DataConfig
from unetkit.data import PatchDataset, load_examples, pair_files
from unetkit.data.augment import augment_batch, required_slack
from unetkit.data.weightmap import balancing_weights, class_frequencies, weight_map

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ISBI / "images")
    parser.add_argument("--masks", type=Path, default=ISBI / "labels")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="steps per measured epoch")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no images at {args.images}: pass --images and --masks")

    parts = time_parts(args)
    with tempfile.TemporaryDirectory() as tmp:
        run = unetkit.train(
            args.images, args.masks, Path(tmp) / "run", preset=args.preset, batch_size=args.batch_size,
            patch_size=args.patch_size, steps=2 * args.steps, samples_per_epoch=args.steps * args.batch_size,
            workers=args.workers, device=args.device, progress=False,
        )
        row = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))[1]  # the second epoch: warmed up
    result = {
        "preset": args.preset, "batch_size": args.batch_size, "patch_size": args.patch_size, "workers": args.workers,
        "step_s": float(row["step_s"]), "samples_per_s": float(row["samples_per_s"]),
        "data_share": float(row["data_share"]), **parts,
    }
    print_table(result, torch.get_num_threads())
    save("bench_train", result)


def time_parts(args) -> dict:
    """The data pipeline's parts, timed alone on the same images."""
    pairs = pair_files(args.images, args.masks)[:5]
    examples, _, config = load_examples(pairs, [], DataConfig(), progress=False)
    w_c = balancing_weights(class_frequencies([e.classes for e in examples], 2))
    begin = time.perf_counter()
    for example in examples:
        example.weight = weight_map(example.classes, w_c)
    weight_s = (time.perf_counter() - begin) / len(examples)
    augment = AugmentConfig()
    dataset = PatchDataset(examples, target=args.patch_size, slack=required_slack(augment, args.patch_size))
    begin = time.perf_counter()
    items = [dataset[i] for i in range(4 * args.batch_size)]
    crop_s = (time.perf_counter() - begin) / len(items)
    batch = torch.utils.data.default_collate(items[: args.batch_size])
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    batch = {k: v.to(device) for k, v in batch.items()}
    augment_batch(batch, augment, input_size=args.patch_size, target_size=args.patch_size)  # warm-up
    begin = time.perf_counter()
    for _ in range(3):
        augment_batch(batch, augment, input_size=args.patch_size, target_size=args.patch_size)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"weight_map_s_per_image_once": weight_s, "crop_s_per_sample": crop_s,
            "augment_s_per_batch": (time.perf_counter() - begin) / 3, "image_size": list(examples[0].shape)}




def print_table(r: dict, threads: int) -> None:
    rows = [
        ("step (s)", f"{r['step_s']:.3f}"),
        ("samples / s", f"{r['samples_per_s']:.1f}"),
        ("data share of a step (target < 20%)", f"{r['data_share']:.1%}"),
        ("  crop, per sample (s)", f"{r['crop_s_per_sample']:.4f}"),
        ("  augmentation, per batch (s)", f"{r['augment_s_per_batch']:.4f}"),
        ("weight map, once per image (s)", f"{r['weight_map_s_per_image_once']:.3f}"),
    ]
    print(f"{r['preset']} preset, batch {r['batch_size']}, patch {r['patch_size']}, workers {r['workers']}, "
          f"{threads} torch threads, torch {torch.__version__}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")


if __name__ == "__main__":
    main()
