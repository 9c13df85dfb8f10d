"""The long fuzz run: damaged files through the readers and `unetkit predict`.

    .venv/bin/python benchmarks/fuzz.py                      # 1000 reader cases, 300 run folders, 100 CLI cases
    .venv/bin/python benchmarks/fuzz.py --cases 30 --run-cases 30 --cli-cases 30   # the short run in docs/RESULTS.md
    .venv/bin/python benchmarks/fuzz.py --cases 50 --cli-cases 5 --no-save   # a quick check

Counts each case's outcome: valid output, one-line UserError, traceback (any
other exception or a malformed error) or hang (past the time limit), and,
from a sha256 of every input file before and after the case (the damaged
image; for `unetkit predict` the run folder too; for run folders every file
of the run), how many inputs were modified and how many files were lost.
Saves dated JSON under benchmarks/results/. The bounded version runs in CI
as tests/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402
from fuzzing import Hang, changes, damage_run, fingerprint, load_run_outcome, mutate, read_outcome, seeds, time_limit  # noqa: E402
from unetkit import DataConfig, create_model  # noqa: E402
from unetkit.checkpoint import save_config, save_train_state, save_weights  # noqa: E402
from unetkit.cli import main as cli  # noqa: E402

NAMES = ["bild ü 01", "scan 2", "séction_03", "x"]


# A case returns (outcome, inputs modified, files lost).
Outcome = tuple[str, int, int]


def reader_case(folder: Path, suffix: str, data: bytes, case: int) -> Outcome:
    path = folder / f"{NAMES[case % len(NAMES)]}{suffix}"
    path.write_bytes(mutate(data, np.random.default_rng(case)))
    before = fingerprint(folder)
    with time_limit(20):
        outcome = read_outcome(path)
    return outcome, *changes(before, fingerprint(folder))


def cli_case(folder: Path, run: Path, suffix: str, data: bytes, case: int) -> Outcome:
    (folder / "in").mkdir()
    path = folder / "in" / f"{NAMES[case % len(NAMES)]}{suffix}"
    path.write_bytes(mutate(data, np.random.default_rng(case)))
    before = fingerprint(folder / "in", run)  # the image and the run it is predicted with
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), time_limit(60):
        code = cli(["predict", str(run), str(folder / "in"), "--out", str(folder / "out")])
    errors = [line for line in err.getvalue().splitlines() if line.startswith("unetkit ")]
    if code not in (0, 2) or (code == 2 and len(errors) != 1):
        raise AssertionError(f"exit {code}: {err.getvalue()!r}")
    leftovers = list((folder / "out").glob(".*")) if (folder / "out").exists() else []
    if leftovers:
        raise AssertionError(f"temporary files left: {leftovers}")
    return ("ok" if code == 0 else "user_error"), *changes(before, fingerprint(folder / "in", run))


def run_folder_case(folder: Path, suffix: str, data: bytes, case: int) -> Outcome:
    """A run folder with one file damaged (config, weights or training state) must load or fail in one line."""
    import torch

    make_run(folder)
    save_train_state(folder, {"loop": {"step": 3}, "rng": torch.get_rng_state()})
    damage_run(folder, np.random.default_rng(case))
    before = fingerprint(folder)  # the damaged run as the user has it: loading must leave every file alone
    with time_limit(20):
        outcome = load_run_outcome(folder)
    return outcome, *changes(before, fingerprint(folder))


def make_run(folder: Path) -> Path:
    model = create_model("tiny")
    save_config(folder, model.config, DataConfig())
    save_weights(folder, model)
    return folder


def run_cases(count: int, one_case, start: int = 0) -> dict:
    table, failures = Counter(), []
    sources = seeds()
    names = sorted(sources)
    for case in range(start, start + count):
        suffix, data = sources[names[case % len(names)]]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                outcome, modified, lost = one_case(Path(tmp), suffix, data, case)
                table[outcome] += 1
                table["input_modified"] += modified
                table["files_lost"] += lost
            except Hang:
                table["hang"] += 1
                failures.append((case, "hang"))
            except Exception:  # noqa: BLE001 - counting them is the point
                table["traceback"] += 1
                failures.append((case, traceback.format_exc(limit=3)))
    keys = ("ok", "user_error", "traceback", "hang", "input_modified", "files_lost")
    return {"cases": count, **{k: table.get(k, 0) for k in keys},
            "failures": failures[:20]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="reader cases")
    parser.add_argument("--cli-cases", type=int, default=100, help="`unetkit predict` cases")
    parser.add_argument("--run-cases", type=int, default=300, help="damaged run folders loaded")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    readers = run_cases(args.cases, reader_case)
    runs = run_cases(args.run_cases, run_folder_case, start=2 * 10**6)
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        commands = run_cases(args.cli_cases, lambda folder, *rest: cli_case(folder, run, *rest), start=10**6)
    print(f"{'target':<16} {'cases':>6} {'ok':>6} {'UserError':>10} {'traceback':>10} {'hang':>5} {'inputs modified':>16}"
          f" {'files lost':>11}")
    for name, r in (("read_image/mask", readers), ("run folders", runs), ("unetkit predict", commands)):
        print(f"{name:<16} {r['cases']:>6} {r['ok']:>6} {r['user_error']:>10} {r['traceback']:>10} {r['hang']:>5}"
              f" {r['input_modified']:>16} {r['files_lost']:>11}")
        for case, text in r["failures"]:
            print(f"  case {case}: {text}")
    if not args.no_save:
        save("fuzz", {"readers": readers, "run_folders": runs, "predict_cli": commands, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
