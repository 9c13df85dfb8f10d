"""Frozen dataclasses, one per concern, passed whole; JSON/YAML in and out.

A run folder stores the resolved configs in `config.json` so that prediction
and resumed training repeat exactly what training did.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from .errors import UserError

PADDINGS = ("valid", "same")
NORMS = ("none", "batch", "instance", "group")
UPSAMPLES = ("transposed", "bilinear")
NORMALIZATIONS = ("percentile", "meanstd", "none")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The U-Net architecture. Defaults are the paper's; presets override."""

    in_channels: int = 1
    n_classes: int = 2
    depth: int = 4  # number of 2x2 poolings
    base_width: int = 64  # channels at the top level; doubled at every level down
    padding: str = "valid"  # "valid": the paper's unpadded 3x3 convs; "same": zero padding
    norm: str = "none"
    upsample: str = "transposed"  # "transposed": the paper's 2x2 up-conv; "bilinear": + 1x1 conv
    attention: bool = False  # additive attention gates on the skips (Oktay et al. 2018)
    residual: bool = False  # residual shortcut around each pair of 3x3 convs
    dropout: float = 0.0  # at the end of the contracting path, as in the paper

    def __post_init__(self):
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("upsample", self.upsample, UPSAMPLES)
        for name, low in (("in_channels", 1), ("n_classes", 1), ("base_width", 1)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {getattr(self, name)!r}")
        if not (isinstance(self.depth, int) and 1 <= self.depth <= 6):
            raise ValueError(f"depth must be an integer from 1 to 6, got {self.depth!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How files become tensors: mask conventions and intensity normalisation.

    Stored with the model so that prediction normalises exactly as training did.
    """

    in_channels: int = 1
    n_classes: int = 2
    ignore_index: int | None = None  # mask value (after mapping) that counts in no loss or metric
    foreground_value: int | None = None  # raw value that means foreground in a two-valued mask
    normalization: str = "percentile"
    percentiles: tuple[float, float] = (1.0, 99.8)
    mean: tuple[float, ...] | None = None  # per channel, filled from the training set for "meanstd"
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")


C = TypeVar("C")


def to_dict(config) -> dict:
    """A JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[C], data: dict, *, source: str = "config") -> C:
    """Build `cls` from a dict, rejecting unknown keys with a clear error."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(
            f"unknown {cls.__name__} key(s) {', '.join(unknown)}",
            path=source,
            fix=f"use only {', '.join(names)}",
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc), path=source, fix=f"correct the {cls.__name__} values") from None


def load_file(path: str | Path) -> dict:
    """Read a JSON or YAML file into a dict (YAML by `.yaml`/`.yml` suffix)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read config ({exc.strerror})", path=path, fix="check the path") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"not valid {path.suffix or 'JSON'} ({exc})", path=path, fix="repair the file") from None
    if not isinstance(data, dict):
        raise UserError("config must be a mapping at the top level", path=path, fix="write key: value pairs")
    return data
