"""Finished `accuracy_datasets.py` unetkit runs scored again with their best and with their last weights.

`unetkit predict` uses a run's best weights (the highest validation mean IoU);
with a handful of validation images that pick can be noise. This predicts
each run's test files with both and scores them as the benchmark does. Each
argument is OUT:DATASET[:OPTIONS], OUT being the benchmark's `--out` and
OPTIONS its `--set` items joined by "-" as in the run folder's name:

    .venv/bin/python benchmarks/datasets_weights.py runs/accuracy_datasets:amazon_forest runs/inst:amazon_forest:norm=instance
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_datasets as benchmark  # noqa: E402
from common import save  # noqa: E402
from unetkit.prediction import PredictConfig, predict_files  # noqa: E402


def rescore(out: Path, dataset: str, options: str) -> dict:
    data, run = benchmark.split_folders(dataset, out), benchmark.unetkit_run_dir(out, dataset, options)
    entry = {"run": str(run), "options": options, **benchmark.run_facts(run)}
    for weights in ("best", "last"):
        predictions = out / dataset / f"{run.name}-{weights}-predictions"
        predict_files(run, [data["test"][0]], predictions, PredictConfig(weights=weights))
        entry[weights] = benchmark.score(dataset, predictions, data, run)
    return entry


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = {}
    for argument in sys.argv[1:]:
        out, dataset, options = (argument.split(":", 2) + [""])[:3]
        entry = rescore(Path(out), dataset, options)
        results.setdefault(dataset, []).append(entry)
        print(f"{dataset} {options or 'plan'}: best {entry['best']}, last {entry['last']}", flush=True)
    save("accuracy_datasets-weights", {"results": results, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
