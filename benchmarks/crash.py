"""The long crash run: SIGKILL training and prediction at random moments, many times.

    .venv/bin/python benchmarks/crash.py                       # 20 training kills + 10 prediction kills
    .venv/bin/python benchmarks/crash.py --train-kills 2 --predict-kills 1 --no-save

After every kill, each file under a final name must load (weights, config,
state, metrics, predicted images); training resumes with `--resume` until it
ends, and must end with the weights of an uninterrupted run (deterministic
mode). The short version runs in CI as tests/test_crash.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402
from crashing import crash_prediction, crash_training, kill_after, make_data, train_command, weights_equal  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-kills", type=int, default=20)
    parser.add_argument("--predict-kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_data(tmp / "data")
        steps = 400 * args.train_kills  # long enough that every kill lands mid-run
        kill_after(train_command(data, tmp / "straight", resume=False, steps=steps), 3600)
        train_kills = crash_training(data, tmp / "crashed", args.train_kills, rng, max_delay=6.0, steps=steps)
        same = weights_equal(tmp / "straight", tmp / "crashed")
        many = make_data(tmp / "many", count=40, side=256)  # enough images that prediction runs for seconds
        predict_kills = crash_prediction(tmp / "crashed", many / "images", tmp / "out", args.predict_kills, rng, 8.0)
    # A file under a final name that failed to load would have stopped the run with its traceback.
    result = {"train_kills": train_kills, "predict_kills": predict_kills,
              "resumed_equals_uninterrupted": same, "seconds": time.perf_counter() - start}
    print(f"training killed {train_kills} times, prediction {predict_kills} times; every file under a final name "
          f"loaded after each kill; resumed weights {'equal' if same else 'DIFFER FROM'} the uninterrupted run")
    if not same:
        sys.exit(1)
    if not args.no_save:
        save("crash", {**result, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
