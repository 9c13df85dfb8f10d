"""The final model on every image (`refit`): once the hold-out has measured the recipe, the recipe again on all files.

A small set loses real variety to its validation hold-out (6 of Amazon's 30
tiles). So the run in RUN trains on the training files and validates: its
scores are the honest estimate of the recipe. Then RUN/final trains the same
resolved recipe (patch, batch, learning rate, warm-up, seed) on every file
for the same number of steps, without validation, and RUN/final.json marks it
complete: loading RUN picks it from then on (`checkpoint.resolved_weights`).
Under a time budget the held-out run gets half and the final model the rest.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from ..checkpoint import CONFIG_FILE, FINAL_DIR, FINAL_MARK, STATE_FILE, read_config
from ..config import RunConfig, TrainConfig
from ..io import write_text
from .options import Recipe, stored_configs

REFIT_BUDGET_SHARE = 0.5  # of a time budget, for the held-out run


def held_out_minutes(run: RunConfig, train: TrainConfig) -> float | None:
    """The held-out run's share of the time budget: all of it, or REFIT_BUDGET_SHARE when a final model follows."""
    return run.time_budget * (REFIT_BUDGET_SHARE if train.refit else 1.0) if run.time_budget else None


def final_configs(out: Path, steps: int, elapsed_s: float) -> tuple[Recipe, RunConfig]:
    """The held-out run's stored recipe on every file for `steps` steps, within what its time budget left."""
    recipe, run = stored_configs(read_config(out), str(out / CONFIG_FILE))
    train = dataclasses.replace(recipe.train, refit=False, val_fraction=0.0, val_names=None, folds=None, fold=0)
    data = dataclasses.replace(recipe.data, class_weights=None)  # the loss's weights: counted again over every file
    left = None if run.time_budget is None else max(run.time_budget - elapsed_s / 60, 1 / 60)
    return Recipe(recipe.model, data, train), dataclasses.replace(run, steps=steps, epochs=None, time_budget=left)


def final_state(out: Path, steps: int) -> str:
    """"done", "resume" (RUN/final began for these steps) or "new"; a final model for another step count is removed."""
    mark, folder = out / FINAL_MARK, out / FINAL_DIR
    if mark.exists() and json.loads(mark.read_text()).get("steps") == steps:
        return "done"
    if (folder / STATE_FILE).exists() and read_config(folder).get("run", {}).get("steps") == steps:
        return "resume"
    mark.unlink(missing_ok=True)  # the held-out run went on (resumed with more steps): its final model is stale
    shutil.rmtree(folder, ignore_errors=True)
    return "new"


def mark_final(out: Path, steps: int) -> None:
    """RUN/final.json: the final model is complete (written last, atomically)."""
    split = read_config(out / FINAL_DIR).get("split", {})
    write_text(out / FINAL_MARK, json.dumps({"folder": FINAL_DIR, "steps": steps, "images": len(split.get("train", []))}) + "\n")
