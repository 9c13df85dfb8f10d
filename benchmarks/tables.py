"""The results tables of docs/RESULTS.md and README.md, rebuilt from the JSON files in benchmarks/results/.

    python benchmarks/tables.py                      # every table, markdown to stdout
    python benchmarks/tables.py isbi-stack isbi-mean # some of them
    python benchmarks/tables.py --write docs/RESULTS.md README.md   # refresh the marked blocks in place

A doc holds a table between `<!-- tables.py NAME -->` and `<!-- /tables.py -->`;
`tests/test_results_tables.py` checks that every such block is what this
script prints, so a figure in the docs is always the one in its JSON file.

ISBI figures come two ways (see `unetkit.evaluate`): "stack" pools the 5
held-out sections and picks ONE threshold for all of them, as the ISBI 2012
challenge scored its stack; "per-image mean" scores each section at its own
best threshold and averages, which flatters. Stack figures come first.
No unetkit import: plain JSON in, markdown out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {"unetkit-default": "unetkit `default`", "default": "`default` U-Net", "resnet18": "ResNet-18 encoder",
         "resnet34": "ResNet-34 encoder", "monai-UNet": "MONAI `UNet`", "monai-BasicUNet": "MONAI `BasicUNet`",
         "unetkit-default-stem2": "unetkit `fast` (`unetkit-default-stem2`)"}
LOWER_IS_BETTER = {"mean_iou": False, "mean_iou_5_classes": False, "mean_iou_all": False, "iou_non_forest": False, "ap": False, "ap_50": False}  # every other score: lower is better
ISBI_COLUMNS = [  # (heading, file role, key); role "scored" = the run's JSON, "tta" = its 8-pose rescore
    ("pixel error (p > 0.5)", "scored", "pixel_error"),
    ("pixel F error", "scored", "pixel_error_fscore"),
    ("Rand error", "scored", "rand_error"),
    ("warping error", "scored", "warping_error"),
    ("info error", "scored", "info_error"),
    ("mean IoU", "scored", "mean_iou"),
    ("pixel error, 8 poses", "tta", "pixel_error"),
    ("Rand error, 8 poses", "tta", "rand_error"),
]


@dataclasses.dataclass(frozen=True)
class PairedRun:
    """Models trained side by side in one command; `scored` holds every key, `tta` the same weights with 8 poses."""

    label: str
    scored: str
    tta: str | None = None
    trained: str | None = None  # the training JSON, when `scored` is a later --rescore of its weights


PAIRED = [
    PairedRun("fp32, seed 0", "accuracy_isbi-20261126-004021.json", "accuracy_isbi-20261126-000754.json",
              "accuracy_isbi-20261125-222443.json"),
    PairedRun("fp32, seed 1", "accuracy_isbi-20261126-003904.json", "accuracy_isbi-20261126-003937.json"),
    PairedRun("fp32, seed 2", "accuracy_isbi-20261126-012846.json", "accuracy_isbi-20261126-013140.json"),
    PairedRun("bf16, seed 0", "accuracy_isbi-20261126-004037.json", "accuracy_isbi-20261126-000837.json",
              "accuracy_isbi-20261125-231501.json"),
    PairedRun("fp32, seed 0, earlier run", "accuracy_isbi-20261125-203823.json"),
]
FP32_SEEDS = PAIRED[:3]
# Issue 17: the speed defaults (bf16 where native, channels_last, validation on a time share), one model per JSON:
# (model, settings, seed, JSON). Session 10 ran on another machine (`cpu_model` in its JSONs), with validation at 5%.
TEN_PERCENT, FIVE_PERCENT = "speed defaults, validation 10%", "speed defaults, validation 5%, session 10's machine"
SPEED_DEFAULTS = [("unetkit-default", TEN_PERCENT, 0, "accuracy_isbi-20261202-013831.json"),
                  ("unetkit-default", TEN_PERCENT, 1, "accuracy_isbi-20261202-015343.json"),
                  ("unetkit-default", TEN_PERCENT, 2, "accuracy_isbi-20261202-020855.json"),
                  ("monai-UNet", TEN_PERCENT, 0, "accuracy_isbi-20261202-022409.json"),
                  ("monai-UNet", TEN_PERCENT, 1, "accuracy_isbi-20261202-030727.json"),
                  ("monai-UNet", TEN_PERCENT, 2, "accuracy_isbi-20261202-093358.json"),
                  ("unetkit-default", FIVE_PERCENT, 0, "accuracy_isbi-20261202-131147.json"),
                  ("unetkit-default", FIVE_PERCENT, 1, "accuracy_isbi-20261202-132701.json"),
                  ("unetkit-default", FIVE_PERCENT, 2, "accuracy_isbi-20261202-134218.json")]
# The sweep that chose the default: (variant, contender name, JSON with its scores, note)
SWEEP = [
    ("`default`: width 16, depth 4, batch norm, same padding", "unetkit-default", "accuracy_isbi-20261125-191931.json", ""),
    ("width 24", "unetkit-default-w24", "accuracy_isbi-20261125-195146.json", ""),
    ("depth 5", "unetkit-default-depth5", "accuracy_isbi-20261125-193601.json", ""),
    ("instance norm", "unetkit-default-instance", "accuracy_isbi-20261125-193634.json", "rescored"),
    ("instance norm + residual blocks", "unetkit-default-instance-residual", "accuracy_isbi-20261125-193634.json", "rescored"),
    ("stride-2 stem, the `fast` preset", "unetkit-default-stem2", "accuracy_isbi-20261125-222443.json", "side by side"),
    ("stride-2 stem, width 24", "unetkit-default-stem2-w24", "accuracy_isbi-20261125-222443.json", "side by side"),
    ("stride-2 stem + residual blocks", "unetkit-default-stem2-residual", "accuracy_isbi-20261125-234027.json", ""),
    ("stride-2 stem + instance norm + residual blocks", "unetkit-default-stem2-instance-residual",
     "accuracy_isbi-20261126-014730.json", ""),
]
# Calibrated probabilities: the same weights scored before (first JSON) and after (second) the change.
CALIBRATION = [
    ("monai-UNet", "accuracy_isbi-20261125-172206.json", "accuracy_isbi-20261125-193634.json"),
    ("monai-BasicUNet", "accuracy_isbi-20261125-172206.json", "accuracy_isbi-20261125-193634.json"),
    ("unetkit-default-instance", "accuracy_isbi-20261125-184605.json", "accuracy_isbi-20261125-193634.json"),
    ("unetkit-default-instance-residual", "accuracy_isbi-20261125-190202.json", "accuracy_isbi-20261125-193634.json"),
]
LEAN = [("fp32, seed 0", "threshold_lean-20261126-004659.json"), ("fp32, seed 1", "threshold_lean-20261126-004715.json"),
        ("fp32, seed 2", "threshold_lean-20261126-013153.json"), ("bf16, seed 0", "threshold_lean-20261126-004743.json")]
SPEED = "predict_speed-20261126-005614.json"
MEMORY = "predict_memory-20261125-163619.json"
TRAIN = "bench_train-20261125-163641.json"
TRAIN_SIDE_BY_SIDE = ["bench_train-20261202-012029.json", "bench_train-20261202-024525.json", "bench_train-20261202-100451.json",
                      "bench_train-20261202-102752.json", "bench_train-20261202-125442.json", "bench_train-20261202-142848.json"]  # bench_train.py's side-by-side format (issue 17)
METRICS = "metrics-20261125-172414.json"
# Issue 13: benchmarks/accuracy_datasets.py, one invocation (JSON) per data set: data set -> JSON
HEADLINES = {"amazon_forest": ("iou_non_forest", "mean_iou"), "dubai_aerial": ("mean_iou_5_classes", "mean_iou_all"),
             "isbi2012": ("pixel_error", "rand_error", "warping_error"), "dsb2018": ("ap", "ap_50", "mean_iou")}
DATASETS_15 = {"amazon_forest": "accuracy_datasets-20261202-160747.json", "dubai_aerial": "accuracy_datasets-20261202-170212.json",
               "isbi2012": "accuracy_datasets-20261202-165333.json", "dsb2018": "accuracy_datasets-20261202-161047.json"}  # session 11, the 15 min
DATASETS_10 = {"amazon_forest": "accuracy_datasets-20261202-040101.json", "dubai_aerial": "accuracy_datasets-20261202-043629.json",
               "isbi2012": "accuracy_datasets-20261202-050704.json", "dsb2018": "accuracy_datasets-20261202-053957.json"}  # session 7
DATASET_KEYS = {"iou_non_forest": "IoU non-forest", "mean_iou": "mean IoU", "mean_iou_5_classes": "mean IoU, 5 classes", "mean_iou_all": "mean IoU, all 7 colours",
                "ap": "AP 0.5:0.95", "ap_50": "AP 0.5", "pixel_error": "pixel error", "rand_error": "Rand error", "warping_error": "warping error"}
# Issue 13, why unetkit loses where it does: `accuracy_datasets.py --only unetkit --set OPTION=VALUE ...`, one variant per JSON
# (data set, JSON, scores[, contender: a peer's run for comparison])
DATASET_VARIANTS = [("dsb2018", "accuracy_datasets-20261202-053957.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-091350.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-094656.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-101748.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-104853.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-104851.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-145553.json", ("ap", "ap_50", "mean_iou")),  # session 10's machine
                    ("dsb2018", "accuracy_datasets-20261202-145554.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-161047.json", ("ap", "ap_50", "mean_iou")),  # session 11, 15 min
                    ("dsb2018", "accuracy_datasets-20261202-171850.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261202-183430.json", ("ap", "ap_50", "mean_iou")),  # session 12, 15 min
                    ("dsb2018", "accuracy_datasets-20261202-183648.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-005933.json", ("ap", "ap_50", "mean_iou")),  # session 13, 15 min
                    ("dsb2018", "accuracy_datasets-20261203-010006.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-011851.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-011856.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-023706.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-023707.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-053457.json", ("ap", "ap_50", "mean_iou")),  # session 14, 15 min
                    ("dsb2018", "accuracy_datasets-20261203-053424.json", ("ap", "ap_50", "mean_iou"), "monai-UNet"),
                    ("dsb2018", "accuracy_datasets-20261203-075610.json", ("ap", "ap_50", "mean_iou"), "monai-BasicUNet"),
                    ("amazon_forest", "accuracy_datasets-20261202-040101.json", ("iou_non_forest",)),
                    ("amazon_forest", "accuracy_datasets-20261202-091245.json", ("iou_non_forest",)),
                    ("amazon_forest", "accuracy_datasets-20261202-094610.json", ("iou_non_forest",)),
                    ("amazon_forest", "accuracy_datasets-20261202-101646.json", ("iou_non_forest",)),
                    ("amazon_forest", "accuracy_datasets-20261202-105917.json", ("iou_non_forest",)),
                    ("amazon_forest", "accuracy_datasets-20261202-040101.json", ("iou_non_forest",), "monai-BasicUNet"),
                    ("amazon_forest", "accuracy_datasets-20261202-105931.json", ("iou_non_forest",), "monai-BasicUNet"),
                    ("amazon_forest", "accuracy_datasets-20261202-160747.json", ("iou_non_forest",)),  # session 11, 15 min
                    ("amazon_forest", "accuracy_datasets-20261202-170852.json", ("iou_non_forest",)),
                    ("dubai_aerial", "accuracy_datasets-20261202-170212.json", ("mean_iou_5_classes",)),
                    ("amazon_forest", "accuracy_datasets-20261203-071653.json", ("iou_non_forest",)),  # session 14, 15 min
                    ("amazon_forest", "accuracy_datasets-20261203-071653.json", ("iou_non_forest",), "monai-UNet"),
                    ("amazon_forest", "accuracy_datasets-20261203-071653.json", ("iou_non_forest",), "monai-BasicUNet"),
                    ("amazon_forest", "accuracy_datasets-20261203-072205.json", ("iou_non_forest",)),
                    ("dubai_aerial", "accuracy_datasets-20261202-172842.json", ("mean_iou_5_classes",)),
                    ("dubai_aerial", "accuracy_datasets-20261203-070329.json", ("mean_iou_5_classes",)),  # session 14, 15 min
                    ("dubai_aerial", "accuracy_datasets-20261203-070329.json", ("mean_iou_5_classes",), "monai-UNet"),
                    ("dubai_aerial", "accuracy_datasets-20261203-075706.json", ("mean_iou_5_classes",), "monai-BasicUNet"),
                    ("amazon_forest", "accuracy_datasets-20261203-082941-2.json", ("iou_non_forest",)),  # session 15, 15 min
                    ("isbi2012", "accuracy_datasets-20261203-082941.json", ("pixel_error", "rand_error", "warping_error")),
                    ("isbi2012", "accuracy_datasets-20261203-084657-2.json", ("pixel_error", "rand_error", "warping_error")),
                    ("isbi2012", "accuracy_datasets-20261203-084657.json", ("pixel_error", "rand_error", "warping_error")),
                    ("isbi2012", "accuracy_datasets-20261203-092637.json", ("pixel_error", "rand_error", "warping_error"), "monai-UNet"),
                    ("isbi2012", "accuracy_datasets-20261203-092645.json", ("pixel_error", "rand_error", "warping_error"), "monai-BasicUNet"),
                    ("dsb2018", "accuracy_datasets-20261203-090516.json", ("ap", "ap_50", "mean_iou")),  # per-channel colour jitter, dropped
                    ("dsb2018", "accuracy_datasets-20261203-090513.json", ("ap", "ap_50", "mean_iou")),
                    ("amazon_forest", "accuracy_datasets-20261203-094244.json", ("iou_non_forest",)),  # the plan of 7975813
                    ("amazon_forest", "accuracy_datasets-20261203-094242.json", ("iou_non_forest",), "monai-UNet"),
                    ("amazon_forest", "accuracy_datasets-20261203-100028.json", ("iou_non_forest",), "monai-BasicUNet"),
                    ("amazon_forest", "accuracy_datasets-20261203-100004.json", ("iou_non_forest",)),
                    ("amazon_forest", "accuracy_datasets-20261203-101758.json", ("iou_non_forest",)),
                    ("dsb2018", "accuracy_datasets-20261203-101856.json", ("ap", "ap_50", "mean_iou")),
                    ("amazon_forest", "accuracy_datasets-20261203-110715.json", ("iou_non_forest",)),  # session 16: stride-2 stem
                    ("amazon_forest", "accuracy_datasets-20261203-112502.json", ("iou_non_forest",)),
                    ("amazon_forest", "accuracy_datasets-20261203-114205.json", ("iou_non_forest",)),
                    ("dubai_aerial", "accuracy_datasets-20261203-110751.json", ("mean_iou_5_classes",)),
                    ("dubai_aerial", "accuracy_datasets-20261203-120154.json", ("mean_iou_5_classes",)),
                    ("dsb2018", "accuracy_datasets-20261203-112537.json", ("ap", "ap_50", "mean_iou")),  # (sigma 3.1)
                    ("dsb2018", "accuracy_datasets-20261203-114301.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-120238.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-122040.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-122039.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-124122.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-124121.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-125923.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-125844.json", ("ap", "ap_50", "mean_iou"), "monai-UNet"),
                    ("dsb2018", "accuracy_datasets-20261203-144256.json", ("ap", "ap_50", "mean_iou")),  # session 17: NHWC instance norm
                    ("dsb2018", "accuracy_datasets-20261203-144244.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-150049.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-150057.json", ("ap", "ap_50", "mean_iou")),
                    ("dsb2018", "accuracy_datasets-20261203-151715-2.json", ("ap", "ap_50", "mean_iou"), "monai-UNet"),
                    ("dsb2018", "accuracy_datasets-20261203-151715.json", ("ap", "ap_50", "mean_iou"), "monai-UNet"),
                    ("dsb2018", "accuracy_datasets-20261203-153711.json", ("ap", "ap_50", "mean_iou")),  # 95303fd: no class weights
                    ("dsb2018", "accuracy_datasets-20261203-153630.json", ("ap", "ap_50", "mean_iou"), "monai-UNet"),
                    ("dsb2018", "accuracy_datasets-20261203-155633.json", ("ap", "ap_50", "mean_iou"), "monai-BasicUNet"),
                    ("dsb2018", "accuracy_datasets-20261203-155638.json", ("ap", "ap_50", "mean_iou"), "monai-BasicUNet")]
# Session 10, on its machine: plan and `norm=instance` runs (10 min, one core, seed 0), each scored with its best and its
# last weights (`benchmarks/datasets_weights.py`; the first JSON was made by its first draft, same scoring)
DATASET_WEIGHTS = ["accuracy_datasets-weights-20261202-140847.json", "accuracy_datasets-weights-20261202-141713.json",
                   "accuracy_datasets-weights-20261203-070643.json"]  # session 14: the 15-min Amazon plan run, seed 1
FLIPS_ONLY = ("elastic_std", "rotate", "scale", "shift", "brightness", "contrast", "gamma", "noise", "blur")
ENCODERS = [("isbi2012", 1, "accuracy_encoders-scratch-20261202-075334.json", ("pixel_error", "rand_error")),
            ("dsb2018", 3, "accuracy_encoders-scratch-20261202-075334.json", ("mean_iou", "pixel_error")),
            ("dubai_aerial", 3, "accuracy_encoders-scratch-20261202-071256.json", ("mean_iou", "pixel_error"))]  # accuracy_encoders.py scratch (issue 14): data set, channels, JSON, scores
ENCODER_SPEED = "accuracy_encoders-speed-20261202-080153.json"  # each model alone on a quiet machine, one thread
ENCODER_MODELS = ["default", "resnet18", "resnet34"]
TRANSFER = "accuracy_encoders-transfer-20261202-075851.json"  # accuracy_encoders.py transfer --pair synthetic-isbi
FUZZ = ["fuzz-20261201-213537.json", "fuzz-20261201-213444.json"]  # the full run, the short check (measured files)
CRASH = "crash-20261125-173740.json"


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def model_name(name: str) -> str:
    return NAMES.get(name, f"`{name}`")


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(headings, right_from: int, right_to: int | None = None) -> list[str]:
    """A markdown header; columns `right_from` to `right_to` (default: the last) are right-aligned (numbers)."""
    right = range(right_from, len(headings) if right_to is None else right_to + 1)
    rule = ["---:" if i in right else "---" for i in range(len(headings))]
    return [row(headings), row(rule)]


def bold_best(values: list, key: str) -> list[str]:
    """Formatted values, the best of the group (at 4 decimals, ties included) in bold."""
    texts = [fmt(v) for v in values]
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return texts
    best = fmt(min(known) if LOWER_IS_BETTER.get(key, True) else max(known))
    return [f"**{t}**" if t == best else t for t in texts]


# --------------------------------------------------------------------------- ISBI, side by side


def isbi_scores(run: PairedRun, part: str) -> dict[str, dict]:
    """name -> {(role, key): value, "steps": ...} for one paired run and part ("stack" or "mean")."""
    files = {"scored": load(run.scored)["results"], "tta": load(run.tta)["results"] if run.tta else {}}
    scores = {}
    for name, result in files["scored"].items():
        values = {(role, key): files[role].get(name, {}).get(part, {}).get(key) for _, role, key in ISBI_COLUMNS}
        scores[name] = {**values, "steps": result["train_steps"]}
    return scores


def isbi_table(part: str) -> list[str]:
    lines = header(["run", "model", "steps in 15 min"] + [h for h, _, _ in ISBI_COLUMNS], right_from=2)
    for run in PAIRED:
        scores = isbi_scores(run, part)
        columns = [bold_best([s[(role, key)] for s in scores.values()], key) for _, role, key in ISBI_COLUMNS]
        for i, (name, s) in enumerate(scores.items()):
            lines.append(row([run.label if i == 0 else "", model_name(name), f"{s['steps']:,}"] + [c[i] for c in columns]))
    return lines


def isbi_sources() -> list[str]:
    lines = header(["run", "scores (JSON)", "8 poses (JSON)", "trained by", "command"], right_from=99)
    for run in PAIRED:
        trained = run.trained or run.scored
        lines.append(row([run.label, f"`{run.scored}`", f"`{run.tta}`" if run.tta else "none",
                          f"`{trained}`", f"`{load(trained)['command']}`"]))
    return lines


def ranking(scores: dict[str, dict], key: tuple[str, str]) -> str:
    """'a 0.0401 < b 0.0422 < ...' for one score of one paired run."""
    ordered = sorted((s[key], name) for name, s in scores.items() if s[key] is not None)
    return " < ".join(f"{model_name(name)} {fmt(value)}" for value, name in ordered) or "n/a"


def isbi_rand_ranking() -> list[str]:
    lines = header(["run", "Rand error, stack", "Rand error, per-image mean", "Rand error, 8 poses, stack",
                    "Rand error, 8 poses, per-image mean"], right_from=99)
    for run in PAIRED:
        stack, mean = isbi_scores(run, "stack"), isbi_scores(run, "mean")
        cells = [ranking(part, (role, "rand_error")) for role in ("scored", "tta") for part in (stack, mean)]
        lines.append(row([run.label] + cells))
    return lines


def isbi_seed_means() -> list[str]:
    """Mean (and range) over the three fp32 seeds of the two models every one of them trained."""
    columns = [("pixel error (p > 0.5)", "stack", ("scored", "pixel_error")),
               ("pixel F error, stack", "stack", ("scored", "pixel_error_fscore")),
               ("Rand error, stack", "stack", ("scored", "rand_error")),
               ("warping error, stack", "stack", ("scored", "warping_error")),
               ("info error, stack", "stack", ("scored", "info_error")),
               ("Rand error, 8 poses, stack", "stack", ("tta", "rand_error")),
               ("Rand error, per-image mean", "mean", ("scored", "rand_error")),
               ("Rand error, 8 poses, per-image mean", "mean", ("tta", "rand_error"))]
    lines = header(["model"] + [c[0] for c in columns], right_from=1)
    for name in ("unetkit-default", "monai-UNet"):
        cells = []
        for _, part, key in columns:
            values = [isbi_scores(run, part)[name][key] for run in FP32_SEEDS]
            cells.append(f"{fmt(statistics.mean(values))} ({fmt(min(values))}-{fmt(max(values))})")
        lines.append(row([model_name(name)] + cells))
    return lines


def isbi_speed_defaults() -> list[str]:
    """The 15-minute runs with the speed defaults beside the three fp32 seeds of the previous release."""
    keys = [("pixel error (p > 0.5)", "stack", "pixel_error"), ("Rand error, stack", "stack", "rand_error"),
            ("warping error, stack", "stack", "warping_error"), ("Rand error, per-image mean", "mean", "rand_error")]
    lines = header(["model", "settings", "seed", "steps"] + [k[0] for k in keys] + ["JSON"], right_from=2)
    seeds = {}  # (model, settings) -> its runs, for the means
    for name, settings, seed, file in SPEED_DEFAULTS:
        r = load(file)["results"][name]
        seeds.setdefault((name, settings), []).append(r)
        lines.append(row([model_name(name), settings, seed, f"{r['train_steps']:,}"]
                         + [fmt(r[part][key]) for _, part, key in keys] + [f"`{file}`"]))
    for (name, settings), runs in seeds.items():
        lines.append(row([model_name(name), settings, f"mean of {len(runs)}",
                          f"{statistics.mean(r['train_steps'] for r in runs):,.0f}"]
                         + [fmt(statistics.mean(r[part][key] for r in runs)) for _, part, key in keys] + [""]))
    for name in ("unetkit-default", "monai-UNet"):
        for seed, run in enumerate(FP32_SEEDS):
            r = load(run.trained or run.scored)["results"][name]
            scores = isbi_scores(run, "stack")[name], isbi_scores(run, "mean")[name]
            lines.append(row([model_name(name), "previous (fp32)", seed, f"{r['train_steps']:,}"]
                             + [fmt(scores[part == "mean"][("scored", key)]) for _, part, key in keys] + [f"`{run.scored}`"]))
    return lines


# --------------------------------------------------------------------------- the README's short table


def summary() -> list[str]:
    """A few rows, stack first: the three fp32 seeds' means, the bf16 run, each model once."""
    lines = header(["model", "runs", "Rand error, stack", "Rand error, stack, 8 poses", "warping error, stack",
                    "pixel error (p > 0.5)", "Rand error, per-image mean"], right_from=2)
    keys = [("stack", ("scored", "rand_error")), ("stack", ("tta", "rand_error")), ("stack", ("scored", "warping_error")),
            ("stack", ("scored", "pixel_error")), ("mean", ("scored", "rand_error"))]
    groups = [("fp32, seeds 0-2 (mean)", FP32_SEEDS, ("unetkit-default", "monai-UNet")),
              ("fp32, seed 0", FP32_SEEDS[:1], ("monai-BasicUNet",)),
              ("bf16, seed 0", [PAIRED[3]], ("unetkit-default", "monai-UNet", "monai-BasicUNet"))]
    for label, runs, names in groups:
        for name in names:
            cells = [fmt(statistics.mean(isbi_scores(run, part)[name][key] for run in runs)) for part, key in keys]
            lines.append(row([model_name(name), label] + cells))
    return lines


