"""Training: `train` (folders -> run folder) over `fit` (model + data -> weights).

Small functions, no trainer class: `train_step` (one optimiser step),
`train_one_epoch`, `evaluate` (whole held-out images), `fit` (the loop with
validation, checkpoints and stop conditions). Hooks are plain callables.

Exact resume: every random choice of a patch is a function of (seed, sample
index) (see `data.PatchDataset`, `augment.sample_params`), the learning rate is
a function of the step, and a checkpoint holds the weights, optimiser, scaler,
step and torch RNG in one file (`train_state.pt`). A run stopped at any point
(SIGKILL included) and resumed from its last checkpoint repeats the
uninterrupted run; bitwise on CPU with `deterministic=True`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from . import distributed
from .augment import augment_batch, required_slack
from .checkpoint import (
    CONFIG_FILE,
    load_train_state,
    read_config,
    save_config,
    save_train_state,
    save_weights,
)
from .config import AugmentConfig, DataConfig, ModelConfig, TrainConfig, from_dict
from .data import Example, PatchDataset, crop_mirrored, grid_windows, load_examples, pair_files, split_pairs
from .errors import UserError
from .io import atomic_path, write_text
from .losses import make_loss
from .metrics import class_scores, confusion_matrix
from .model import UNet, preset_config
from .weightmap import balancing_weights, class_frequencies, prior_offsets, weight_map

DEFAULT_EPOCHS = 50
DEFAULT_PATCH = 256
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
PLOT_EVERY_S = 30.0
HOOKS = ("on_step_end", "on_epoch_end", "on_train_end")
# Options a resumed run may change: they decide when and where it runs, not what it learns.
RESUME_OVERRIDES = ("epochs", "steps", "time_budget", "workers", "device", "save_every", "amp", "cpu_bf16")

Hooks = dict[str, Callable]


@dataclasses.dataclass
class Loop:
    """Training progress; everything here goes into `train_state.pt`."""

    step: int = 0
    total_steps: int | None = None  # None: a time-budget-only run (the schedule follows the clock)
    elapsed: float = 0.0  # training seconds over all invocations
    best: float = -math.inf  # best validation mean IoU
    history: list = dataclasses.field(default_factory=list)  # one dict per validation (metrics.csv)


@dataclasses.dataclass
class Context:
    """What `fit` works with, fixed for the run."""

    model: torch.nn.Module  # DDP-wrapped when distributed
    net: UNet  # the bare model
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: Callable
    config: TrainConfig
    data_config: DataConfig
    dataset: PatchDataset
    val: list[Example]
    run_dir: Path
    device: torch.device
    world: distributed.World
    amp_dtype: torch.dtype | None
    hooks: Hooks
    progress: bool = True
    plotted_at: float = -math.inf  # curves.png is redrawn at most every PLOT_EVERY_S, and at the end

    @property
    def steps_per_epoch(self) -> int:
        return len(self.dataset) // self.config.batch_size


# --------------------------------------------------------------------------- one step


def autocast(ctx: Context):
    """Mixed precision where the run has it (CUDA, or `cpu_bf16`), else a no-op context."""
    return torch.autocast(ctx.device.type, dtype=ctx.amp_dtype or torch.float32, enabled=ctx.amp_dtype is not None)


def train_step(ctx: Context, batch: dict) -> float:
    """One optimiser step on one batch; returns the loss."""
    image, mask, weight = batch["image"], batch["mask"], batch.get("weight")
    # 1. Forward under autocast (if on): convs and matmuls in bf16/fp16, the loss in fp32.
    with autocast(ctx):
        logits = ctx.model(image)
    loss = ctx.loss_fn(logits.float(), mask, weight)
    # 2. Backward; the scaler multiplies the loss so fp16 gradients do not underflow (a no-op otherwise).
    ctx.scaler.scale(loss).backward()
    # 3. Unscale before clipping, so the threshold applies to the true gradient norm.
    if ctx.config.grad_clip:
        ctx.scaler.unscale_(ctx.optimizer)
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.config.grad_clip)
    # 4. Step (skipped by the scaler if fp16 gradients overflowed), then adapt the scale.
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    # 5. Drop the gradients instead of zero-filling them: less memory traffic.
    ctx.optimizer.zero_grad(set_to_none=True)
    return loss.item()


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over `warmup_steps`, then the schedule over `progress` in [0, 1]."""
    warm = min(1.0, (step + 1) / (config.warmup_steps + 1)) if config.warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    decay = {
        "cosine": 0.5 * (1 + math.cos(math.pi * progress)),
        "poly": (1 - progress) ** 0.9,
        "constant": 1.0,
    }[config.schedule]
    return config.lr * warm * decay


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


