"""The long crash run: SIGKILL training and prediction many times, each kill aimed at a progress signal.

    .venv/bin/python benchmarks/crash.py                       # 20 training kills + 10 prediction kills
    .venv/bin/python benchmarks/crash.py --train-kills 4 --predict-kills 2 --no-save

Training: a fresh run is killed right after its first checkpoint, then each
resumed child either mid-write of a file (model.safetensors, train_state.pt,
metrics.csv in turn: a temporary file of its atomic write present) or 7 steps
after it resumed (7 and the 10-step epoch are coprime: the kills walk round
the epoch). Prediction: mid-write of an output (labels, probabilities,
overlay in turn) or after N outputs. After every kill, each file under a
final name must load (weights, config, state, curves, metrics, predicted
images); training resumes with `--resume` until it ends, and must end with
the weights of an uninterrupted run (deterministic mode). The table says
where each kill landed and how often the child was frozen to check first
(`stops`: a moment that passed before the freeze lands there). The harness
is tests/crashing.py; the short version runs in CI as tests/test_crash.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save
from crashing import (
    AfterFirstCheckpoint,
    AfterOutputs,
    AtStep,
    MidWrite,
    crash_prediction,
    crash_training,
    make_data,
    straight_run,
    weights_equal,
)

RUN_FILES = ("model.safetensors", "train_state.pt", "metrics.csv")  # written every step, step, epoch
OUTPUTS = ("*_labels.png", "*_probs.tif", "*_overlay.png")
PREDICTED_IMAGES = 40


def training_triggers(kills: int) -> list:
    writes = itertools.cycle(RUN_FILES)
    return [AfterFirstCheckpoint()] + [MidWrite(of=(next(writes),)) if i % 2 else AtStep(7) for i in range(1, kills)]


def prediction_triggers(kills: int) -> list:
    writes, counts = itertools.cycle(OUTPUTS), itertools.cycle((1, 5, 20, PREDICTED_IMAGES - 1))
    return [MidWrite(of=(next(writes),)) if i % 2 == 0 else AfterOutputs(next(counts)) for i in range(kills)]


def print_table(title: str, kills: list) -> None:
    print(f"\n{title}\n| # | aimed | landed | detail | stops |\n| ---: | --- | --- | --- | ---: |")
    for number, kill in enumerate(kills, 1):
        print(f"| {number} | {kill.intended} | {kill.landed} | {kill.detail} | {kill.stops} |")
    tally = Counter(kill.landed for kill in kills)
    hits = sum(kill.hit for kill in kills)
    print(f"landed where aimed: {hits} of {len(kills)}; " + ", ".join(f"{k}: {n}" for k, n in tally.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-kills", type=int, default=20)
    parser.add_argument("--predict-kills", type=int, default=10)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        steps = 15 * args.train_kills  # a kill takes 1-10 steps (metrics.csv is written once an epoch): margin
        data, _ = straight_run(tmp, steps)
        train_kills = crash_training(data, tmp / "crashed", training_triggers(args.train_kills), steps)
        same = weights_equal(tmp / "straight", tmp / "crashed")
        many = make_data(tmp / "many", count=PREDICTED_IMAGES, side=128)
        predict_kills = crash_prediction(tmp / "crashed", many / "images", tmp / "out", prediction_triggers(args.predict_kills))
        outputs = len(list((tmp / "out").glob("*_labels.png")))
    # A file under a final name that failed to load would have stopped the run with its traceback.
    print_table("training", train_kills)
    print_table("prediction", predict_kills)
    kills = train_kills + predict_kills
    print(f"\nafter every kill each file under a final name loaded; resumed weights "
          f"{'equal' if same else 'DIFFER FROM'} the uninterrupted run; {outputs} of {PREDICTED_IMAGES} outputs at the end")
    result = {"train_steps": steps, "train_kills": [dataclasses.asdict(k) for k in train_kills],
              "predict_kills": [dataclasses.asdict(k) for k in predict_kills],
              "landed_where_aimed": sum(k.hit for k in kills), "kills": len(kills),
              "resumed_equals_uninterrupted": same, "outputs": outputs, "seconds": time.perf_counter() - start}
    if not args.no_save:
        save("crash", {**result, "command": " ".join(sys.argv)})
    if not same or outputs != PREDICTED_IMAGES or not all(k.hit for k in kills):
        sys.exit(1)


if __name__ == "__main__":
    main()