# --------------------------------------------------------------------------- the variant sweep, calibration, lean


def sweep_table() -> list[str]:
    lines = header(["variant", "parameters", "steps in 15 min", "pixel error (p > 0.5)", "Rand error, stack",
                    "rank by stack Rand", "warping error, stack", "info error, stack", "mean IoU, stack",
                    "Rand error, per-image mean", "s / 512^2 image (eager)", "JSON"], right_from=1, right_to=10)
    results = [load(file)["results"][name] for _, name, file, _ in SWEEP]
    order = sorted(range(len(results)), key=lambda i: results[i]["stack"]["rand_error"])
    for i, ((variant, name, file, note), r) in enumerate(zip(SWEEP, results)):
        stack = r["stack"]
        lines.append(row([f"{variant} (`{name}`)", f"{r['parameters']:,}", f"{r['train_steps']:,}", fmt(stack["pixel_error"]),
                          fmt(stack["rand_error"]), f"{order.index(i) + 1} of {len(results)}",
                          fmt(stack["warping_error"]), fmt(stack["info_error"]), fmt(stack["mean_iou"]),
                          fmt(r["mean"]["rand_error"]), f"{r['inference_s_per_512']:.3f}",
                          f"`{file}`" + (f" ({note})" if note else "")]))
    return lines


