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
# "percentile-joint": one range per image over all its channels (keeps the colours of stained samples);
# "imagenet": per-image percentiles to [0, 1], then the ImageNet mean/std (pretrained encoders);
# "auto": "imagenet" for a pretrained encoder, the --init run's, else "percentile" (resolved by training).
NORMALIZATIONS = ("auto", "percentile", "percentile-joint", "meanstd", "imagenet", "none")
ENCODER_DEPTH = 5  # every supported encoder reduces by 32 = 2**5 (model/encoders.py)
MASK_KINDS = ("auto", "ids", "values", "foreground", "colours", "instances")  # see data/masks.py
WEIGHT_CHOICES = ("auto", "final", "best", "last")  # a run's weights to load (checkpoint.resolved_weights)


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
    stem_stride: int = 1  # 2: the first conv strides, the top level runs at half resolution (4x fewer FLOPs there)
    encoder: str | None = None  # a library encoder for the contracting path (model/encoders.py); None: the U-Net's own
    encoder_config: dict | None = None  # overrides of the encoder's library config (e.g. smaller hidden_sizes)

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
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride!r}")
        if self.stem_stride == 2 and self.padding == "valid":
            raise ValueError("stem_stride=2 needs padding='same' (the strided stem is built for same padding only)")
        if self.encoder is not None:
            self._check_encoder()

    def _check_encoder(self) -> None:
        if self.padding != "same":
            raise ValueError(f"encoder {self.encoder} needs padding='same' (library encoders pad their convolutions); "
                             "use a same-padding preset such as default")
        if self.stem_stride != 1:
            raise ValueError(f"encoder {self.encoder} has its own stem: stem_stride must be 1")
        if self.encoder_config is not None and not isinstance(self.encoder_config, dict):
            raise ValueError(f"encoder_config must be a mapping of library config fields, got {self.encoder_config!r}")
        object.__setattr__(self, "depth", ENCODER_DEPTH)  # the encoder fixes the number of reductions

    @property
    def total_stride(self) -> int:
        """Input pixels per pixel of the deepest level: input sides must be multiples of it (same padding)."""
        return self.stem_stride * 2**self.depth


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How files become tensors: mask conventions and intensity normalisation.

    Stored with the model so that prediction normalises exactly as training did.
    """

    in_channels: int = 1
    n_classes: int | None = None  # None: found from the training masks
    ignore_index: int | None = None  # mask value (after mapping) that counts in no loss or metric
    foreground_value: int | None = None  # raw value that means foreground in a two-valued mask
    mask_kind: str = "auto"  # how masks hold classes (data/masks.py); "auto": found from the training masks
    mask_values: tuple[int, ...] | None = None  # "values": the raw value of class 0 and of class 1
    colours: tuple[tuple[int, int, int], ...] | None = None  # "colours": RGB of each class (found, or --palette)
    ignore_colours: tuple[tuple[int, int, int], ...] | None = None  # colours that count nowhere (e.g. "unlabeled")
    normalization: str = "auto"  # see NORMALIZATIONS; a run stores the resolved one
    percentiles: tuple[float, float] = (1.0, 99.8)
    mean: tuple[float, ...] | None = None  # per channel: the training set's ("meanstd") or ImageNet's ("imagenet")
    std: tuple[float, ...] | None = None
    class_weights: tuple[float, ...] | None = None  # the loss's w_c, filled by training; prediction divides them out

    def __post_init__(self):
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_choice("mask_kind", self.mask_kind, MASK_KINDS)
        if self.n_classes is not None and (not isinstance(self.n_classes, int) or self.n_classes < 1):
            raise ValueError(f"n_classes must be an integer >= 1, got {self.n_classes!r}")
        for name in ("colours", "ignore_colours"):  # lists from config.json
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(tuple(int(v) for v in c) for c in getattr(self, name)))
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
        raise UserError(str(exc), path=source, fix=f"correct the {cls.__name__} values") from exc


def load_file(path: str | Path) -> dict:
    """Read a JSON or YAML file into a dict (YAML by `.yaml`/`.yml` suffix)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read config ({exc.strerror})", path=path, fix="check the path") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"not valid {path.suffix or 'JSON'} ({exc})", path=path, fix="repair the file") from exc
    if not isinstance(data, dict):
        raise UserError("config must be a mapping at the top level", path=path, fix="write key: value pairs")
    return data


OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly", "constant")
LOSSES = ("ce", "dice", "ce+dice")
CLASS_WEIGHTINGS = ("auto", "median", "none")  # "auto": inverse frequency (the paper's w_c); or "w0,w1,..."
VAL_SPLITS = ("name", "random", "group")  # how validation files are held out (data/pairing.py `split_pairs`)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Random transforms applied to every training patch (image, mask and weight map together).

    Geometry (elastic, rotation, scale, flip, shift) is composed into one sampling
    grid; grey-value changes touch the image only. Zero switches a transform off.
    """

    enabled: bool = True
    elastic_std: float = 10.0  # px: std of the displacements on the coarse grid (the paper's 10)
    elastic_grid: int = 3  # coarse grid points per side (the paper's 3 x 3)
    rotate: float = 180.0  # max |angle| in degrees
    scale: float = 0.15  # zoom factor drawn log-uniformly in [1/(1+s), 1+s]
    shift: float = 8.0  # max px, on top of the random patch position
    flip: bool = True  # mirror; with rotation this covers all 8 dihedral poses
    brightness: float = 0.1  # added, uniform in +-b (normalised intensity units)
    contrast: float = 0.2  # factor uniform in 1 +- c, around the patch mean
    gamma: float = 0.2  # exponent drawn log-uniformly in [1/(1+g), 1+g]
    noise: float = 0.03  # Gaussian noise, std uniform in [0, noise]
    blur: float = 1.0  # Gaussian blur, sigma uniform in [0, blur] px ...
    blur_prob: float = 0.2  # ... applied to this share of the patches

    def __post_init__(self):
        if not (isinstance(self.elastic_grid, int) and self.elastic_grid >= 2):
            raise ValueError(f"elastic_grid must be an integer >= 2, got {self.elastic_grid!r}")
        for name in ("elastic_std", "rotate", "scale", "shift", "brightness", "contrast", "gamma", "noise", "blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.blur_prob <= 1 or self.contrast >= 1:
            raise ValueError("blur_prob must be in [0, 1] and contrast below 1")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a run learns: optimisation, loss, sampling, split, augmentation.

    Stored in the run and kept on resume. `None` means "chosen from the data or
    the model" (see `training.setup.resolve`); the run folder stores the resolved values.
    """

    preset: str = "default"
    batch_size: int = 4  # global: split across DDP processes
    patch_size: int | None = None  # network input side; None: 256 or the images' size if smaller
    samples_per_epoch: int | None = None  # None: enough patches to cover the training images once
    optimizer: str = "adamw"
    lr: float | None = None  # None: 1e-3 for AdamW, 1e-2 for SGD
    weight_decay: float = 1e-4
    momentum: float = 0.99  # SGD, the paper's value
    schedule: str = "cosine"
    warmup_steps: int | None = None  # linear warm-up; None: 5% of the steps, at most 100
    loss: str = "ce"
    weight_map: bool = True  # the paper's border weights (w0, sigma) on top of class balance
    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str = "auto"  # "auto" (inverse frequency), "median" (median frequency), "none", or "w0,w1,..."
    fg_oversample: float = 0.0  # share of patches centred on a random foreground pixel
    val_fraction: float = 0.2  # share of the files held out, as val_split says
    val_split: str = "name"  # "name": the last files by name; "random": a seeded draw; "group": the last file-name groups
    val_names: tuple[str, ...] | None = None  # explicit held-out stems (stack pages: "stem:page")
    folds: int | None = None  # k-fold: hold out fold `fold` of `folds` contiguous blocks
    fold: int = 0
    refit: bool = False  # then the final model: the same recipe on every image, same steps (training/refit.py)
    seed: int = 0
    grad_clip: float = 1.0  # max gradient norm; 0 switches clipping off
    # Transfer (training/transfer.py): where the first weights come from and how the pretrained part learns.
    init: str | None = None  # a run folder whose weights start this run (same architecture; the head anew if the classes differ)
    encoder_weights: str | None = None  # "imagenet", a file, or "none"; None: imagenet for an encoder model without init
    encoder_lr_scale: float | None = None  # encoder lr = lr x this; None: 0.1 when pretrained, else 1
    freeze_encoder_steps: int = 0  # the encoder's weights and BatchNorm statistics fixed for the first N steps
    freeze_encoder_bn_below: int = 4  # a pretrained encoder's BatchNorm statistics fixed when the per-process batch is below N
    bn_calibration: int = 32  # BatchNorm statistics re-estimated on up to this many clean training patches (at most a third of an epoch's) before each validation; 0: off
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):  # from config.json
            object.__setattr__(self, "augment", from_dict(AugmentConfig, self.augment, source="augment"))
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("val_split", self.val_split, VAL_SPLITS)
        if not isinstance(self.bn_calibration, int) or self.bn_calibration < 0:
            raise ValueError(f"bn_calibration must be an integer >= 0, got {self.bn_calibration!r}")
        for name in ("batch_size", "patch_size", "samples_per_epoch", "folds"):
            _check_positive(name, getattr(self, name))
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not 0 <= self.fg_oversample <= 1:
            raise ValueError(f"fg_oversample must be in [0, 1], got {self.fg_oversample!r}")
        if self.folds is not None and not 0 <= self.fold < self.folds:
            raise ValueError(f"fold must be in 0..{self.folds - 1}, got {self.fold!r}")
        if self.folds is not None and self.val_names:
            raise ValueError("give either folds or val_names, not both")
        if self.refit and not (self.val_fraction or self.val_names or self.folds):
            raise ValueError("refit needs held-out validation images to measure the recipe first (val_fraction > 0)")
        if self.grad_clip < 0:
            raise ValueError("grad_clip must be >= 0")
        if self.encoder_lr_scale is not None and self.encoder_lr_scale < 0:
            raise ValueError(f"encoder_lr_scale must be >= 0, got {self.encoder_lr_scale!r}")
        for name in ("freeze_encoder_steps", "freeze_encoder_bn_below"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where and when a run trains: stop conditions, devices, precision, workers, save cadence.

    A resumed run may change any of these; they never change what the run learns,
    except that a new length (epochs or steps) stretches the schedule.
    """

    epochs: int | None = None  # stop conditions: whichever comes first; none given: 50 epochs
    steps: int | None = None
    time_budget: float | None = None  # minutes of training over all invocations; stops cleanly and saves
    workers: int = 0  # DataLoader worker processes: crop (and on a CPU augment) the next batches beside the step
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA (bf16 where the GPU has it, else fp16)
    cpu_bf16: bool | None = None  # bf16 autocast on a CPU; None: on where the CPU has it natively (AVX512-BF16 or AMX)
    channels_last: bool = True  # NHWC: faster convolutions on CPUs (oneDNN), tensor cores; CPU group norm: not (slower)
    val_share: float = 0.05  # validation (with BN calibration) at most this share of the training time; >= 1: every epoch
    deterministic: bool = False  # torch.use_deterministic_algorithms: bitwise repeatable runs
    save_every: int = 0  # also checkpoint every N steps (always: each epoch, at the end, on stop)
    sync_bn: bool = False  # SyncBatchNorm across DDP processes
    # Training images above this many megapixels (TIFF image and mask) are read window by window, never whole
    # (data/lazy.py): the same patches, memory per patch. Held in memory an image costs 9 bytes/px (one channel)
    # and peaks at ~23 while its weight map is built (+390 MB measured at 16.7 MP): ~1.5 GB at 64 MP. Read
    # lazily, a patch costs ~50 ms more (tiled zlib TIFF, 492 px windows).
    lazy_above_mpix: float = 64.0

    def __post_init__(self):
        if self.lazy_above_mpix < 0:
            raise ValueError(f"lazy_above_mpix must be >= 0 megapixels, got {self.lazy_above_mpix!r}")
        for name in ("epochs", "steps"):
            _check_positive(name, getattr(self, name))
        if self.time_budget is not None and self.time_budget <= 0:
            raise ValueError(f"time_budget must be positive minutes, got {self.time_budget!r}")
        if self.workers < 0 or self.save_every < 0:
            raise ValueError("workers and save_every must be >= 0")
        if not self.val_share > 0:
            raise ValueError(f"val_share must be positive, got {self.val_share!r}")


def _check_positive(name: str, value) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
