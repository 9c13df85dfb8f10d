"""Mask conventions: how raw mask files hold classes, found once for a data set, then applied to every file.

A mask file holds one of (DESIGN.md):
- class ids 0..K-1 (`mask_kind="ids"`), palette PNGs as their indices (255
  beside small ids is refused unless `ignore_index` says it is void);
- two values that mean background/foreground, of either polarity (0/255,
  0/1, 1/2: `mask_kind="values"`, class k is the k-th smallest value, or
  `foreground_value` names the foreground);
- RGB colours (`mask_kind="colours"`): class k is the k-th colour of a table
  found in the training masks (sorted by RGB value) or given; colours named
  in `ignore_colours` count nowhere;
- instance label maps (`mask_kind="instances"`, 0 = background, 1..N one
  object each): trained as background/foreground with the 1-px lines where
  instances touch as background (`data.instance_maps`).
The convention is found from the training masks as a whole (a mask holding
one of the two values alone is read like the others), printed, stored in the
run's DataConfig, and used again for validation masks, prediction outputs and
evaluation. `mask_kind="auto"` with a per-file rule remains for callers that
pass single masks (evaluation of files without a run).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import DataConfig
from ..errors import UserError
from .instance_maps import instance_classes, instance_verdict, label_stats

VOID = 255  # "void" in multi-class id masks (PASCAL VOC, Cityscapes-style exports) ...
MAX_IDS_WITH_VOID = 64  # ... when the other values look like a few class ids: asked, never guessed


def colour_codes(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) int32 codes R<<16 | G<<8 | B (one number per colour, cheap to compare)."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def code_colour(code: int) -> tuple[int, int, int]:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


def hex_colour(rgb) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def parse_colour(text: str, source=None) -> tuple[int, int, int]:
    """'R,G,B' or '#RRGGBB' -> (R, G, B)."""
    text = text.strip()
    try:
        if text.startswith("#") and len(text) == 7:
            return code_colour(int(text[1:], 16))
        r, g, b = (int(v) for v in text.split(","))
        if all(0 <= v <= 255 for v in (r, g, b)):
            return r, g, b
    except ValueError:
        pass
    raise UserError(f"{text!r} is not a colour", path=source, fix="write R,G,B (0-255 each) or #RRGGBB")


def read_palette(path) -> tuple[tuple[int, int, int], ...]:
    """Class colours from a text file: one class per line, 'R,G,B' or '#RRGGBB', then optionally its name."""
    from pathlib import Path

    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read palette ({exc.strerror})", path=path, fix="check the path") from exc
    colours = [parse_colour(line.split()[0], path) for line in lines if line.strip() and not line.startswith("#!")]
    if len(set(colours)) != len(colours) or not colours:
        raise UserError("palette lists no colours, or one twice", path=path, fix="one distinct colour per class, one per line")
    return tuple(colours)


@dataclasses.dataclass
class Survey:
    """What the training masks hold, gathered file by file before any is converted."""

    kind: str | None = None  # "colours" or "grey", from the first file
    first: object = None  # the file that set `kind`
    values: dict = dataclasses.field(default_factory=dict)  # distinct grey value or colour code -> first file holding it
    labels: list = dataclasses.field(default_factory=list)  # per grey file: its `instance_maps.LabelStats` (None: no integers)
    count_labels: bool = True  # gather `labels` (what tells instance maps from class ids; training masks only)

    def add(self, raw: np.ndarray, path) -> None:
        kind = "colours" if raw.ndim == 3 else "grey"
        distinct = np.unique(colour_codes(raw) if kind == "colours" else raw)
        self.add_values(kind, distinct, path, label_stats(raw, path, distinct) if kind == "grey" and self.count_labels else None)

    def add_values(self, kind: str, distinct: np.ndarray, path, labels=None) -> None:
        """Add a mask by its distinct values (grey) or colour codes, and its `LabelStats` (grey, when counted)."""
        if self.kind is None:
            self.kind, self.first = kind, path
        elif kind != self.kind:
            raise UserError(
                f"mask holds {'RGB colours' if kind == 'colours' else 'grey values'} but {getattr(self.first, 'name', self.first)} "
                f"holds {'RGB colours' if self.kind == 'colours' else 'grey values'}", path=path,
                fix="save every mask of the folder in one convention (all colour-coded, or all class ids / two values)")
        for value in distinct.tolist():
            self.values.setdefault(value, path)
        if kind == "grey" and self.count_labels:
            self.labels.append(labels)


def resolve_masks(survey: Survey, config: DataConfig) -> DataConfig:
    """The DataConfig with `mask_kind`, its table and `n_classes` found from the training masks (unless given)."""
    if _complete(config):
        return config  # given, or stored by the run being resumed
    if survey.kind == "colours" and config.mask_kind == "instances":
        raise UserError("the masks hold RGB colours, not instance ids", path=survey.first, fix="drop --mask-kind instances")
    if survey.kind == "colours" or config.mask_kind == "colours":
        return _colour_table(survey, config)
    values = sorted(v for v in survey.values if v != config.ignore_index)
    if config.foreground_value is not None:
        return dataclasses.replace(config, mask_kind="foreground", n_classes=2)
    if config.mask_kind in ("auto", "values") and config.n_classes in (None, 2) and len(values) == 2:
        return dataclasses.replace(config, mask_kind="values", n_classes=2, mask_values=tuple(values))  # either polarity
    if config.mask_kind == "instances" or (config.mask_kind == "auto" and config.n_classes in (None, 2) and _instances(survey)):
        if config.n_classes not in (None, 2):
            raise UserError(f"instance label maps train 2 classes (background, object), not {config.n_classes}", fix="drop --classes")
        return dataclasses.replace(config, mask_kind="instances", n_classes=2)
    if config.mask_kind == "values":
        raise UserError(f"the training masks hold {len(values)} values, not two", fix="drop --mask-kind values")
    if config.mask_kind == "auto" and config.n_classes is None and config.ignore_index is None and VOID in values \
            and len(values) > 2 and values[-2] < MAX_IDS_WITH_VOID:  # ids and 255: void (VOC-style), or two conventions mixed? Say so.
        names = [getattr(survey.values[v], "name", survey.values[v]) for v in (values[-2], VOID)]
        raise UserError(f"the masks hold class ids up to {values[-2]} (e.g. {names[0]}) and the value 255 (e.g. {names[1]})",
                        fix="pass --ignore-index 255 if 255 marks void pixels, or relabel the masks to one convention")
    return dataclasses.replace(config, mask_kind="ids", n_classes=config.n_classes or max(2, max(values, default=0) + 1))


def _instances(survey: Survey) -> bool:
    """Whether the training masks are instance label maps (`instance_maps.instance_verdict`); where unclear, ask."""
    verdict, why = instance_verdict(survey.labels)
    if verdict == "ambiguous":
        raise UserError(f"cannot tell instance label maps from class ids: {why}",
                        fix="pass --mask-kind instances (one object per id) or --mask-kind ids (one class per value)")
    return verdict == "instances"


def _complete(config: DataConfig) -> bool:
    tables = {"ids": True, "foreground": True, "instances": config.n_classes == 2, "values": config.mask_values is not None, "colours": config.colours is not None}
    return config.n_classes is not None and tables.get(config.mask_kind, False)


def _colour_table(survey: Survey, config: DataConfig) -> DataConfig:
    ignored = {int(r) << 16 | int(g) << 8 | int(b) for r, g, b in config.ignore_colours or ()}
    if config.colours is None:
        colours = tuple(code_colour(c) for c in sorted(set(survey.values) - ignored))
    else:
        colours = tuple(tuple(int(v) for v in c) for c in config.colours)
    ignore = config.ignore_index if config.ignore_index is not None else (VOID if ignored else None)
    n_classes = config.n_classes or len(colours)
    if n_classes != len(colours):
        raise UserError(f"the masks hold {len(colours)} colours (other than those ignored) for {n_classes} classes",
                        fix="drop --classes, or name the extra colours with --ignore-colour R,G,B")
    return dataclasses.replace(config, mask_kind="colours", colours=colours, n_classes=n_classes, ignore_index=ignore)


def describe(config: DataConfig) -> str:
    """One line for the console and the run: which convention was recognised, with its class table."""
    ignore = "" if config.ignore_index is None else f"; value {config.ignore_index} counts nowhere"
    if config.mask_kind == "colours":
        table = ", ".join(f"{k}: {hex_colour(c)}" for k, c in enumerate(config.colours))
        ignored = f"; ignored colours {', '.join(map(hex_colour, config.ignore_colours))}" if config.ignore_colours else ""
        return f"masks: RGB colours, {config.n_classes} classes ({table}){ignored}"
    if config.mask_kind == "values":
        low, high = config.mask_values
        return f"masks: two values, {low} = class 0, {high} = class 1{ignore}"
    if config.mask_kind == "foreground":
        return f"masks: value {config.foreground_value} = class 1, any other = class 0{ignore}"
    if config.mask_kind == "instances":
        return f"masks: instance label maps (0 = background, 1..N one object each): class 1 = objects, class 0 = background " \
            f"and the lines where objects touch{ignore}"
    return f"masks: class ids 0..{config.n_classes - 1}{ignore}"


def mask_to_classes(raw: np.ndarray, config: DataConfig, path=None) -> np.ndarray:
    """Raw mask values (H, W), or colours (H, W, 3), -> class ids (int64) by the config's convention.

    With `mask_kind="auto"` each file decides alone: two values with two
    classes are background/foreground (0/255, 0/1, False/True: lower 0,
    higher 1), else values are class ids. Pixels equal to `ignore_index`
    (or of an ignored colour) become `ignore_index`.
    """
    raw = np.asarray(raw)
    if config.mask_kind == "colours":
        return _from_colours(raw, config, path)
    if raw.ndim == 3:
        raise UserError("mask holds RGB colours but the class table is of grey values", path=path,
                        fix="save the mask like the training masks (one channel), or retrain on colour masks")
    ignore = None if config.ignore_index is None else raw == config.ignore_index
    if config.mask_kind == "values":
        classes = _from_values(raw, config.mask_values, ignore, path)
    elif config.mask_kind == "instances":
        classes = instance_classes(raw)
    elif config.foreground_value is not None:  # "foreground", or a per-file read with the foreground named
        classes = (raw == config.foreground_value).astype(np.int64)
    else:
        classes = _per_file(raw, config, ignore, path)
    if ignore is not None:
        classes[ignore] = config.ignore_index
    return classes


def _from_values(raw: np.ndarray, values: tuple, ignore, path) -> np.ndarray:
    classes = np.full(raw.shape, -1, np.int64)
    for k, value in enumerate(values):
        classes[raw == value] = k
    unknown = (classes < 0) if ignore is None else (classes < 0) & ~ignore
    if unknown.any():
        raise UserError(f"mask value {raw[unknown][0]} is neither of the two values {values[0]} and {values[1]} of the "
                        "training masks", path=path, fix="relabel the mask, or set --ignore-index for that value")
    return classes


def _per_file(raw: np.ndarray, config: DataConfig, ignore, path) -> np.ndarray:
    n_classes = config.n_classes or 2
    values = np.unique(raw if ignore is None else raw[~ignore])
    if n_classes == 2 and len(values) <= 2 and set(values.tolist()) <= {0, 255}:
        return (raw == 255).astype(np.int64)
    if n_classes == 2 and len(values) == 2 and not set(values.tolist()) <= {0, 1}:
        return (raw == values.max()).astype(np.int64)
    bad = values[(values < 0) | (values >= n_classes)]
    if bad.size:
        shown = ", ".join(map(str, bad[:5].tolist())) + (" ..." if bad.size > 5 else "")
        raise UserError(
            f"mask values {shown} are not class ids 0..{n_classes - 1} ({len(values)} distinct values for {n_classes} classes)",
            path=path, fix="raise --classes, set --ignore-index, or relabel the mask",
        )
    return raw.astype(np.int64)


def _from_colours(raw: np.ndarray, config: DataConfig, path) -> np.ndarray:
    if raw.ndim != 3:
        raise UserError("mask is grey but the class table is of RGB colours", path=path,
                        fix="save the mask in the training masks' colours")
    codes = colour_codes(raw)
    table = np.array([c[0] << 16 | c[1] << 8 | c[2] for c in config.colours], np.int64)
    order = np.argsort(table)
    found = np.searchsorted(table[order], codes).clip(0, len(table) - 1)
    known = table[order][found] == codes
    classes = order[found].astype(np.int64)
    ignored = np.isin(codes, [int(r) << 16 | int(g) << 8 | int(b) for r, g, b in config.ignore_colours or ()])
    unknown = ~known & ~ignored
    if unknown.any():
        colour = hex_colour(code_colour(int(codes[unknown][0])))
        raise UserError(f"colour {colour} is not in the class table of the training masks", path=path,
                        fix=f"name it with --ignore-colour {','.join(map(str, code_colour(int(codes[unknown][0]))))}, "
                        "or give the table with --palette FILE")
    if ignored.any():  # (no ignore_index to write where no colour is ignored)
        classes[ignored] = config.ignore_index
    return classes


def colour_image(labels: np.ndarray, config: DataConfig) -> np.ndarray:
    """Class ids (H, W) painted in the training masks' colours: (3, H, W) uint8."""
    return np.asarray(config.colours, np.uint8)[labels].transpose(2, 0, 1)