def calibration_table() -> list[str]:
    lines = header(["model (same weights)", "steps", "pixel error (p > 0.5)", "Rand error, stack",
                    "Rand error, per-image mean", "before (JSON)", "after (JSON)"], right_from=1, right_to=4)
    for name, before_file, after_file in CALIBRATION:
        before, after = load(before_file)["results"][name], load(after_file)["results"][name]
        assert before["train_steps"] == after["train_steps"], f"{name}: not the same weights"
        change = [f"{fmt(before[part][key])} -> {fmt(after[part][key])}"
                  for part, key in (("stack", "pixel_error"), ("stack", "rand_error"), ("mean", "rand_error"))]
        lines.append(row([model_name(name), f"{after['train_steps']:,}"] + change + [f"`{before_file}`", f"`{after_file}`"]))
    return lines


def early_table() -> list[str]:
    """The runs from before calibrated probabilities and precise BatchNorm statistics."""
    lines = header(["model", "steps in 15 min", "pixel error (p > 0.5)", "Rand error, stack", "Rand error, per-image mean",
                    "JSON"], right_from=1, right_to=4)
    for name, file in (("unetkit-default", "accuracy_isbi-20261125-172206.json"),
                       ("unetkit-default-w8", "accuracy_isbi-20261125-180730.json"),
                       ("monai-UNet", "accuracy_isbi-20261125-172206.json"),
                       ("monai-BasicUNet", "accuracy_isbi-20261125-172206.json")):
        r = load(file)["results"][name]
        lines.append(row([model_name(name), f"{r['train_steps']:,}", fmt(r["stack"]["pixel_error"]),
                          fmt(r["stack"]["rand_error"]), fmt(r["mean"]["rand_error"]), f"`{file}`"]))
    return lines


