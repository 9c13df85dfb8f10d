"""What a run tells: metrics.csv, one console line per epoch, the plan at the start and the summary at the end."""

from __future__ import annotations

from pathlib import Path

from ..io import write_text
from ..model import count_parameters
from .context import Context, Loop
from .refit import held_out_minutes

METRICS_FILE = "metrics.csv"
PLOT_EVERY_S = 120.0  # curves.png is redrawn at most this often, and at the end: a redraw costs ~0.6 s (2% of a run at 30 s)


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


def print_row(row: dict) -> None:
    from tqdm import tqdm

    shown = {"epoch": ".2f", "step": "d", "train_loss": ".4f", "val_loss": ".4f", "val_mean_iou": ".4f",
             "val_pixel_error": ".4f", "samples_per_s": ".1f", "data_share": ".0%"}
    tqdm.write("  ".join(f"{k} {row[k]:{f}}" for k, f in shown.items() if k in row))


def print_summary(ctx: Context, loop: Loop, reason: str) -> None:
    from tqdm import tqdm

    last = loop.history[-1] if loop.history else {}
    scores = (
        f"; validation mean IoU {last['val_mean_iou']:.4f}, pixel error {last['val_pixel_error']:.4f} "
        f"(best mean IoU {loop.best:.4f})"
        if "val_mean_iou" in last
        else ""
    )
    tqdm.write(f"stopped after {loop.step} steps, {loop.elapsed / 60:.1f} min ({reason}){scores}; run folder {ctx.run_dir}")


def _transfer(ctx: Context) -> str:
    """ with encoder NAME (its weights, lr scale, frozen statistics), from RUN: what the run starts from."""
    c, encoder = ctx.config, ctx.model_config.encoder
    parts = [f" with encoder {encoder} ({c.encoder_weights} weights, lr x{c.encoder_lr_scale:g}"
             f"{', BatchNorm statistics frozen' if getattr(ctx.net, 'encoder_bn_frozen', False) else ''}"
             f"{f', frozen for {c.freeze_encoder_steps} steps' if c.freeze_encoder_steps else ''})" if encoder else "",
             f" from the weights of {c.init}" if c.init else ""]
    return "".join(parts)


def print_plan(ctx: Context, loop: Loop, n_train: int) -> None:
    from tqdm import tqdm

    c = ctx.config
    minutes = held_out_minutes(ctx.run, c)
    budget = minutes and f"{minutes:g} min"
    if budget and c.refit:
        budget += f" (of {ctx.run.time_budget:g} min: the final model on every image gets the rest)"
    stop = [f"{loop.total_steps} steps" if loop.total_steps else None, budget]
    params = count_parameters(ctx.net)
    tqdm.write(
        f"training {c.preset} U-Net{_transfer(ctx)} ({params:,} parameters) on {ctx.device}"
        f"{f' x {ctx.world.size} processes' if ctx.world.distributed else ''}: {n_train} training / "
        f"{len(ctx.val)} validation images, patches {c.patch_size} px, batch {c.batch_size}, "
        f"{ctx.steps_per_epoch} steps per epoch; stops at {' or '.join(s for s in stop if s)}"
        f"{f'; resuming at step {loop.step}' if loop.step else ''}"
    )