# --------------------------------------------------------------------------- data stream


class StepBatches(torch.utils.data.Sampler):
    """Sample indices of this rank's share of each step's global batch, from `start` on, forever.

    Step `s` uses samples s*B .. s*B+B-1 whatever the number of processes, so a
    run may resume on a different number of them and still see the same data.
    """

    def __init__(self, start: int, batch_size: int, world: distributed.World):
        self.start, self.per_rank, self.world = start, batch_size // world.size, world

    def __iter__(self):
        step = self.start
        while True:
            first = step * self.per_rank * self.world.size + self.world.rank * self.per_rank
            yield list(range(first, first + self.per_rank))
            step += 1


def batch_stream(ctx: Context, start: int):
    """Batches from step `start` on, cropped on CPU (optionally in workers), moved to the device."""
    loader = torch.utils.data.DataLoader(
        ctx.dataset,
        batch_sampler=StepBatches(start, ctx.config.batch_size, ctx.world),
        num_workers=ctx.config.workers,
        pin_memory=ctx.device.type == "cuda",
        # Its own generator: drawing worker seeds from the global one would shift dropout after a resume.
        generator=torch.Generator().manual_seed(ctx.config.seed),
    )
    for batch in loader:
        yield {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}


def prepare(ctx: Context, batch: dict) -> dict:
    """Augment on the device; crop the target to the model's output (valid padding)."""
    size = ctx.dataset.target + 2 * ctx.dataset.margin
    image, mask, weight = augment_batch(batch, ctx.config.augment, input_size=size, target_size=ctx.dataset.target)
    return {"image": image, "mask": mask, **({"weight": weight} if weight is not None else {})}


# --------------------------------------------------------------------------- epoch


class Timer:
    """Seconds spent waiting for data (loading + augmentation) versus in total."""

    def __init__(self, device: torch.device):
        self.device, self.start, self.data = device, time.perf_counter(), 0.0

    @contextlib.contextmanager
    def waiting(self):
        begin = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # augmentation is asynchronous on a GPU
        self.data += time.perf_counter() - begin

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start

    @property
    def data_share(self) -> float:
        return self.data / max(self.total, 1e-9)


def train_one_epoch(ctx: Context, loop: Loop, stream, stopper: "Stopper") -> dict:
    """Steps until the epoch ends or a stop condition holds; returns loss and throughput."""
    from tqdm import tqdm

    epoch, done = divmod(loop.step, ctx.steps_per_epoch)
    bar = tqdm(total=ctx.steps_per_epoch, initial=done, desc=f"epoch {epoch + 1}", unit="step", leave=False,
               disable=not (ctx.progress and ctx.world.main), dynamic_ncols=True)
    timer, losses = Timer(ctx.device), []
    ctx.model.train()
    while not stopper.stop(loop):
        lr = learning_rate(ctx.config, loop.step, stopper.progress(loop))
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr
        with timer.waiting():
            batch = prepare(ctx, next(stream))
        losses.append(train_step(ctx, batch))
        loop.step += 1
        rate = len(losses) * ctx.config.batch_size / timer.total
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}", data=f"{timer.data_share:.0%}")
        bar.update()
        _call(ctx.hooks, "on_step_end", loop)
        if loop.step % ctx.steps_per_epoch == 0:
            break
        if ctx.config.save_every and loop.step % ctx.config.save_every == 0:
            save_checkpoint(ctx, loop)
    bar.close()
    steps = max(len(losses), 1)
    return {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "lr": ctx.optimizer.param_groups[0]["lr"],
        "samples_per_s": len(losses) * ctx.config.batch_size / timer.total if losses else float("nan"),
        "data_share": timer.data_share if losses else float("nan"),
        "step_s": timer.total / steps,
    }


# --------------------------------------------------------------------------- validation