def lean_table() -> list[str]:
    lines = header(["run", "model", "membrane at p > 0.5 (truth)", "pixel error at 0.5", "best threshold",
                    "pixel error at best", "logit offset", "pixel error at 0.5, offset", "Rand at 0.5, stack (offset)",
                    "Rand at 0.5, per-image mean (offset)", "JSON"], right_from=2, right_to=9)
    for label, file in LEAN:
        for i, (name, r) in enumerate(load(file)["results"].items()):
            stack_rand = f"{fmt(r.get('stack_rand_error_at_0.5'))} ({fmt(r.get('stack_rand_error_at_0.5_after_offset'))})"
            lines.append(row([label if i == 0 else "", model_name(name),
                              f"{r['membrane_share_at_0.5']:.1%} ({r['true_membrane_share']:.1%})",
                              fmt(r["pixel_error_at_0.5"]), f"{r['best_threshold']:.2f}", fmt(r["pixel_error_at_best"]),
                              f"{r['offset_fitted_on_training']:+.3f}", fmt(r["pixel_error_at_0.5_after_offset"]), stack_rand,
                              f"{fmt(r['rand_error_at_0.5'])} ({fmt(r['rand_error_at_0.5_after_offset'])})",
                              f"`{file}`" if i == 0 else ""]))
    return lines


