"""`plan`: the training plan of a data set from flat options (those given are kept), and its recipe file."""

from __future__ import annotations

from pathlib import Path

from ..data import pair_files
from ..io import write_text
from ..planning import MEMORY_MB, Plan, make_plan
from .options import build_configs, split_options


def plan(images: str | Path, masks: str | Path, *, memory_mb: float = MEMORY_MB, **options) -> Plan:
    """The plan for training on `images` and `masks`: a fingerprint of the data and the choices made from it.

    `options` are flat training options as `train` takes them; those the plan
    would choose are kept as given, the mask options (`mask_kind`, `colours`,
    `ignore_index`, ...) say how the masks are read, `preset` and the model
    options size the patch and batch for `memory_mb` of training memory.
    """
    split_options(options)  # unknown options refused
    recipe, _ = build_configs(options)
    return make_plan(pair_files(images, masks), recipe.data, recipe.model, options, memory_mb)


def write_plan(path: str | Path, the_plan: Plan) -> None:
    """The plan's choices as a recipe file (`unetkit train --config PATH` runs it), reasons as comments."""
    import yaml

    lines = ["# A plan from the data (`unetkit plan`): `unetkit train --config THIS --images DIR --masks DIR --out RUN`",
             "# runs it; flags given beside --config override single choices."]
    for choice in the_plan.choices:
        value = yaml.safe_dump({choice.option: choice.value}, default_flow_style=True).strip()[1:-1]
        lines.append(f"{value}  # {'given' if choice.given else choice.reason}")
    write_text(Path(path), "\n".join(lines) + "\n")
