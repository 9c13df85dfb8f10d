"""The training loop: `train_one_epoch` and `fit` (validation, checkpoints and stop conditions around it)."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from ..checkpoint import save_weights
from ..report import plot_curves
from . import distributed
from .context import Context, Loop, call_hook
from .logs import PLOT_EVERY_S, print_row, print_summary, write_metrics
from .state import save_checkpoint
from .step import batch_stream, learning_rate, set_learning_rate, train_step
from .stopping import Stopper
from .transfer import follow_freeze
from .validate import calibrate_batch_norm, validate


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


def train_one_epoch(ctx: Context, loop: Loop, stream, stopper: Stopper) -> dict:
    """Steps until the epoch ends or a stop condition holds; returns loss and throughput."""
    from tqdm import tqdm

    epoch, done = divmod(loop.step, ctx.steps_per_epoch)
    # A bar on a terminal only (disable=None): a log file gets the one line per epoch of `logs.print_row`.
    bar = tqdm(total=ctx.steps_per_epoch, initial=done, desc=f"epoch {epoch + 1}", unit="step", leave=False,
               disable=None if ctx.progress and ctx.world.main else True, dynamic_ncols=True)
    timer, losses = Timer(ctx.device), []
    ctx.model.train()
    while not stopper.stop(loop):
        lr = learning_rate(ctx.config, loop.step, stopper.progress(loop))
        set_learning_rate(ctx.optimizer, lr)
        follow_freeze(ctx.net, ctx.config, loop.step)
        with timer.waiting():
            batch = next(stream)
        losses.append(train_step(ctx, batch))
        loop.step += 1
        rate = len(losses) * ctx.config.batch_size / timer.total
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}", data=f"{timer.data_share:.0%}")
        bar.update()
        call_hook(ctx.hooks, "on_step_end", loop)
        if loop.step % ctx.steps_per_epoch == 0:
            break
        if ctx.run.save_every and loop.step % ctx.run.save_every == 0:
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


def fit(ctx: Context, loop: Loop) -> Loop:
    """Train until a stop condition; checkpoint each epoch, validate on a time share; returns the progress."""
    stopper = Stopper(ctx, loop)
    stream = batch_stream(ctx, loop.step)
    with stopper.catching_signals(), contextlib.closing(stream):
        while not stopper.stop(loop):
            stats = train_one_epoch(ctx, loop, stream, stopper)
            loop.elapsed = stopper.elapsed()
            _end_of_epoch(ctx, loop, stats, validating=stopper.stop(loop) or _validation_due(ctx, loop))
    _validate_the_end(ctx, loop)
    # The stop was decided after the last validation and save: record the time it saw,
    # so a resumed run's budget counts validation too.
    loop.elapsed = stopper.elapsed()
    save_checkpoint(ctx, loop)
    if ctx.world.main and loop.history:
        _plot(ctx, loop)
    if ctx.world.main:  # also with progress off (--quiet): the one-line summary
        print_summary(ctx, loop, stopper.reason(loop))
    call_hook(ctx.hooks, "on_train_end", ctx.net, loop)
    ctx.interrupted, ctx.signalled = stopper.interrupted, stopper.signalled
    return loop


def _validation_due(ctx: Context, loop: Loop) -> bool:
    """Whether validating now keeps validation within `val_share` of the time so far (the same on every rank).

    Validating after every epoch cost the demo (3 steps an epoch) most of its
    budget. The first epoch always validates; later ones when the time spent
    validating, plus one more validation at its mean cost, stays within the
    share. Deterministic runs validate every epoch: a clock would make the
    "best" weights differ between repeats.
    """
    if ctx.run.val_share >= 1 or ctx.run.deterministic:
        return True
    costs = loop.validation_seconds
    due = not costs or sum(costs) + np.mean(costs) <= ctx.run.val_share * loop.elapsed
    return bool(distributed.broadcast([float(due)], ctx.world, ctx.device)[0])


def _validate_the_end(ctx: Context, loop: Loop) -> None:
    """The last row holds a validation: add one where the run ended without it (e.g. resumed at its end)."""
    last = loop.history[-1] if loop.history else {}
    if last.get("step") != loop.step:
        _end_of_epoch(ctx, loop, {}, validating=True)
    elif "val_s" not in last:
        _end_of_epoch(ctx, loop, loop.history.pop(), validating=True)


def _end_of_epoch(ctx: Context, loop: Loop, stats: dict, validating: bool) -> None:
    """Record a metrics row; if `validating`, calibrate BatchNorm, validate and keep the best weights; checkpoint."""
    row = {"epoch": loop.step / ctx.steps_per_epoch, "step": loop.step, "samples": loop.step * ctx.config.batch_size,
           "time_s": loop.elapsed, **stats}
    if validating:
        begin = time.perf_counter()
        distributed.average_buffers(ctx.net, ctx.world)
        calibrate_batch_norm(ctx)
        if ctx.val:
            row.update(validate(ctx))
        row["val_s"] = time.perf_counter() - begin
    loop.history.append({k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()})  # plain for weights_only
    improved = "val_mean_iou" in row and row["val_mean_iou"] > loop.best
    if improved:
        loop.best = row["val_mean_iou"]
    if ctx.world.main:
        if improved:
            save_weights(ctx.run_dir, ctx.net, "best")
        write_metrics(ctx.run_dir, loop.history)
        if time.perf_counter() - ctx.plotted_at > PLOT_EVERY_S:
            _plot(ctx, loop)
        if ctx.progress:
            print_row(row)
    save_checkpoint(ctx, loop)
    call_hook(ctx.hooks, "on_epoch_end", loop, row)


def _plot(ctx: Context, loop: Loop) -> None:
    """Redraw curves.png if it misses rows (matplotlib costs ~0.5 s: not twice for one row)."""
    if len(loop.history) > ctx.plotted_rows:
        plot_curves(ctx.run_dir, loop.history)
        ctx.plotted_at, ctx.plotted_rows = time.perf_counter(), len(loop.history)