# --------------------------------------------------------------------------- speed, memory, training, metrics, robustness


def speed_table() -> list[str]:
    paths = ["eager", "channels_last", "onnxruntime", "torchscript_frozen"]
    lines = header(["model", "parameters", "eager", "channels_last", "onnxruntime", "frozen TorchScript",
                    "peak memory (rise)"], right_from=1)
    for r in load(SPEED)["results"]:
        seconds = r["seconds_median"]
        fastest = min(seconds.values())
        cells = []
        for path in paths:
            text = f"{seconds[path]:.3f} s" if seconds[path] < 1 else f"{seconds[path]:.2f} s"
            text += "" if path == "eager" else f" ({seconds['eager'] / seconds[path]:.2f}x)"
            cells.append(f"**{text}**" if seconds[path] == fastest else text)
        name = model_name(r["model"]) + (f" (one {r['tile_input'][0]} x {r['tile_input'][1]} tile)" if r["model"] == "paper" else "")
        lines.append(row([name, f"{r['parameters']:,}"] + cells + [f"{r['peak_rss_mb']:,.0f} MB (+{r['prediction_rise_mb']:.0f})"]))
    return lines


def memory_table() -> list[str]:
    lines = header(["image (uint8 tiled TIFF)", "megapixels", "peak RSS", "wall time", "s / megapixel"], right_from=1)
    for r in load(MEMORY)["rows"]:
        lines.append(row([f"{r['side']} x {r['side']}", f"{r['megapixels']:.1f}", f"{r['peak_rss_mb']:.0f} MB",
                          f"{r['wall_seconds']:.1f} s", f"{r['seconds_per_megapixel']:.2f}"]))
    return lines


