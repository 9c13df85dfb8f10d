"""`train`: a folder of images and a folder of masks -> a run folder."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, read_config
from ..config import RunConfig
from ..devices import resolve_device
from ..errors import UserError
from ..model import build_model as build_network
from . import distributed
from .context import HOOKS, Hooks
from .loop import fit
from .options import Recipe, build_configs, check_resume_options, plain_options, resumed_run_config, stored_configs
from .setup import Job, build_context, determinism


def train(
    images: str | Path,
    masks: str | Path,
    out: str | Path,
    recipe: Recipe | None = None,
    run: RunConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    hooks: Hooks | None = None,
    build_model=build_network,
    **options,
) -> Path:
    """Train a U-Net on a folder of images and a folder of masks; returns the run folder.

    `recipe` (what the run learns: `Recipe(model, data, train)`) and `run`
    (where and when: `RunConfig`) are the configs, passed whole. `options` are
    the same fields flat, as the CLI's flags (e.g. `steps`, `time_budget` in
    minutes, `batch_size`, `lr`, `rotate`, `classes`, `augment=False`,
    `base_width`), applied on top. `resume=True` continues the run in `out`
    exactly where it stopped: its recipe is kept (options that repeat it are
    accepted), its run options may change. `hooks` maps "on_step_end" (loop),
    "on_epoch_end" (loop, row) and "on_train_end" (model, loop) to callables,
    called on every process. `build_model(model_config)` makes the network
    (default `model.build_model`: a UNet, or an EncoderUNet for `encoder`); another architecture, for comparisons, must answer
    UNet's size questions (`margin`, `valid_input_size`, ...) and is saved as
    weights only: load it with its own class. SIGTERM and the time budget stop
    the run cleanly and return; Ctrl-C (SIGINT) stops it cleanly too, then
    raises KeyboardInterrupt once everything is saved (`unetkit train` exits 130).
    """
    hooks = dict(hooks or {})
    unknown_hooks = set(hooks) - set(HOOKS)
    if unknown_hooks:
        raise ValueError(f"unknown hook(s) {', '.join(sorted(unknown_hooks))}; valid: {', '.join(HOOKS)}")
    out = Path(out)
    recipe, run, split, given = _configs(out, recipe, run, options, resume)
    job = Job(Path(images), Path(masks), out, recipe, run, split, given, resume, hooks, progress)
    device = resolve_device(run.device)
    joined_here = not torch.distributed.is_initialized()  # leave a caller's process group alone
    world = distributed.init(device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        ctx, loop = build_context(job, device, world, build_model)
        with determinism(ctx.run.deterministic):
            fit(ctx, loop)
        # Leave together: a rank that tears gloo down while rank 0 still writes
        # its files aborts at exit ("terminate called without an active exception").
        distributed.barrier(world)
        if ctx.interrupted:  # Ctrl-C: saved and stopped cleanly, but the caller must still learn of it
            raise KeyboardInterrupt
    finally:
        if joined_here:
            distributed.shutdown()
    return out


def _configs(out: Path, recipe: Recipe | None, run: RunConfig | None, options: dict, resume: bool):
    """(Recipe, RunConfig, stored split or None, the run's first options): from the arguments or the run folder."""
    if not resume:
        if (out / CONFIG_FILE).exists():
            raise UserError("run folder already holds a run", path=out, fix="pass --resume to continue it, or choose a new --out")
        return *build_configs(options, recipe, run), None, plain_options(options)
    stored = read_config(out)
    check_resume_options(stored, options, out / CONFIG_FILE)
    stored_recipe, stored_run = stored_configs(stored, str(out / CONFIG_FILE))
    return stored_recipe, resumed_run_config(run or stored_run, options), stored.get("split"), stored.get("options", {})
