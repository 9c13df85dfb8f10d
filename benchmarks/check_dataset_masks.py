"""Read the first N pairs of a shared data set with the mask convention unetkit finds, and say what it found.

    python benchmarks/check_dataset_masks.py                       # ../shared/data/dsb2018, 20 pairs
    python benchmarks/check_dataset_masks.py --data DIR --count 40 --images images --masks labels

Prints the convention line training prints, then per pair: size, instances in
the map, object pixels after the touching borders are taken out, border-weight
pixels above w0 / 2 (where instances touch), and the time the survey took.
The data stay where they are: nothing is copied.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from unetkit.config import DataConfig
from unetkit.data import describe, find_mask_convention, read_pair, weight_map
from unetkit.data.pairing import Pair

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"  # beside the checkout, as the other benchmarks find data


def first_pairs(data: Path, images: str, masks: str, count: int) -> list[Pair]:
    """The first `count` pairs by name (image and mask of the same file name)."""
    names = sorted(p.name for p in (data / masks).iterdir())[:count]
    return [Pair(data / images / name, data / masks / name) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--images", default="images")
    parser.add_argument("--masks", default="labels")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    pairs = first_pairs(args.data, args.images, args.masks, args.count)
    start = time.perf_counter()
    config = find_mask_convention(pairs, DataConfig())
    print(f"{len(pairs)} pairs of {args.data}; convention found in {time.perf_counter() - start:.2f} s")
    print(describe(config))
    for pair in pairs:
        image, classes, objects = read_pair(pair, config)
        weights = weight_map(classes, np.ones(2, np.float32), objects=objects) if objects is not None else None
        found = "" if objects is None else f"{objects.max():4d} instances, "
        high = "" if weights is None else f", {int((weights > 6).sum()):5d} px weigh > 1 + w0/2"
        print(f"{pair.name[:12]}  {image.shape[1]:4d} x {image.shape[2]:4d}  {found}{int((classes == 1).sum()):6d} object px{high}")


if __name__ == "__main__":
    main()
