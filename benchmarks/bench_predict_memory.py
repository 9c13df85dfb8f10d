"""Peak memory and wall time of `unetkit predict` on large single-band images, TIFF or zarr, in and out.

    .venv/bin/python benchmarks/bench_predict_memory.py             # TIFF figures: 2048^2, 4096^2, 8192^2 (~10-20 min on 2 cores)
    .venv/bin/python benchmarks/bench_predict_memory.py --format zarr --shapes 8192x8192 30000x2000   # zarr in, zarr out
    .venv/bin/python benchmarks/bench_predict_memory.py --format zarr --shapes 1024x1024 --preset tiny --no-save   # a quick check

For each size, writes a uint8 image of a smooth random pattern, band by band
(so this script stays small in memory too): a TIFF tiled 256 x 256 with zlib
(what large scenes usually are), or with `--format zarr` a zarr v3 array in
256 x 256 chunks, predicted to OME-Zarr (`--out-format zarr`). Runs the
command line `unetkit predict RUN IMAGE --out DIR` in a fresh child process
with the default outputs (labels, probabilities, overlay) and reports its
peak RSS (`ru_maxrss` of that child, from `os.wait4`) and wall time. Targets:
peak RSS under 1.5 GB at 8192^2, and wall time linear in the pixel count
(seconds per megapixel about constant). TIFFs are streamed (`--stream-above`,
default 0 here, so every size takes the same path; the CLI default streams
above 16 MP); zarr output is always streamed. The run is an untrained model of
`--preset` (speed and memory do not depend on the weights). Saves dated JSON
with machine info under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_RSS_MB = 1536
BLOCK = 256  # TIFF tile and zarr chunk side


def pattern_bands(height: int, width: int):
    """(rows, width) uint8 bands of BLOCK rows, top to bottom: coarse 64-px blobs plus noise."""
    rng = np.random.default_rng(height * 100003 + width)
    coarse = rng.integers(0, 256, (height // 64 + 6, width // 64 + 2)).astype(np.uint8)
    for y in range(0, height, BLOCK):
        block = np.kron(coarse[y // 64 : y // 64 + 4], np.ones((64, 64), np.uint8))[:, :width]
        noise = rng.integers(0, 32, block.shape, dtype=np.uint8)
        yield (block // 2 + noise * 2)[: min(BLOCK, height - y)]


def write_test_image(path: Path, height: int, width: int) -> None:
    """The pattern as a tiled TIFF (`.tif`) or a chunked zarr array (`.zarr`)."""
    if path.suffix == ".zarr":
        import zarr

        array = zarr.create_array(str(path), shape=(height, width), chunks=(BLOCK, BLOCK), dtype=np.uint8)
        for y, band in zip(range(0, height, BLOCK), pattern_bands(height, width)):
            array[y : y + len(band)] = band
        return
    import tifffile

    def tiles():
        for band in pattern_bands(height, width):
            yield from (band[:, x : x + BLOCK] for x in range(0, width, BLOCK))

    with tifffile.TiffWriter(path, bigtiff=height * width > 2**31) as tif:
        tif.write(tiles(), shape=(height, width), dtype=np.uint8, tile=(BLOCK, BLOCK), compression="zlib")


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
    """Peak RSS (the child's ru_maxrss) and wall time of one `unetkit predict` process."""
    command = [sys.executable, "-m", "unetkit", "predict", str(run), str(image), "--out", str(out), *extra]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    errors = child.stderr.read()  # read to the end first, so that a chatty child never blocks on a full pipe
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"predict failed ({status}):\n{errors[-2000:]}")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_seconds": seconds}  # ru_maxrss: KiB on Linux


def parse_shape(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width or height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[2048, 4096, 8192], help="square image sides")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, help="image shapes HxW (instead of --sizes), e.g. 30000x2000")
    parser.add_argument("--format", choices=("tiff", "zarr"), default="tiff", help="input and output format (default: tiff)")
    parser.add_argument("--preset", default="default", help="model preset of the run (default: default)")
    parser.add_argument("--stream-above", default="0", help="passed to unetkit predict (megapixels)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `unetkit predict` flags")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="what this run measures (e.g. the code variant), saved in the JSON")
    args = parser.parse_args()
    shapes = args.shapes or [(side, side) for side in args.sizes]
    flags = ["--stream-above", args.stream_above, "--out-format", args.format, *args.extra]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_run(tmp / "run", args.preset)
        for height, width in shapes:
            image = tmp / f"image_{height}x{width}.{'zarr' if args.format == 'zarr' else 'tif'}"
            write_test_image(image, height, width)
            row = {"height": height, "width": width, "megapixels": height * width / 1e6,
                   **measure(tmp / "run", image, tmp / f"out_{height}x{width}", flags)}
            row["seconds_per_megapixel"] = row["wall_seconds"] / row["megapixels"]
            rows.append(row)
            print(f"{height:>6} x {width:<6} {row['megapixels']:7.1f} MP   peak RSS {row['peak_rss_mb']:7.0f} MB   "
                  f"wall {row['wall_seconds']:8.1f} s   {row['seconds_per_megapixel']:.3f} s/MP", flush=True)
            shutil.rmtree(image) if image.is_dir() else image.unlink()
            shutil.rmtree(tmp / f"out_{height}x{width}")  # the next size gets the disk
    linearity = rows[-1]["seconds_per_megapixel"] / rows[0]["seconds_per_megapixel"]
    peak = max(r["peak_rss_mb"] for r in rows)
    print(f"s/MP last / first: {linearity:.2f} (1.0 = linear)   peak RSS {peak:.0f} MB (target < {TARGET_RSS_MB} MB)")
    if not args.no_save:
        save("predict_memory", {
            "note": args.note,
            "preset": args.preset,
            "format": args.format,
            "flags": flags,
            "rows": rows,
            "seconds_per_megapixel_ratio_last_to_first": linearity,
            "peak_rss_mb": peak,
            "target_peak_rss_mb": TARGET_RSS_MB,
        })


if __name__ == "__main__":
    main()
