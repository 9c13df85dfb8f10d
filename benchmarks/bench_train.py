"""Training speed side by side: samples/s of whole runs, and where a step's time goes.

Each contender trains in its own process on ISBI 2012 (sections 00-24; 25-29
validate, as in accuracy_isbi.py) for the same wall-clock budget through
`unetkit.train`, one after the other, in one invocation:

- `release`: the previous release's own code (commit RELEASE, extracted by
  `git archive` and run through its `unetkit train` command), the samples/s
  issue 17 started from, measured again on today's machine;
- `before`: today's code with the previous release's defaults: fp32,
  contiguous tensors, validation after every epoch, glibc's default malloc
  (it has this wave's faster data pipeline, so it is the stricter baseline);
- `default`: the default preset with today's defaults (bf16 autocast where the
  CPU has it natively, channels_last, validation within 5% of the time,
  freed memory kept);
- `default-val10`: the same validating within 10% of the time, as sessions
  6-9 did (what the 5% share adds);
- `default-worker`: the same with one DataLoader worker, which crops and
  augments the next batches beside the step;
- `monai-UNet`, `monai-BasicUNet`: MONAI's networks through the same loop with
  today's defaults (pip install -r benchmarks/requirements.txt);
  `monai-UNet-fp32`: without bf16 and channels_last, to tell which is its fastest.

Samples/s counts every second of `fit` (validation and checkpoints
included); the breakdown times forward, backward and optimizer on one fixed
batch, and reads the data and validation shares off the run's metrics.csv
(the release's does not time validation: its share is everything outside the
steps).

    .venv/bin/python benchmarks/bench_train.py                        # 3 min each (~14 min)
    .venv/bin/python benchmarks/bench_train.py --minutes 0.3 --only before default   # a quick check

Target (issue 17): `default` >= 2.5x the samples/s of `release` (and of `before`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012" / "train"
HELD_OUT = ("25", "26", "27", "28", "29")
BEFORE = {"cpu_bf16": False, "channels_last": False, "val_share": 1.0}  # the previous release's settings
RELEASE = "fa2f23d"  # the last commit of the previous release (wave 1)
CONTENDERS = {"release": ("default", BEFORE), "before": ("default", BEFORE), "default": ("default", {}),
              "default-val10": ("default", {"val_share": 0.1}), "default-worker": ("default", {"workers": 1}),
              "monai-UNet": ("monai-UNet", {}), "monai-UNet-fp32": ("monai-UNet", {"cpu_bf16": False, "channels_last": False}),
              "monai-BasicUNet": ("monai-BasicUNet", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ISBI)
    parser.add_argument("--minutes", type=float, default=3.0, help="training time per contender")
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.data / "images").is_dir():
        sys.exit(f"no images at {args.data / 'images'}: pass --data")
    if args.child:
        print(json.dumps(measure(args.child, args.data, args.minutes)))
        return
    results = {}
    for name in args.only:  # one fresh process each: the allocator setting is process-wide
        child = [sys.executable, __file__, "--child", name, "--data", str(args.data), "--minutes", str(args.minutes)]
        results[name] = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{name}: {results[name]['samples_per_s']:.1f} samples/s", flush=True)
    print_table(results)
    save("bench_train", {"minutes": args.minutes, "results": results, "command": " ".join(sys.argv)})


def measure(name: str, data: Path, minutes: float) -> dict:
    """Train `name` for `minutes`, then time its step's parts; runs in a child process."""
    import unetkit
    from unetkit.training import api

    network, overrides = CONTENDERS[name]
    if name == "release":
        return {**measure_release(data, minutes), **step_parts(network, overrides)}
    if name == "before":
        api.keep_freed_memory = lambda: None  # glibc's default allocator, as the previous release had
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        unetkit.train(data / "images", data / "labels", run, time_budget=minutes, val_names=HELD_OUT,
                      build_model=builder(network), progress=False, **overrides)
        figures = run_figures(run)
    return {**figures, **step_parts(network, overrides)}


