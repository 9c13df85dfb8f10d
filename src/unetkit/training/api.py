"""`train`: a folder of images and a folder of masks -> a run folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, FINAL_DIR, read_config
from ..config import RunConfig
from ..devices import keep_freed_memory, resolve_device
from ..errors import UserError
from ..model import build_model as build_network
from . import distributed
from .context import HOOKS, Hooks, Loop
from .loop import fit
from .options import Recipe, build_configs, check_resume_options, plain_options, resumed_run_config, stored_configs
from .planned import plan as plan_data
from .refit import final_configs, final_state, mark_final
from .setup import Job, build_context, cache_folder, determinism


def train(
    images: str | Path,
    masks: str | Path,
    out: str | Path,
    recipe: Recipe | None = None,
    run: RunConfig | None = None,
    *,
    resume: bool = False,
    plan: bool = True,
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
    accepted), its run options may change, its stored plan is shown again.
    `plan=True` chooses the options not given (normalisation, patch, batch,
    rotations, border weights, class weighting, loss, validation split) from
    the data as `unetkit.plan` does, and stores the plan in config.json (a
    `recipe` passed whole is taken as given: no plan); `plan=False`: the
    fixed defaults. `refit=True`: once the held-out run ends, `out/final` trains the same recipe on every
    image for as many steps, and loading `out` picks that final model
    (`training/refit.py`). `hooks` maps "on_step_end" (loop),
    "on_epoch_end" (loop, row) and "on_train_end" (model, loop) to callables,
    called on every process. `build_model(model_config)` makes the network
    (default `model.build_model`: a UNet, or an EncoderUNet for `encoder`); another architecture, for comparisons, must answer
    UNet's size questions (`margin`, `valid_input_size`, ...) and is saved as
    weights only: load it with its own class. SIGTERM and the time budget stop
    the run cleanly and return; Ctrl-C (SIGINT) stops it cleanly too, then
    raises KeyboardInterrupt once everything is saved (`unetkit train` exits 130).
    """
    out = Path(out)
    job = _job(Path(images), Path(masks), out, recipe, run, options, resume=resume, plan=plan, hooks=_checked(hooks),
               progress=progress)
    device = resolve_device(job.run.device)
    if device.type == "cpu":
        keep_freed_memory()
    joined_here = not torch.distributed.is_initialized()  # leave a caller's process group alone
    world = distributed.init(device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        _fit(job, device, world, build_model)
    finally:
        shutil.rmtree(cache_folder(out, world), ignore_errors=True)  # what lazily read images kept on disk
        if joined_here:
            distributed.shutdown()
    return out


def _fit(job: Job, device: torch.device, world: distributed.World, build_model) -> None:
    """Train the run, then its final model on every image where the recipe asks for one."""
    ctx, loop = build_context(job, device, world, build_model)
    with determinism(ctx.run.deterministic):
        fit(ctx, loop)
    # Leave together: a rank that tears gloo down while rank 0 still writes
    # its files aborts at exit ("terminate called without an active exception").
    distributed.barrier(world)
    if ctx.interrupted:  # Ctrl-C: saved and stopped cleanly, but the caller must still learn of it
        raise KeyboardInterrupt
    if ctx.config.refit and not distributed.from_main(lambda: ctx.signalled, world):  # SIGTERM: resume finishes it
        _train_final(job, loop, world, build_model)


def _train_final(job: Job, loop: Loop, world: distributed.World, build_model) -> None:
    """RUN/final: the recipe again on every image for the held-out run's steps (training/refit.py)."""
    state = distributed.from_main(lambda: final_state(job.out, loop.step), world)
    if state == "done":
        return
    if world.main and job.progress:
        from tqdm import tqdm

        tqdm.write(f"final model: the same recipe on every image for {loop.step} steps, in {job.out / FINAL_DIR}")
    recipe, run = final_configs(job.out, loop.step, loop.elapsed)
    train(job.images, job.masks, job.out / FINAL_DIR, recipe, run, resume=state == "resume", plan=False,
          progress=job.progress, hooks=job.hooks, build_model=build_model)
    if world.main:
        mark_final(job.out, loop.step)
    distributed.barrier(world)


def _checked(hooks: Hooks | None) -> Hooks:
    unknown = set(hooks or {}) - set(HOOKS)
    if unknown:
        raise ValueError(f"unknown hook(s) {', '.join(sorted(unknown))}; valid: {', '.join(HOOKS)}")
    return dict(hooks or {})


def _job(images: Path, masks: Path, out: Path, recipe, run, options: dict, *, resume: bool, plan: bool, hooks, progress) -> Job:
    if resume:
        recipe, run, split, given, stored_plan = _resumed_configs(out, run, options)
    else:
        (recipe, run, given, stored_plan), split = _new_configs(images, masks, out, recipe, run, options, plan), None
    return Job(images, masks, out, recipe, run, split, given, resume, hooks, progress, stored_plan)


def _new_configs(images: Path, masks: Path, out: Path, recipe, run, options: dict, planned: bool):
    """(Recipe, RunConfig, the options given, the plan as a dict or None) of a new run."""
    if (out / CONFIG_FILE).exists():
        raise UserError("run folder already holds a run", path=out, fix="pass --resume to continue it, or choose a new --out")
    the_plan = plan_data(images, masks, **options) if planned and recipe is None else None
    chosen = the_plan.planned() if the_plan else {}
    return *build_configs({**chosen, **options}, recipe, run), plain_options(options), the_plan and the_plan.to_dict()


def _resumed_configs(out: Path, run: RunConfig | None, options: dict):
    """(Recipe, RunConfig, split, the first options, the plan) of the run in `out`: stored, never planned again."""
    stored = read_config(out)
    check_resume_options(stored, options, out / CONFIG_FILE)
    stored_recipe, stored_run = stored_configs(stored, str(out / CONFIG_FILE))
    run = resumed_run_config(run or stored_run, options)
    return stored_recipe, run, stored.get("split"), stored.get("options", {}), stored.get("plan")