def training_table() -> list[str]:
    t = load(TRAIN)
    lines = header(["s / step", "samples / s", "data share of a step", "weight map / image (once)", "crop / sample",
                    "augmentation / batch"], right_from=0)
    lines.append(row([f"{t['step_s']:.3f}", f"{t['samples_per_s']:.1f}", f"{t['data_share']:.1%}",
                      f"{t['weight_map_s_per_image_once']:.3f} s", f"{t['crop_s_per_sample'] * 1000:.1f} ms",
                      f"{t['augment_s_per_batch'] * 1000:.1f} ms"]))
    return lines


def side_by_side_table() -> list[str]:
    """Whole-run samples/s of the previous release, its settings on today's code, today's default and MONAI's networks."""
    lines = header(["run (JSON)", "model", "steps", "samples / s", "x release", "x previous settings", "forward", "backward",
                    "optimizer", "data share", "validation share (validations)"], right_from=2)
    labels = {"release": "unetkit `default`, previous release's code", "before": "unetkit `default`, previous settings",
              "monai-UNet-fp32": "MONAI `UNet`, fp32 and contiguous", "default-worker": "unetkit `default`, 1 DataLoader worker",
              "default-val10": "unetkit `default`, validation within 10%",
              "default": "unetkit `default`"}
    for file in TRAIN_SIDE_BY_SIDE:
        results = load(file)["results"]
        for name, r in results.items():
            lines.append(row([f"`{file}`", labels.get(name) or model_name(name), f"{r['steps']:,}", f"{r['samples_per_s']:.1f}",
                              _times(r, results, "release"), _times(r, results, "before"), f"{r['forward_s'] * 1e3:.0f} ms",
                              f"{r['backward_s'] * 1e3:.0f} ms", f"{r['optimizer_s'] * 1e3:.0f} ms",
                              f"{r['data_share']:.1%}", f"{r['validation_share']:.1%} ({r['validations']})"]))
    return lines


