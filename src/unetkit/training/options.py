"""Flat options (CLI flags, keyword arguments, a recipe file) <-> the config dataclasses.

Each flat option belongs to exactly one dataclass field; the training code only
ever sees the dataclasses. `classes` sets `n_classes` (model and data alike),
`augment` switches augmentation on or off, `preset` picks the model preset the
model options override.

A run folder holds `config.json` (the resolved configs, for prediction and
resume) and `recipe.yaml`: the same options flat, as flags take them, so
`unetkit train --config RUN/recipe.yaml --images ... --masks ... --out NEW`
repeats the run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import AugmentConfig, DataConfig, ModelConfig, RunConfig, TrainConfig, from_dict, load_file
from ..errors import UserError
from ..io import write_text
from ..model import preset_config

RECIPE_FILE = "recipe.yaml"
DATA_OPTIONS = ("ignore_index", "foreground_value", "normalization", "percentiles", "mask_kind", "colours", "ignore_colours")  # the rest is found in the data
NOT_OPTIONS = {"in_channels", "n_classes", "enabled", "augment"}  # set from the data, by `classes` or by `augment`


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a run learns: the model, how its data is read, and how it trains."""

    model: ModelConfig = dataclasses.field(default_factory=lambda: preset_config("default"))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in NOT_OPTIONS]


SECTIONS = {  # flat option name -> section
    **dict.fromkeys(_names(RunConfig), "run"),
    **dict.fromkeys(_names(TrainConfig), "train"),
    **dict.fromkeys(_names(AugmentConfig), "augment"),
    **dict.fromkeys(DATA_OPTIONS, "data"),
    **dict.fromkeys(_names(ModelConfig), "model"),
    "classes": "classes",
    "augment": "augment_on",
}


def split_options(options: dict) -> dict[str, dict]:
    """Flat options sorted into sections {"run", "train", "augment", "data", "model", ...}; unknown ones refused."""
    unknown = sorted(set(options) - set(SECTIONS))
    if unknown:
        raise UserError(f"unknown training option(s) {', '.join(unknown)}", fix="see `unetkit train --help` for the options")
    sections: dict[str, dict] = {name: {} for name in set(SECTIONS.values())}
    for key, value in options.items():
        sections[SECTIONS[key]][key] = tuple(value) if isinstance(value, list) else value
    return sections


def build_configs(options: dict, recipe: Recipe | None = None, run: RunConfig | None = None) -> tuple[Recipe, RunConfig]:
    """(Recipe, RunConfig): `recipe` and `run` (or the defaults) with the flat `options` applied."""
    recipe, run = recipe or Recipe(), run or RunConfig()
    given = split_options(options)
    classes = {"n_classes": given["classes"]["classes"]} if given["classes"] else {}
    augment = _build(dataclasses.replace, recipe.train.augment, {**given["augment"], **_enabled(given)})
    train = _build(dataclasses.replace, recipe.train, {**given["train"], "augment": augment})
    data = _build(dataclasses.replace, recipe.data, {**given["data"], **classes})
    if "preset" in given["train"]:  # a preset resets the model; the model options override it
        model = _build(preset_config, train.preset, {**given["model"], **classes})
    else:
        model = _build(dataclasses.replace, recipe.model, {**given["model"], **classes})
    return Recipe(model, data, train), _build(dataclasses.replace, run, given["run"])


def _enabled(given: dict) -> dict:
    return {"enabled": bool(given["augment_on"]["augment"])} if given["augment_on"] else {}


def _build(make, base, values: dict):
    try:
        return make(base, **values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad option ({exc})", fix="see `unetkit train --help` for valid values") from exc


# --------------------------------------------------------------------------- resume


def check_resume_options(stored: dict, options: dict, source) -> None:
    """A resumed run keeps its recipe: every recipe option given must equal the stored one.

    So the first command line can be repeated with `--resume` as it was.
    Run options (stop conditions, device, workers, ...) may change freely.
    """
    recipe = {k: v for k, v in options.items() if SECTIONS.get(k) not in ("run", None)}
    # As first given where it was given (e.g. "auto"), else as resolved (a default repeated explicitly).
    reference = {**recipe_options(stored), **stored.get("options", {})}
    changed = [k for k, v in recipe.items() if _plain(v) != _plain(reference.get(k))]
    if changed:
        raise UserError(
            f"a resumed run keeps its recipe, but {', '.join(sorted(changed))} differ(s) from it",
            path=source,
            fix="drop those options, or start a new --out (only stop conditions, device, workers, precision and "
            "save cadence may change)",
        )


def resumed_run_config(stored: RunConfig, options: dict) -> RunConfig:
    """The stored RunConfig with the given run options; a new length (epochs or steps) replaces the old one."""
    given = split_options(options)["run"]
    if "epochs" in given or "steps" in given:
        given = {"epochs": None, "steps": None, **given}
    return _build(dataclasses.replace, stored, given)


def _plain(value):
    """An option as JSON/YAML stores it (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def plain_options(options: dict) -> dict:
    """The flat options as config.json keeps them."""
    return {k: _plain(v) for k, v in options.items()}


# --------------------------------------------------------------------------- recipe file


def recipe_options(config: dict) -> dict:
    """The flat options of a stored `config.json` dict (model, data, train, run sections)."""
    train = dict(config.get("train", {}))
    augment = train.pop("augment", {})
    flat = {"preset": train.pop("preset", "default"), "classes": config["model"]["n_classes"]}  # the model first
    flat.update({k: v for k, v in config["model"].items() if k in SECTIONS})
    flat.update(train)
    flat["augment"] = augment.get("enabled", True)
    flat.update({k: v for k, v in augment.items() if k in SECTIONS})
    flat.update({k: v for k, v in config.get("data", {}).items() if k in DATA_OPTIONS})
    flat.update(config.get("run", {}))
    return {k: _plain(v) for k, v in flat.items()}


def write_recipe(run_dir: Path, config: dict) -> None:
    """`recipe.yaml`: the run's resolved options, flat, as `unetkit train --config` reads them."""
    import yaml

    header = (
        "# The resolved options of this run, as `unetkit train --config` reads them:\n"
        f"#   unetkit train --config {Path(run_dir) / RECIPE_FILE} --images DIR --masks DIR --out NEW_RUN\n"
        "# repeats it (flags given beside --config override the values here).\n"
    )
    write_text(Path(run_dir) / RECIPE_FILE, header + yaml.safe_dump(recipe_options(config), sort_keys=False))


def read_recipe(path: str | Path) -> dict:
    """Flat options from a recipe file (YAML or JSON); unknown keys refused with the valid ones named."""
    options = load_file(path)
    unknown = sorted(set(options) - set(SECTIONS))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}", path=path,
                        fix=f"use the options of `unetkit train --help` in snake_case, e.g. {', '.join(list(SECTIONS)[:6])}")
    return options


def stored_configs(config: dict, source) -> tuple[Recipe, RunConfig]:
    """The Recipe and RunConfig of a stored `config.json` dict."""
    recipe = Recipe(
        model=from_dict(ModelConfig, config["model"], source=source),
        data=from_dict(DataConfig, config.get("data", {}), source=source),
        train=from_dict(TrainConfig, config.get("train", {}), source=source),
    )
    return recipe, from_dict(RunConfig, config.get("run", {}), source=source)
