"""Sharded prediction: `unetkit predict` on one process against `torchrun` with N, one thread each; the same bytes.

    .venv/bin/python benchmarks/bench_predict_ranks.py                            # full figures: 40 images 512 x 512, default preset
    .venv/bin/python benchmarks/bench_predict_ranks.py --images 4 --size 128      # a quick check

Writes `--images` synthetic EM sections (`unetkit.synthetic`) of `--size` x
`--size` pixels and an untrained run of `--preset` at its real width (speed
does not depend on the weights) under `--work` (default
runs/bench_predict_ranks). Then, `--repeats` times in turn, the command line
on one process and under `torchrun --standalone --nproc_per_node RANKS`, each
process with `--threads 1` (and OMP_NUM_THREADS=1), into a fresh output
folder. Reported: the wall time of the whole command (process start, imports
and the rendezvous included: what a user waits for) and images/s, the median
over the repeats; the same for a job of one image (the start-up), and the
rate past it, (images - 1) / (wall - start-up); and whether every file of each N-process job equals the
one-process job's, byte for byte. Saves JSON with machine info to benchmarks/results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(work: Path, preset: str, count: int, size: int) -> tuple[Path, Path]:
    """The run and the images (kept between calls of the same preset, count and size)."""
    import torch

    from unetkit import create_model
    from unetkit.checkpoint import save_config, save_weights
    from unetkit.config import DataConfig
    from unetkit.io import write_image
    from unetkit.synthetic import generate

    run, images = work / f"run_{preset}", work / f"images_{count}x{size}"
    if not (run / "model.safetensors").exists():
        torch.manual_seed(0)
        model = create_model(preset).eval()
        save_config(run, model.config, DataConfig())
        save_weights(run, model)
    if not images.is_dir():
        for i in range(count):
            write_image(images / f"em_{i:03d}.png", generate((size, size), seed=i)[0])
    return run, images


def predict(run: Path, images: Path, out: Path, ranks: int, extra: list[str]) -> float:
    """Wall seconds of one prediction job into a fresh `out`."""
    shutil.rmtree(out, ignore_errors=True)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    command = [sys.executable, *launcher, "-m", "unetkit", "predict", str(run), str(images), "--out", str(out), "--threads", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"predict on {ranks} process(es) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def differing_files(a: Path, b: Path) -> list[str]:
    """Output files (the job's records aside) that are missing from one folder or differ in a byte."""
    names = {p.name for folder in (a, b) for p in folder.iterdir() if p.is_file()}
    return sorted(n for n in names if not (a / n).exists() or not (b / n).exists() or (a / n).read_bytes() != (b / n).read_bytes())


def one_image(images: Path, folder: Path) -> Path:
    """A folder with the first image alone: its job times the start-up (imports, rendezvous, loading the run)."""
    folder.mkdir(parents=True, exist_ok=True)
    first = sorted(images.iterdir())[0]
    if not (folder / first.name).exists():
        shutil.copyfile(first, folder / first.name)
    return folder


def row(seconds: list[float], startup: list[float], images: int) -> dict:
    """Medians of the whole job and of the one-image job; the rate past start-up counts the other images."""
    wall, start = statistics.median(seconds), statistics.median(startup)
    return {
        "wall_seconds": wall,
        "images_per_second": images / wall,
        "startup_seconds": start,
        "images_per_second_past_startup": (images - 1) / (wall - start),
        "all": seconds,
        "all_startup": startup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--ranks", type=int, default=2, help="processes of the sharded job")
    parser.add_argument("--repeats", type=int, default=1, help="one-process and sharded jobs, in turn")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_predict_ranks")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `unetkit predict` flags")
    parser.add_argument("--note", default="", help="what this run measures, saved in the JSON")
    args = parser.parse_args()

    run, images = make_inputs(args.work, args.preset, args.images, args.size)
    one = one_image(images, args.work / "one_image")
    seconds: dict[int, list[float]] = {1: [], args.ranks: []}
    startup: dict[int, list[float]] = {1: [], args.ranks: []}
    differing = []
    for _ in range(args.repeats):
        for ranks in seconds:
            seconds[ranks].append(predict(run, images, args.work / f"out_{ranks}", ranks, args.extra))
            startup[ranks].append(predict(run, one, args.work / f"one_{ranks}", ranks, args.extra))
            print(f"{ranks} process(es): {seconds[ranks][-1]:.1f} s, one image {startup[ranks][-1]:.1f} s", flush=True)
        differing.append(differing_files(args.work / "out_1", args.work / f"out_{args.ranks}"))
    rows = {f"{ranks}_ranks": row(seconds[ranks], startup[ranks], args.images) for ranks in seconds}
    speedup = rows[f"{args.ranks}_ranks"]["images_per_second"] / rows["1_ranks"]["images_per_second"]
    past_startup = rows[f"{args.ranks}_ranks"]["images_per_second_past_startup"] / rows["1_ranks"]["images_per_second_past_startup"]
    identical = not any(differing)
    print(
        f"{args.images} images {args.size} x {args.size}, {args.preset}: "
        + "   ".join(f"{k.replace('_', ' ')} {v['images_per_second']:.2f} images/s" for k, v in rows.items())
        + f"   speed-up {speedup:.2f}x ({past_startup:.2f}x past start-up)   outputs identical: {identical}"
    )
    save(
        "bench_predict_ranks",
        {
            "note": args.note,
            "images": args.images,
            "size": args.size,
            "preset": args.preset,
            "threads_per_rank": 1,
            "flags": args.extra,
            "repeats": args.repeats,
            "rows": rows,
            "speedup": speedup,
            "speedup_past_startup": past_startup,
            "outputs_identical": identical,
            "differing_files": differing,
            "command": " ".join(sys.argv),
        },
    )


if __name__ == "__main__":
    main()