def _times(r: dict, results: dict, base: str) -> str:
    """`r`'s samples/s as a multiple of contender `base`'s in the same run ("-" if it did not run)."""
    return f"{r['samples_per_s'] / results[base]['samples_per_s']:.2f}" if base in results else "-"


def training_speed_table() -> list[str]:
    """Samples per second of each model in the side-by-side accuracy runs."""
    runs = [("fp32, seed 0", "accuracy_isbi-20261125-222443.json"), ("bf16, seed 0", "accuracy_isbi-20261125-231501.json")]
    names = list(load(runs[0][1])["results"])
    lines = header(["model"] + [label for label, _ in runs], right_from=1)
    for name in names:
        cells = [load(file)["results"].get(name, {}).get("train_samples_per_s") for _, file in runs]
        lines.append(row([model_name(name)] + [fmt(c, 1) for c in cells]))
    return lines


def datasets_table(files: dict[str, str]) -> list[str]:
    """Each data set's headline scores: unetkit with the folders only against MONAI's networks in a plain loop."""
    names = ["unetkit", "monai-UNet", "monai-BasicUNet"]
    lines = header(["data set (JSON)", "score"] + ["unetkit (plan)" if n == "unetkit" else model_name(n) for n in names],
                   right_from=2)
    for dataset, file in files.items():
        keys = HEADLINES[dataset]
        results = load(file)["results"][dataset]
        lines.append(row([f"{dataset} (`{file}`)", "steps"] + [f"{results[n]['steps']:,}" if n in results else "n/a" for n in names]))
        for key in keys:
            lines.append(row(["", DATASET_KEYS[key]] + bold_best([results.get(n, {}).get(key) for n in names], key)))
    return lines


def dataset_variants_table() -> list[str]:
    """unetkit variants on one data set: training options set over the plan's, with their scores."""
    lines = header(["data set", "contender: options over the plan's", "min", "seed", "steps", "scores", "JSON"], right_from=2, right_to=5)
    for dataset, file, keys, *peer in DATASET_VARIANTS:
        measured, contender = load(file), (peer or ["unetkit"])[0]
        r = measured["results"][dataset][contender]
        options = measured.get("unetkit_options", {})
        flips_only = all(options.get(k) == 0 for k in FLIPS_ONLY)
        shown = [f"`{k}={v}`" for k, v in options.items() if not (flips_only and k in FLIPS_ONLY)]
        options = " ".join(shown + (["augmentation: flips only (the other transforms 0)"] if flips_only else [])) or "none (the plan)"
        options = model_name(contender) if peer else f"unetkit: {options}"
        scores = " / ".join(f"{DATASET_KEYS[k]} {fmt(r[k])}" for k in keys)
        lines.append(row([dataset, options, f"{measured['minutes_each']:g}", measured["seed"], f"{r['steps']:,}", scores, f"`{file}`"]))
    return lines


def dataset_weights_table() -> list[str]:
    """Runs of the plan and of a variant, each scored with the best weights (what predict uses) and the last."""
    lines = header(["data set", "options over the plan's", "steps", "best weights", "last weights", "JSON"], right_from=2)
    for file in DATASET_WEIGHTS:
        for dataset, runs in load(file)["results"].items():
            for r in runs:
                keys = list(r["best"])
                cells = [" / ".join(f"{DATASET_KEYS[k]} {fmt(r[w][k])}" for k in keys) for w in ("best", "last")]
                lines.append(row([dataset, f"`{r['options']}`" if r["options"] else "none (the plan)", f"{r['steps']:,}",
                                  *cells, f"`{file}`"]))
    return lines


def encoders_table() -> list[str]:
    """Per data set: the default U-Net and library encoders trained from random weights for the same time."""
    speed = load(ENCODER_SPEED)["results"]
    lines = header(["data set (JSON)", "measure"] + [model_name(n) for n in ENCODER_MODELS], right_from=2)
    for dataset, channels, file, keys in ENCODERS:
        scored = load(file)["results"]
        results = {n: scored.get(f"{dataset}/{n}") for n in ENCODER_MODELS}
        lines.append(row([f"{dataset} (`{file}`)", "parameters"] + [f"{r['parameters'] / 1e6:.2f} M" if r else "n/a" for r in results.values()]))
        lines.append(row(["", "steps in 15 min"] + [f"{r['train_steps']:,}" if r else "n/a" for r in results.values()]))
        lines.append(row(["", f"s per 512 x 512 image, {channels} channel(s) (`{ENCODER_SPEED}`)"]
                         + [f"{speed[f'{n}/{channels}']['inference_s_per_512']:.3f}" for n in ENCODER_MODELS]))
        for key in keys:
            lines.append(row(["", DATASET_KEYS[key]] + bold_best([(r or {}).get("stack", {}).get(key) for r in results.values()], key)))
    return lines