def measure_release(data: Path, minutes: float) -> dict:
    """Train with the previous release's code through its own CLI; its whole-run figures."""
    with tempfile.TemporaryDirectory() as tmp:
        code, run = Path(tmp) / "release", Path(tmp) / "run"
        code.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", RELEASE, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        command = [sys.executable, "-m", "unetkit", "train", "--images", str(data / "images"), "--masks", str(data / "labels"),
                   "--out", str(run), "--time-budget", str(minutes), "--val-names", *HELD_OUT, "--quiet"]
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(code / "src")})
        return {**run_figures(run), "code": RELEASE}


def run_figures(run: Path) -> dict:
    """Whole-run figures off a run's metrics.csv and train_state.pt (today's layout or the release's).

    The release validated after every epoch without timing it: its validation
    share is then everything outside the steps, one validation per row.
    """
    import torch

    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    elapsed = torch.load(run / "train_state.pt", weights_only=True)["loop"]["elapsed"]
    stepped = [(r, float(r["step_s"]) * _steps(rows, i)) for i, r in enumerate(rows) if r.get("step_s")]
    validations = [float(r["val_s"]) for r in rows if r.get("val_s")]
    timed = "val_s" in rows[0]
    steps = int(rows[-1]["step"])
    return {"steps": steps, "fit_s": elapsed, "samples_per_s": steps * 4 / elapsed,
            "validations": len(validations) if timed else len(rows),
            "validation_share": (sum(validations) if timed else elapsed - sum(t for _, t in stepped)) / elapsed,
            "data_share": sum(float(r["data_share"]) * t for r, t in stepped) / elapsed}


def _steps(rows: list[dict], i: int) -> int:
    return int(rows[i]["step"]) - (int(rows[i - 1]["step"]) if i else 0)


def builder(network: str):
    if network == "default":
        from unetkit import UNet

        return UNet
    from accuracy_isbi import CONTENDERS as PEERS

    return PEERS[network][1]


def step_parts(network: str, overrides: dict, repeats: int = 10) -> dict:
    """Median seconds of forward, backward and optimizer on one batch of 4 x 256^2, as training runs them."""
    import torch

    from unetkit import RunConfig
    from unetkit.devices import autocast_dtype, training_memory_format
    from unetkit.model import make_loss, preset_config

    run = RunConfig(**{k: v for k, v in overrides.items() if k != "val_share"})
    fmt, amp = training_memory_format(run), autocast_dtype(run, torch.device("cpu"))
    net = builder(network)(preset_config("default", n_classes=2)).to(memory_format=fmt)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = make_loss("ce", class_weights=torch.tensor([1.0, 3.0]))
    image = torch.randn(4, 1, 256, 256).contiguous(memory_format=fmt)
    mask, weight = torch.randint(0, 2, (4, 256, 256)), torch.rand(4, 256, 256) + 1
    times = {"forward_s": [], "backward_s": [], "optimizer_s": []}
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            logits = net(image)
        loss = loss_fn(logits.float(), mask, weight)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if i >= 3:  # warmed up
            for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[key].append(seconds)
    return {key: statistics.median(values) for key, values in times.items()}


def print_table(results: dict) -> None:
    base = results.get("release", results.get("before", {})).get("samples_per_s")
    print(f"\n{'contender':<16} {'steps':>6} {'samples/s':>10} {'x base':>9} {'fwd ms':>7} {'bwd ms':>7} "
          f"{'opt ms':>7} {'data':>6} {'valid.':>7}")
    for name, r in results.items():
        ratio = f"{r['samples_per_s'] / base:.2f}" if base else "-"
        print(f"{name:<16} {r['steps']:>6} {r['samples_per_s']:>10.1f} {ratio:>9} {r['forward_s'] * 1e3:>7.0f} "
              f"{r['backward_s'] * 1e3:>7.0f} {r['optimizer_s'] * 1e3:>7.0f} {r['data_share']:>6.1%} "
              f"{r['validation_share']:>7.1%} ({r['validations']})")


if __name__ == "__main__":
    main()