@torch.inference_mode()
def evaluate(ctx: Context) -> dict:
    """IoU, Dice, pixel error and cross-entropy over the whole held-out images.

    Each image is mirror-padded to a size the model takes (plus the margin for
    valid padding), predicted in one piece and cropped back. Under DDP every
    process takes a share of the images and the counts are summed.
    """
    net, n_classes, ignore = ctx.net, ctx.data_config.n_classes, ctx.data_config.ignore_index
    was_training = net.training
    net.eval()
    offsets = prior_offsets(ctx.data_config.class_weights)  # score what prediction will write
    offsets = 0 if offsets is None else torch.from_numpy(offsets)[:, None, None].to(ctx.device)
    counts = np.zeros((n_classes, n_classes), np.int64)
    loss_sum, pixels = 0.0, 0
    for example in ctx.val[ctx.world.rank :: ctx.world.size]:
        height, width = example.shape
        m = net.margin
        size = net.valid_input_size(height + 2 * m, width + 2 * m)
        image = torch.from_numpy(crop_mirrored(example.image, -m, -m, *size))[None].to(ctx.device)
        with autocast(ctx):
            logits = net(image)[..., :height, :width].float() + offsets
        target = torch.from_numpy(example.classes.astype(np.int64))[None].to(ctx.device)
        counts += confusion_matrix(logits.argmax(1), target, n_classes, ignore)
        valid = target != ignore if ignore is not None else torch.ones_like(target, dtype=torch.bool)
        loss_sum += float(F.cross_entropy(logits, torch.where(valid, target, 0), reduction="none")[valid].sum())
        pixels += int(valid.sum())
    net.train(was_training)
    totals = torch.tensor([*counts.ravel().tolist(), loss_sum, pixels], dtype=torch.float64, device=ctx.device)
    totals = distributed.all_sum(totals, ctx.world).cpu().numpy()
    scores = class_scores(totals[:-2].reshape(n_classes, n_classes).round().astype(np.int64))
    row = {"val_loss": float(totals[-2] / max(totals[-1], 1)), "val_mean_iou": scores["mean_iou"],
           "val_mean_dice": scores["mean_dice"], "val_pixel_error": scores["pixel_error"]}
    row.update({f"val_iou_{k}": float(v) for k, v in enumerate(scores["iou"])})
    return row


