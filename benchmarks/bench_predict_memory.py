"""Peak memory and wall time of `unetkit predict` on large single-band TIFFs.

    .venv/bin/python benchmarks/bench_predict_memory.py             # full figures: 2048^2, 4096^2, 8192^2 (~10-20 min on 2 cores)
    .venv/bin/python benchmarks/bench_predict_memory.py --sizes 512 1024 --preset tiny --no-save   # a quick check

For each size, writes a uint8 TIFF (tiled 256 x 256, zlib: what large scenes
usually are) of a smooth random pattern, and runs the command line
`unetkit predict RUN IMAGE --out DIR` under `/usr/bin/time -v` in a fresh
process with the default outputs (labels, probabilities, overlay). Reports
peak RSS ("Maximum resident set size") and wall time. Targets: peak RSS under
1.5 GB at 8192^2, and wall time linear in the pixel count (seconds per
megapixel about constant). Images are streamed (`--stream-above`, default 0
here, so every size takes the same path; the CLI default streams above 16 MP).
The run is an untrained model of `--preset` (speed and memory do not depend
on the weights). Saves dated JSON with machine info under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_RSS_MB = 1536


def write_test_image(path: Path, side: int) -> None:
    """A side x side uint8 TIFF, written band by band so this script stays small in memory too."""
    import tifffile

    rng = np.random.default_rng(side)
    coarse = rng.integers(0, 256, (side // 64 + 2, side // 64 + 2)).astype(np.uint8)

    def tiles():
        for y in range(0, side, 256):
            block = np.kron(coarse[y // 64 : y // 64 + 5], np.ones((64, 64), np.uint8))[:256]
            noise = rng.integers(0, 32, (block.shape[0], side + 256), dtype=np.uint8)
            band = (block[:, : side] // 2 + noise[:, :side] * 2)[: min(256, side - y)]
            yield from (band[:, x : x + 256] for x in range(0, side, 256))

    with tifffile.TiffWriter(path, bigtiff=side * side > 2**31) as tif:
        tif.write(tiles(), shape=(side, side), dtype=np.uint8, tile=(256, 256), compression="zlib")


def make_run(path: Path, preset: str) -> None:
    import torch

    from unetkit import create_model
    from unetkit.checkpoint import save_config, save_weights
    from unetkit.config import DataConfig

    torch.manual_seed(0)
    model = create_model(preset).eval()
    save_config(path, model.config, DataConfig())
    save_weights(path, model)


def measure(run: Path, image: Path, out: Path, extra: list[str]) -> dict:
    """Peak RSS and wall time of one `unetkit predict` process, from /usr/bin/time -v."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "unetkit", "predict", str(run), str(image), "--out", str(out), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"predict failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    return {"peak_rss_mb": rss_kb / 1024, "wall_seconds": seconds}




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[2048, 4096, 8192], help="image sides")
    parser.add_argument("--preset", default="default", help="model preset of the run (default: default)")
    parser.add_argument("--stream-above", default="0", help="passed to unetkit predict (megapixels)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `unetkit predict` flags")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="what this run measures (e.g. the code variant), saved in the JSON")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_run(tmp / "run", args.preset)
        for side in args.sizes:
            image = tmp / f"image_{side}.tif"
            write_test_image(image, side)
            row = {"side": side, "megapixels": side * side / 1e6, **measure(tmp / "run", image, tmp / f"out_{side}", ["--stream-above", args.stream_above, *args.extra])}
            row["seconds_per_megapixel"] = row["wall_seconds"] / row["megapixels"]
            rows.append(row)
            print(f"{side:>6} x {side:<6} {row['megapixels']:7.1f} MP   peak RSS {row['peak_rss_mb']:7.0f} MB   wall {row['wall_seconds']:8.1f} s   {row['seconds_per_megapixel']:.3f} s/MP", flush=True)
            image.unlink()
    linearity = rows[-1]["seconds_per_megapixel"] / rows[0]["seconds_per_megapixel"]
    peak = max(r["peak_rss_mb"] for r in rows)
    print(f"s/MP largest / smallest: {linearity:.2f} (1.0 = linear)   peak RSS {peak:.0f} MB (target < {TARGET_RSS_MB} MB)")
    if not args.no_save:
        save("predict_memory", {
            "note": args.note,
            "preset": args.preset,
            "flags": ["--stream-above", args.stream_above, *args.extra],
            "rows": rows,
            "seconds_per_megapixel_ratio_largest_to_smallest": linearity,
            "peak_rss_mb": peak,
            "target_peak_rss_mb": TARGET_RSS_MB,
        })


if __name__ == "__main__":
    main()