def classes_only_in(val: Survey, train: Survey, config: DataConfig) -> dict:
    """Classes that validation masks hold and no training mask does: class -> the first file holding it.

    A value (or colour) outside the class table found from the training masks
    is an error: the model has no output for it. Instance maps are skipped:
    their ids differ from image to image by design, their classes do not.
    """
    if config.mask_kind == "instances" or val.kind != train.kind:
        return {}  # a mask of the other kind is refused, with its name, when it is read
    trained = {_class_of(value, train.kind, config) for value in train.values}
    unseen = {}
    for value, path in val.values.items():
        if value in train.values or value == config.ignore_index:
            continue
        try:
            k = _class_of(value, val.kind, config)
        except UserError:
            shown = f"colour {hex_colour(code_colour(value))}" if val.kind == "colours" else f"value {value}"
            raise UserError(f"mask {shown} is in the validation masks but in none of the training masks, so it has no class",
                            path=path, fix="hold out other images (--val-names) so that training sees it, give the class "
                            "table (--classes or --palette), or name it ignored (--ignore-index, --ignore-colour)") from None
        if k not in trained and k != config.ignore_index:
            unseen.setdefault(k, path)
    return unseen


def _class_of(value: int, kind: str, config: DataConfig) -> int:
    sample = np.array([[code_colour(value)]], np.uint8) if kind == "colours" else np.array([[value]])
    return int(mask_to_classes(sample, config)[0, 0])