def calibrate_batch_norm(ctx: Context) -> None:
    """Re-estimate BatchNorm's running statistics on clean training patches ("precise BN").

    The running averages follow the last few augmented batches: noisy, and
    shifted by the grey-value augmentation, while prediction sees clean images.
    On ISBI 2012 re-estimating them on the plain training images lowered the
    Rand error of a trained default model from 0.070 to 0.050. Train-mode
    BatchNorm uses batch statistics, so training itself is unchanged; every
    rank sees the same patches, so ranks stay identical.
    """
    norms = [m for m in ctx.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not ctx.config.bn_calibration:
        return
    side, margin = ctx.dataset.target, ctx.dataset.margin
    # At most a third of an epoch's patches: a forward pass costs about a third of a step,
    # so calibration stays near a tenth of training even with tiny epochs (the demo's are 3 steps).
    count = min(ctx.config.bn_calibration, max(ctx.config.batch_size, len(ctx.dataset) // 3))
    windows = grid_windows(ctx.dataset.examples, side, count)
    was_training, momenta = ctx.net.training, [m.momentum for m in norms]
    ctx.net.eval()  # dropout off; only the norms collect statistics
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a plain average over the batches
        m.train()
    batch = ctx.config.batch_size
    with torch.no_grad(), autocast(ctx):
        for start in range(0, len(windows), batch):
            images = [crop_mirrored(ctx.dataset.examples[i].image, top - margin, left - margin, side + 2 * margin, side + 2 * margin)
                      for i, top, left in windows[start : start + batch]]
            ctx.net(torch.from_numpy(np.stack(images)).to(ctx.device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    ctx.net.train(was_training)


# --------------------------------------------------------------------------- stop conditions


class Stopper:
    """Decides, identically on every rank, whether to stop and how far the schedule is.

    Stops at `total_steps`, when the time budget (training time over all
    invocations) is spent, or on SIGINT/SIGTERM. Without a step count the
    schedule runs on the clock: progress = elapsed / budget.
    """

    def __init__(self, ctx: Context, loop: Loop):
        self.ctx, self.begin, self.start_elapsed = ctx, time.perf_counter(), loop.elapsed
        self.budget = ctx.config.time_budget * 60 if ctx.config.time_budget else None
        self.signalled = False
        self.last = (0.0, 0.0)  # (stop, progress) agreed for the current step
        self._checked_step = -1

    def elapsed(self) -> float:
        return self.start_elapsed + time.perf_counter() - self.begin

    def _decide(self, loop: Loop) -> tuple[float, float]:
        if self._checked_step != loop.step:  # one agreement (one broadcast) per step
            elapsed = self.elapsed()
            over_time = self.budget is not None and elapsed >= self.budget
            done = loop.total_steps is not None and loop.step >= loop.total_steps
            progress = loop.step / loop.total_steps if loop.total_steps else elapsed / self.budget
            local = [float(over_time or done or self.signalled), progress]
            self.last = tuple(distributed.broadcast(local, self.ctx.world, self.ctx.device))
            self._checked_step = loop.step
        return self.last

    def stop(self, loop: Loop) -> bool:
        return bool(self._decide(loop)[0])

    def progress(self, loop: Loop) -> float:
        return self._decide(loop)[1]

    def reason(self, loop: Loop) -> str:
        if loop.total_steps is not None and loop.step >= loop.total_steps:
            return f"reached {loop.total_steps} steps"
        return "signal received" if self.signalled else "time budget spent"

    @contextlib.contextmanager
    def catching_signals(self):
        """SIGINT/SIGTERM finish the current step, then save and stop (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        def handler(signum, frame):  # noqa: ARG001
            self.signalled = True

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


# --------------------------------------------------------------------------- the loop


def fit(ctx: Context, loop: Loop) -> Loop:
    """Train until a stop condition; validate and checkpoint each epoch; returns the progress."""
    stopper = Stopper(ctx, loop)
    stream = batch_stream(ctx, loop.step)
    with stopper.catching_signals(), contextlib.closing(stream):
        while not stopper.stop(loop):
            stats = train_one_epoch(ctx, loop, stream, stopper)
            loop.elapsed = stopper.elapsed()
            _end_of_epoch(ctx, loop, stats)
    if not loop.history or loop.history[-1]["step"] != loop.step:  # nothing ran (resumed at the end): record it
        _end_of_epoch(ctx, loop, {})
    # The stop was decided after the last validation and save: record the time it saw,
    # so a resumed run's budget counts validation too.
    loop.elapsed = stopper.elapsed()
    save_checkpoint(ctx, loop)
    if ctx.world.main and loop.history:
        plot_curves(ctx.run_dir, loop.history)
    if ctx.world.main and ctx.progress:
        _print_summary(ctx, loop, stopper.reason(loop))
    _call(ctx.hooks, "on_train_end", ctx.net, loop)
    return loop


def _end_of_epoch(ctx: Context, loop: Loop, stats: dict) -> None:
    """Validate, record a metrics row, keep the best weights, checkpoint."""
    distributed.average_buffers(ctx.net, ctx.world)
    calibrate_batch_norm(ctx)
    row = {"epoch": loop.step / ctx.steps_per_epoch, "step": loop.step, "samples": loop.step * ctx.config.batch_size,
           "time_s": loop.elapsed, **stats}
    if ctx.val:
        row.update(evaluate(ctx))
    loop.history.append({k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()})  # plain for weights_only
    improved = bool(ctx.val) and row["val_mean_iou"] > loop.best
    if improved:
        loop.best = row["val_mean_iou"]
    if ctx.world.main:
        if improved:
            save_weights(ctx.run_dir, ctx.net, "best")
        write_metrics(ctx.run_dir, loop.history)
        if time.perf_counter() - ctx.plotted_at > PLOT_EVERY_S:
            plot_curves(ctx.run_dir, loop.history)
            ctx.plotted_at = time.perf_counter()
        if ctx.progress:
            _print_row(row)
    save_checkpoint(ctx, loop)
    _call(ctx.hooks, "on_epoch_end", loop, row)


def save_checkpoint(ctx: Context, loop: Loop) -> None:
    """Weights (safetensors) and the whole training state, rank 0 only, each file atomic.

    The state file repeats the weights, so a kill between the two writes can
    never pair new weights with an old optimiser.
    """
    if not ctx.world.main:
        return
    save_weights(ctx.run_dir, ctx.net, "last")
    state = {
        "loop": dataclasses.asdict(loop),
        "model": {k: v.detach().cpu() for k, v in ctx.net.state_dict().items()},
        "optimizer": ctx.optimizer.state_dict(),
        "scaler": ctx.scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if ctx.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(ctx.device)
    save_train_state(ctx.run_dir, state)


def restore_checkpoint(ctx: Context, state: dict) -> Loop:
    """Put model, optimiser, scaler and RNG back where `save_checkpoint` left them."""
    ctx.net.load_state_dict(state["model"])
    ctx.optimizer.load_state_dict(state["optimizer"])
    ctx.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], ctx.device)
    return Loop(**state["loop"])


def _call(hooks: Hooks, name: str, *args) -> None:
    if name in hooks:
        hooks[name](*args)


# --------------------------------------------------------------------------- outputs


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """metrics.csv: one row per validation, columns in first-seen order, written atomically."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(columns)]
    lines += [",".join(_csv_value(row.get(c)) for c in columns) for row in history]
    write_text(run_dir / METRICS_FILE, "\n".join(lines) + "\n")


def _csv_value(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def plot_curves(run_dir: Path, history: list[dict]) -> None:
    """curves.png: losses (left) and validation scores (right) against training samples."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    samples = [row["samples"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation cross-entropy")):
        left.plot(samples, [row.get(key, np.nan) for row in history], marker=".", label=label)
    for key, label in (("val_mean_iou", "mean IoU"), ("val_mean_dice", "mean Dice"), ("val_pixel_error", "pixel error")):
        right.plot(samples, [row.get(key, np.nan) for row in history], marker=".", label=label)
    left.set(xlabel="training samples", ylabel="loss", yscale="log", title="loss")
    right.set(xlabel="training samples", ylim=(0, 1), title="validation")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend()
    fig.tight_layout()
    with atomic_path(run_dir / CURVES_FILE) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _print_row(row: dict) -> None:
    from tqdm import tqdm

    shown = {"epoch": ".2f", "step": "d", "train_loss": ".4f", "val_loss": ".4f", "val_mean_iou": ".4f",
             "val_pixel_error": ".4f", "samples_per_s": ".1f", "data_share": ".0%"}
    tqdm.write("  ".join(f"{k} {row[k]:{f}}" for k, f in shown.items() if k in row))


def _print_summary(ctx: Context, loop: Loop, reason: str) -> None:
    from tqdm import tqdm

    last = loop.history[-1] if loop.history else {}
    scores = (
        f"; validation mean IoU {last['val_mean_iou']:.4f}, pixel error {last['val_pixel_error']:.4f} "
        f"(best mean IoU {loop.best:.4f})"
        if "val_mean_iou" in last
        else ""
    )
    tqdm.write(f"stopped after {loop.step} steps, {loop.elapsed / 60:.1f} min ({reason}){scores}; run folder {ctx.run_dir}")


# --------------------------------------------------------------------------- folders -> run


def train(
    images: str | Path,
    masks: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    hooks: Hooks | None = None,
    build_model=UNet,
    **options,
) -> Path:
    """Train a U-Net on a folder of images and a folder of masks; returns the run folder.

    `options` are fields of `TrainConfig` (e.g. `epochs`, `steps`,
    `time_budget` in minutes, `batch_size`, `lr`, `loss`, `val_names`), of
    `DataConfig` (`ignore_index`, `foreground_value`, `normalization`, and
    `classes` for `n_classes`), of `AugmentConfig` (`elastic_std`, `rotate`,
    ...; `augment=False` switches augmentation off) and of `ModelConfig`
    (`depth`, `base_width`, ... overriding the preset). `resume=True` continues
    the run in `out` exactly where it stopped. `hooks` maps "on_step_end"
    (loop), "on_epoch_end" (loop, row) and "on_train_end" (model, loop) to
    callables, called on every process. `build_model(model_config)` makes the
    network (default `UNet`); another architecture, for comparisons, must answer
    UNet's size questions (`margin`, `valid_input_size`, ...) and is saved as
    weights only: load it with its own class.
    """
    hooks = dict(hooks or {})
    unknown_hooks = set(hooks) - set(HOOKS)
    if unknown_hooks:
        raise ValueError(f"unknown hook(s) {', '.join(sorted(unknown_hooks))}; valid: {', '.join(HOOKS)}")
    out = Path(out)
    model_config, data_config, config, split = _configs(out, resume, options)
    device = _device(config.device)
    joined_here = not torch.distributed.is_initialized()  # leave a caller's process group alone
    world = distributed.init(device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        ctx, loop = _build(images, masks, out, resume, model_config, data_config, config, split, device, world, hooks, progress,
                           build_model)
        with _determinism(config.deterministic):
            fit(ctx, loop)
        # Leave together: a rank that tears gloo down while rank 0 still writes
        # its files aborts at exit ("terminate called without an active exception").
        distributed.barrier(world)
    finally:
        if joined_here:
            distributed.shutdown()
    return out


def _configs(out: Path, resume: bool, options: dict):
    """(ModelConfig, DataConfig, TrainConfig, split or None) from the options or, on resume, the run."""
    if resume:
        return _resumed_configs(out, options)
    if (out / CONFIG_FILE).exists():
        raise UserError("run folder already holds a run", path=out, fix="pass --resume to continue it, or choose a new --out")
    groups = _split_options(options)
    config = _build_config(TrainConfig, groups["train"])
    try:
        model_config = preset_config(config.preset, **groups["model"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad model option ({exc})", fix="see `unetkit model --help`") from None
    return model_config, _build_config(DataConfig, groups["data"]), config, None


def _split_options(options: dict) -> dict[str, dict]:
    """Sort flat options into train / data / augment / model groups."""
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (TrainConfig, DataConfig, AugmentConfig, ModelConfig)}
    options = dict(options)
    if "classes" in options:
        options["n_classes"] = options.pop("classes")
    groups: dict[str, dict] = {"train": {}, "data": {}, "augment": {}, "model": {}}
    for key, value in options.items():
        if key in fields[TrainConfig] and key != "augment":
            groups["train"][key] = value
        elif key in fields[DataConfig] and key != "in_channels":
            groups["data"][key] = value
            if key == "n_classes":
                groups["model"][key] = value
        elif key in fields[AugmentConfig] and key != "enabled":
            groups["augment"][key] = value
        elif key in fields[ModelConfig] and key != "in_channels":
            groups["model"][key] = value
        elif key == "augment":
            groups["augment"].update(_augment_option(value))
        else:
            raise UserError(f"unknown training option {key!r}", fix="see `unetkit train --help` for the options")
    groups["train"]["augment"] = _build_config(AugmentConfig, groups["augment"])
    return groups


def _augment_option(value) -> dict:
    if isinstance(value, bool):
        return {"enabled": value}
    return dataclasses.asdict(value) if isinstance(value, AugmentConfig) else dict(value)


def _build_config(cls, values: dict, what: str = "option"):
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad {cls.__name__} {what} ({exc})", fix="see `unetkit train --help` for valid values") from None


def _resumed_configs(out: Path, options: dict):
    """The run's stored configs; options may change only when and where it runs."""
    stored = read_config(out)
    source = str(out / CONFIG_FILE)
    config = from_dict(TrainConfig, stored.get("train", {}), source=source)
    groups = _split_options(options)
    given = {**groups["train"], **groups["data"], **groups["model"], **groups["augment"]}
    given.pop("augment")
    stored_values = {**stored.get("train", {}), **stored.get("train", {}).get("augment", {}),
                     **stored.get("data", {}), **stored.get("model", {})}
    changed = [k for k, v in given.items() if k not in RESUME_OVERRIDES and _plain(v) != stored_values.get(k)]
    if changed:
        raise UserError(
            f"a resumed run keeps its configuration, but {', '.join(changed)} differ(s) from it",
            path=out / CONFIG_FILE,
            fix=f"drop those options (only {', '.join(RESUME_OVERRIDES)} may change), or start a new --out",
        )
    overrides = {k: v for k, v in groups["train"].items() if k in RESUME_OVERRIDES}
    if "epochs" in overrides or "steps" in overrides:  # a new length replaces the old one
        overrides = {"epochs": None, "steps": None, **overrides}
    config = dataclasses.replace(config, **overrides)
    return (
        from_dict(ModelConfig, stored["model"], source=source),
        from_dict(DataConfig, stored.get("data", {}), source=source),
        config,
        stored.get("split"),
    )


def _plain(value):
    """An option as config.json stores it (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}", fix="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA is not available on this machine", fix="use --device cpu")
    return device


@contextlib.contextmanager
def _determinism(on: bool):
    """Deterministic kernels for bitwise repeatable runs; restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


def _build(images, masks, out, resume, model_config, data_config, config, split, device, world, hooks, progress,
           build_model):
    """Read the data, build model and optimiser, restore a checkpoint: everything `fit` needs."""
    if config.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only", fix="drop --sync-bn on a CPU")
    if config.batch_size % world.size:
        raise UserError(f"batch size {config.batch_size} does not split over {world.size} processes",
                        fix=f"use a --batch-size that is a multiple of {world.size}")
    train_pairs, val_pairs = _pairs(images, masks, config, split)
    train_set, val_set, data_config = load_examples(train_pairs, val_pairs, data_config, progress=progress and world.main)
    model_config = dataclasses.replace(model_config, in_channels=data_config.in_channels, n_classes=data_config.n_classes)
    torch.manual_seed(config.seed)  # the initial weights
    net = build_model(model_config).to(device)
    config = resolve_train_config(config, net, train_set)
    class_weights = _class_weights(config, train_set, data_config)
    data_config = dataclasses.replace(data_config, class_weights=None if class_weights is None else tuple(map(float, class_weights)))
    _attach_weight_maps(train_set, config, data_config, class_weights, progress and world.main)
    margin = net.margin
    target = config.patch_size - 2 * margin
    dataset = PatchDataset(
        train_set, target=target, margin=margin, slack=required_slack(config.augment, config.patch_size),
        seed=config.seed, samples_per_epoch=config.samples_per_epoch, fg_oversample=config.fg_oversample,
        ignore_index=data_config.ignore_index,
    )
    if world.main and not resume:
        split = {"train": [p.name for p in train_pairs], "val": [p.name for p in val_pairs]}
        save_config(out, model_config, data_config, train=config, split=split)
    distributed.barrier(world)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    optimizer = make_optimizer(net, config)
    ctx = Context(
        model=distributed.wrap(net, world, device, config.sync_bn), net=net, optimizer=optimizer, scaler=scaler,
        loss_fn=make_loss(config.loss, class_weights=None if class_weights is None else torch.as_tensor(class_weights, device=device),
                          ignore_index=data_config.ignore_index),
        config=config, data_config=data_config, dataset=dataset, val=val_set, run_dir=out, device=device, world=world,
        amp_dtype=amp_dtype, hooks=hooks, progress=progress,
    )
    loop = Loop(total_steps=_total_steps(config, ctx.steps_per_epoch))
    if resume:
        loop = _resume_loop(ctx, out, config)
    if world.main and progress:
        _print_plan(ctx, loop, len(train_set))
    return ctx, loop


def _pairs(images, masks, config: TrainConfig, split: dict | None):
    pairs = pair_files(images, masks)
    if split is None:
        return split_pairs(pairs, val_fraction=config.val_fraction, val_names=config.val_names,
                           folds=config.folds, fold=config.fold)
    by_name = {p.name: p for p in pairs}
    missing = [n for n in split["train"] + split["val"] if n not in by_name]
    if missing:
        raise UserError(f"the run was trained on images that are missing now: {', '.join(missing[:5])}",
                        path=images, fix="resume with the same --images and --masks folders")
    return [by_name[n] for n in split["train"]], [by_name[n] for n in split["val"]]


def resolve_train_config(config: TrainConfig, net: UNet, examples: list[Example]) -> TrainConfig:
    """Fill the `None` fields of a TrainConfig from the model and the data; check the patch size."""
    smallest = min(min(e.shape) for e in examples)
    patch = config.patch_size or _default_patch(net, smallest)
    try:
        net.check_input_size(patch, patch)
    except ValueError as exc:
        raise UserError(str(exc), fix="pass one of the valid sizes as --patch-size") from None
    if net.margin and patch <= 2 * net.margin:
        raise UserError(f"patch {patch} leaves no output after the {net.margin} px margins", fix="raise --patch-size")
    target = patch - 2 * net.margin
    per_epoch = config.samples_per_epoch or PatchDataset.covering_count(examples, target)
    per_epoch = -(-max(per_epoch, config.batch_size) // config.batch_size) * config.batch_size  # whole steps
    no_stop = config.epochs is None and config.steps is None and config.time_budget is None
    epochs = DEFAULT_EPOCHS if no_stop else config.epochs
    total = _total_steps(dataclasses.replace(config, epochs=epochs), per_epoch // config.batch_size)
    warmup = config.warmup_steps if config.warmup_steps is not None else min(100, (total or 2000) // 20)
    return dataclasses.replace(
        config, patch_size=patch, samples_per_epoch=per_epoch, epochs=epochs, warmup_steps=warmup,
        lr=config.lr or {"adamw": 1e-3, "sgd": 1e-2}[config.optimizer],
    )


def _default_patch(net: UNet, smallest_side: int) -> int:
    """Same padding: 256 px, or the images' side rounded down to a multiple of total_stride.

    Valid padding: the smallest input whose output is at least 128 px (or the images' side).
    """
    if net.margin:
        wanted = min(128, smallest_side) + 2 * net.margin
        return net.valid_input_size(wanted, wanted)[0]
    unit = net.config.total_stride
    return max(unit, min(DEFAULT_PATCH, smallest_side) // unit * unit)


def _total_steps(config: TrainConfig, steps_per_epoch: int) -> int | None:
    candidates = [n for n in (config.steps, config.epochs and config.epochs * steps_per_epoch) if n]
    return min(candidates) if candidates else None


def _resume_loop(ctx: Context, out: Path, config: TrainConfig) -> Loop:
    state = load_train_state(out)
    if state is None:
        raise UserError("no training state to resume from", path=out, fix="train without --resume")
    loop = restore_checkpoint(ctx, state)
    loop.total_steps = _total_steps(config, ctx.steps_per_epoch)  # stop options may have changed
    return loop


def _class_weights(config: TrainConfig, examples: list[Example], data_config: DataConfig) -> np.ndarray | None:
    """w_c per class: inverse training-set frequency ("auto"), none, or given."""
    if config.class_weights == "none":
        return None
    if config.class_weights == "auto":
        counts = class_frequencies([e.classes for e in examples], data_config.n_classes, data_config.ignore_index)
        return balancing_weights(counts)
    try:
        weights = np.array([float(w) for w in config.class_weights.split(",")], np.float32)
    except ValueError:
        weights = np.array([])
    if len(weights) != data_config.n_classes or np.any(weights < 0):
        raise UserError(f"--class-weights {config.class_weights!r} is not {data_config.n_classes} numbers >= 0",
                        fix="pass auto, none, or one weight per class like 1,3")
    return weights


def _attach_weight_maps(examples, config, data_config, class_weights, progress: bool) -> None:
    """The paper's weight map per training image, computed once here and cropped with every patch."""
    if not config.weight_map:
        return
    from tqdm import tqdm

    class_weights = np.ones(data_config.n_classes, np.float32) if class_weights is None else class_weights
    for example in tqdm(examples, desc="weight maps", unit="image", disable=not progress):
        example.weight = weight_map(example.classes, class_weights, w0=config.w0, sigma=config.sigma,
                                    ignore_index=data_config.ignore_index)


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """CUDA: bf16 where the GPU has it, else fp16 (with loss scaling). CPU: bf16 if asked for."""
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if config.amp else None
    if not config.cpu_bf16:
        return None
    if not cpu_has_native_bf16():
        raise UserError("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 would be emulated and slower",
                        fix="train without --cpu-bf16")
    return torch.bfloat16


def cpu_has_native_bf16() -> bool:
    # torch exposes the CPU feature checks only as private helpers; absent ones mean "no".
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def _print_plan(ctx: Context, loop: Loop, n_train: int) -> None:
    from tqdm import tqdm

    c = ctx.config
    stop = [f"{loop.total_steps} steps" if loop.total_steps else None,
            f"{c.time_budget:g} min" if c.time_budget else None]
    params = sum(p.numel() for p in ctx.net.parameters())
    tqdm.write(
        f"training {c.preset} U-Net ({params:,} parameters) on {ctx.device}"
        f"{f' x {ctx.world.size} processes' if ctx.world.distributed else ''}: {n_train} training / "
        f"{len(ctx.val)} validation images, patches {c.patch_size} px, batch {c.batch_size}, "
        f"{ctx.steps_per_epoch} steps per epoch; stops at {' or '.join(s for s in stop if s)}"
        f"{f'; resuming at step {loop.step}' if loop.step else ''}"
    )