def transfer_table() -> list[str]:
    """ISBI scores against labelled sections: --init from a synthetic-EM run against training from scratch."""
    results = load(TRANSFER)["results"]
    counts = sorted({r["labelled_images"] for k, r in results.items() if k != "source"})
    lines = header(["labelled ISBI sections", "steps, scratch / --init", "pixel error, scratch", "pixel error, --init",
                    "Rand error, scratch", "Rand error, --init"], right_from=0)
    for count in counts:
        scratch, init = results[f"scratch/{count}"], results[f"init/{count}"]
        pixel = bold_best([scratch["stack"]["pixel_error"], init["stack"]["pixel_error"]], "pixel_error")
        rand = bold_best([scratch["stack"]["rand_error"], init["stack"]["rand_error"]], "rand_error")
        lines.append(row([count, f"{scratch['train_steps']:,} / {init['train_steps']:,}", *pixel, *rand]))
    return lines


def metrics_table() -> list[str]:
    m = load(METRICS)
    s = m["seconds"]
    lines = header(["Rand error, 512^2, one threshold", "Rand error, 11-level sweep", "warping error, one threshold",
                    "warping error, 10-level sweep", f"`evaluate` of {m['slices']} slices, all scores"], right_from=0)
    lines.append(row([f"{s['rand_error_0.5']:.4f} s", f"{s['rand_error_sweep']:.3f} s", f"{s['warping_error_0.5']:.3f} s",
                      f"{s['warping_error_sweep']:.2f} s", f"{s['evaluate_set']:.1f} s"]))
    return lines


def robustness_table() -> list[str]:
    kinds = [("readers", "damaged PNG/JPEG/TIFF through the readers"),
             ("run_folders", "run folders with a damaged config, weights or state file, loaded"),
             ("predict_cli", "damaged files through `unetkit predict`")]
    lines = header(["run (JSON)", "cases", "valid output", "one-line error", "tracebacks", "hangs",
                    "inputs modified", "files lost"], right_from=1)
    for file in FUZZ:
        record = load(file)
        for key, text in kinds:
            r = record[key]
            lines.append(row([f"{text} (`{file}`)", r["cases"], r["ok"], r["user_error"], r["traceback"], r["hang"],
                              r["input_modified"], r["files_lost"]]))
    return lines


def crash_table() -> list[str]:
    c = load(CRASH)
    lines = header(["training kills", "prediction kills", "resumed run equals an uninterrupted one", "run time", "JSON"],
                   right_from=99)
    lines.append(row([c["train_kills"], c["predict_kills"], "yes" if c["resumed_equals_uninterrupted"] else "NO",
                      f"{c['seconds'] / 60:.0f} min", f"`{CRASH}`"]))
    return lines


TABLES = {
    "summary": summary,
    "isbi-sources": isbi_sources,
    "isbi-stack": lambda: isbi_table("stack"),
    "isbi-mean": lambda: isbi_table("mean"),
    "isbi-rand-ranking": isbi_rand_ranking,
    "isbi-seed-means": isbi_seed_means,
    "isbi-speed-defaults": isbi_speed_defaults,
    "isbi-lean": lean_table,
    "calibration": calibration_table,
    "early-runs": early_table,
    "sweep": sweep_table,
    "training-speed": training_speed_table,
    "speed": speed_table,
    "memory": memory_table,
    "training": training_table,
    "training-side-by-side": side_by_side_table,
    "datasets": lambda: datasets_table(DATASETS_15),
    "datasets-10min": lambda: datasets_table(DATASETS_10),
    "dataset-variants": dataset_variants_table,
    "dataset-weights": dataset_weights_table,
    "encoders": encoders_table,
    "transfer": transfer_table,
    "metrics": metrics_table,
    "robustness": robustness_table,
    "crash": crash_table,
}
BLOCK = re.compile(r"(<!-- tables\.py (\S+) -->\n)(.*?)(<!-- /tables\.py -->)", re.S)


def markdown(name: str) -> str:
    return "\n".join(TABLES[name]()) + "\n"


def blocks(text: str) -> dict[str, str]:
    """name -> content of every marked table block in a document."""
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def refresh(path: Path) -> None:
    """Rewrite every marked block of `path` with this script's table."""
    text = path.read_text()
    path.write_text(BLOCK.sub(lambda m: m.group(1) + markdown(m.group(2)) + m.group(4), text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"tables to print (default: all): {', '.join(TABLES)}")
    parser.add_argument("--write", nargs="+", type=Path, metavar="DOC", help="refresh the marked blocks of these files")
    args = parser.parse_args()
    unknown = set(args.names) - set(TABLES)
    if unknown:
        parser.error(f"unknown table(s) {', '.join(sorted(unknown))}; choose from {', '.join(TABLES)}")
    if args.write:
        for path in args.write:
            refresh(path)
        return
    for name in args.names or TABLES:
        sys.stdout.write(f"<!-- tables.py {name} -->\n{markdown(name)}<!-- /tables.py -->\n\n")


if __name__ == "__main__":
    main()
