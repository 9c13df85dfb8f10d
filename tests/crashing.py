"""Crash harness shared by tests/test_crash.py (short, in CI) and benchmarks/crash.py (long runs).

Starts `unetkit train` / `unetkit predict` as a child process, kills it with
SIGKILL after a random delay, and checks what a crash must never do: leave a
file under its final name that does not load, or lose a finished output.
Training is then resumed with `--resume` until it completes; it must end
with the weights of an uninterrupted run (deterministic mode, CPU).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from unetkit.checkpoint import load_run, load_train_state
from unetkit.io import read_image
from unetkit.synthetic import write_dataset

STEPS = 300
TRAIN_FLAGS = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--save-every", "5",
               "--deterministic", "--quiet", "--val-names", "05"]


def make_data(folder: Path, count: int = 6, side: int = 48) -> Path:
    return write_dataset(folder, count=count, shape=(side, side), seed=1)


def train_command(data: Path, run: Path, resume: bool, steps: int = STEPS) -> list[str]:
    command = [sys.executable, "-m", "unetkit", "train", "--images", str(data / "images"), "--masks", str(data / "labels"),
               "--out", str(run), "--steps", str(steps), *TRAIN_FLAGS]
    return command + ["--resume"] if resume else command


def kill_after(command: list[str], delay: float) -> int | None:
    """Run `command`, SIGKILL it after `delay` seconds; its exit code if it finished first, else None."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        child.wait(timeout=delay)
        if child.returncode != 0:
            raise AssertionError(f"{' '.join(command[:4])} failed: {child.stderr.read().decode()[-1500:]}")
        return 0
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        return None
    finally:
        child.stderr.close()


def check_run_folder(run: Path) -> None:
    """Every file under a final name loads: weights, config, state, metrics."""
    if not (run / "config.json").exists():
        assert not (run / "model.safetensors").exists(), "weights without a config"
        return
    json.loads((run / "config.json").read_text())
    if (run / "model.safetensors").exists():
        load_run(run, "last")
    if (run / "best.safetensors").exists():
        load_run(run, "best")
    load_train_state(run)
    if (run / "metrics.csv").exists():
        lines = (run / "metrics.csv").read_text().splitlines()
        assert all(line.count(",") == lines[0].count(",") for line in lines), "torn metrics.csv"


def check_predictions(out: Path) -> None:
    """Every output under a final name is a whole image or JSON."""
    if not out.exists():
        return
    for path in out.iterdir():
        if path.name.startswith("."):
            continue  # a temporary file of the killed process: never a final name
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            read_image(path)


def finished(run: Path, steps: int) -> bool:
    return (run / "train_state.pt").exists() and load_train_state(run)["loop"]["step"] >= steps


def crash_training(data: Path, run: Path, kills: int, rng: np.random.Generator, max_delay: float = 8.0,
                   steps: int = STEPS) -> int:
    """Kill training up to `kills` times at random moments, resuming each time; finish; return kills made."""
    made = 0
    while made < kills and not finished(run, steps):
        command = train_command(data, run, (run / "config.json").exists(), steps)
        made += kill_after(command, rng.uniform(1.0, max_delay)) is None
        check_run_folder(run)
    while not finished(run, steps):
        kill_after(train_command(data, run, (run / "config.json").exists(), steps), 600)
    check_run_folder(run)
    return made


def crash_prediction(run: Path, images: Path, out: Path, kills: int, rng: np.random.Generator, max_delay: float = 4.0) -> int:
    """Kill prediction up to `kills` times (3 x kills tries), checking the outputs each time; finish; return kills made."""
    command = [sys.executable, "-m", "unetkit", "predict", str(run), str(images), "--out", str(out)]
    made = 0
    for _ in range(3 * kills):
        if made == kills:
            break
        made += kill_after(command, rng.uniform(0.5, max_delay)) is None
        check_predictions(out)
    assert kill_after(command, 600) == 0
    check_predictions(out)
    return made


def weights_equal(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(bool((left[k] == right[k]).all()) for k in left)

