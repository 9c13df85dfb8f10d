"""A plan: the fingerprint of a training set and the choices made from it, each with its reason.

Options the user gave (flags, a recipe file, keywords) are kept as given and
shown so; the plan fills the rest. A run stores its plan in `config.json`
("plan") and a resumed run shows that one again, never a new one.
"""

from __future__ import annotations

import dataclasses

from ..config import DataConfig, ModelConfig, RunConfig
from ..data import Pair
from .fingerprint import Fingerprint, fingerprint
from .rules import choose

MEMORY_MB = 4096  # training memory budget of the plan (a fixed figure, so one data set gets one plan everywhere)


@dataclasses.dataclass(frozen=True)
class Choice:
    option: str  # a flat training option (`unetkit train --help`, snake_case)
    value: object
    reason: str
    given: bool = False  # given by the user: kept, not planned


@dataclasses.dataclass(frozen=True)
class Plan:
    fingerprint: Fingerprint
    choices: tuple[Choice, ...]
    memory_mb: float = MEMORY_MB

    def options(self) -> dict:
        """Every choice as a flat option, given ones included (what `--out plan.yaml` writes)."""
        return {c.option: c.value for c in self.choices}

    def planned(self) -> dict:
        """The choices the plan made (the options the user did not give)."""
        return {c.option: c.value for c in self.choices if not c.given}

    def table(self) -> str:
        """The fingerprint, then one line per choice: option, value, reason."""
        width = max(len(c.option) for c in self.choices)
        shown = [(c.option, _shown(c.value), "given" if c.given else c.reason) for c in self.choices]
        value_width = max(len(v) for _, v, _ in shown)
        lines = [f"{'choice':<{width}}  {'value':<{value_width}}  reason"]
        lines += [f"{o:<{width}}  {v:<{value_width}}  {r}" for o, v, r in shown]
        return f"{self.fingerprint.describe()}\nplan:\n" + "\n".join(lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        return cls(Fingerprint(**data["fingerprint"]), tuple(Choice(**c) for c in data["choices"]), data["memory_mb"])


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def make_plan(pairs: list[Pair], data: DataConfig, model: ModelConfig, given: dict, memory_mb: float = MEMORY_MB) -> Plan:
    """The plan for `pairs` read with `data`'s mask options, for `model`; options in `given` are kept as given."""
    fp = fingerprint(pairs, data, given.get("lazy_above_mpix", RunConfig.lazy_above_mpix))  # read as training reads them
    # the user chose the validation (names, folds, a share) or a refit, which needs a hold-out
    fixed_hold_out = bool(given.get("val_names") or given.get("folds") or given.get("refit")) or "val_fraction" in given
    rules = choose(fp, model, memory_mb, transfer=given.get("init") is not None, chosen=frozenset(given),
                   fixed_hold_out=fixed_hold_out, timed=given.get("time_budget") is not None)
    choices = tuple(
        Choice(option, given[option], "given", True) if option in given else Choice(option, value, reason)
        for option, (value, reason) in rules.items()
    )
    return Plan(fp, choices, memory_mb)
