"""Everything `fit` needs, built from the folders and the configs: data, model, optimiser, loss, restored state."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_train_state, remove_stale_temporaries, save_config
from ..config import DataConfig, RunConfig, TrainConfig
from ..data import (
    Example,
    PatchDataset,
    balancing_weights,
    load_examples,
    median_frequency_weights,
    pair_files,
    required_slack,
    split_pairs,
)
from ..devices import autocast_dtype, training_memory_format
from ..errors import UserError
from ..model import make_loss
from ..planning import Plan, default_patch
from . import distributed
from .context import Context, Hooks, Loop
from .logs import print_plan
from .options import Recipe, write_recipe
from .state import restore_checkpoint
from .step import make_optimizer
from .transfer import load_first_weights, prepare_encoder, resolve_transfer

DEFAULT_EPOCHS = 50


@dataclasses.dataclass(frozen=True)
class Job:
    """One invocation of `train`: the folders, the configs, and how it was started."""

    images: Path
    masks: Path
    out: Path
    recipe: Recipe
    run: RunConfig
    split: dict | None  # the stored split of a resumed run
    given: dict  # the flat options the run was started with (config.json keeps them: a resume compares with them)
    resume: bool
    hooks: Hooks
    progress: bool
    plan: dict | None = None  # the plan from the data (`planning.Plan.to_dict`), stored in config.json


def build_context(job: Job, device: torch.device, world: distributed.World, build_model) -> tuple[Context, Loop]:
    """Read the data, build model and optimiser, restore a checkpoint: everything `fit` needs."""
    _check_world(job, device, world)
    if job.resume and world.main:
        remove_stale_temporaries(job.out)  # what writes killed mid-way left behind
    if job.plan and world.main and job.progress:
        from tqdm import tqdm

        tqdm.write(("the run's stored plan:\n" if job.resume else "") + Plan.from_dict(job.plan).table())
    recipe = resolve_transfer(job.recipe)
    train_pairs, val_pairs = _pairs(job)
    train_set, val_set, data_config = load_examples(train_pairs, val_pairs, recipe.data, progress=job.progress and world.main,
                                                    lazy_above_mpix=job.run.lazy_above_mpix)
    model_config = dataclasses.replace(recipe.model, in_channels=data_config.in_channels, n_classes=data_config.n_classes)
    torch.manual_seed(recipe.train.seed)  # the initial weights
    net = build_model(model_config)
    config, run = resolve(recipe.train, job.run, net, train_set)
    if not job.resume:  # a resumed run restores its own weights
        load_first_weights(net, config)
    net = net.to(device, memory_format=training_memory_format(job.run, model_config.norm, device))
    prepare_encoder(net, config, config.batch_size // world.size)
    class_weights = _class_weights(config, train_set, data_config)
    data_config = dataclasses.replace(data_config, class_weights=None if class_weights is None else tuple(map(float, class_weights)))
    _attach_weight_maps(train_set, config, data_config, class_weights, job.progress and world.main, cache_folder(job.out, world))
    if world.main:
        split = {"train": [p.name for p in train_pairs], "val": [p.name for p in val_pairs]}
        plan = {"plan": job.plan} if job.plan else {}
        stored = save_config(job.out, model_config, data_config, train=config, run=run, split=split, options=job.given, **plan)
        write_recipe(job.out, stored)
    distributed.barrier(world)
    amp_dtype = autocast_dtype(run, device)
    weights = None if class_weights is None else torch.as_tensor(class_weights, device=device)
    ctx = Context(
        model=distributed.wrap(net, world, device, run.sync_bn), net=net, model_config=model_config,
        optimizer=make_optimizer(net, config), scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        loss_fn=make_loss(config.loss, class_weights=weights, ignore_index=data_config.ignore_index),
        config=config, run=run, data_config=data_config, dataset=_patches(train_set, net, config, data_config),
        val=val_set, run_dir=job.out, device=device, world=world, amp_dtype=amp_dtype, hooks=job.hooks, progress=job.progress,
    )
    loop = _resumed_loop(ctx) if job.resume else Loop(total_steps=total_steps(run, ctx.steps_per_epoch))
    if world.main and job.progress:
        print_plan(ctx, loop, len(train_set))
    return ctx, loop


def _check_world(job: Job, device: torch.device, world: distributed.World) -> None:
    if job.run.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only", fix="drop --sync-bn on a CPU")
    if world.distributed and job.recipe.train.freeze_encoder_steps:
        raise UserError("--freeze-encoder-steps is not supported under torchrun (DDP needs every gradient each step)",
                        fix="drop it, or train on one process")
    batch = job.recipe.train.batch_size
    if batch % world.size:
        raise UserError(f"batch size {batch} does not split over {world.size} processes",
                        fix=f"use a --batch-size that is a multiple of {world.size}")


def _pairs(job: Job):
    pairs = pair_files(job.images, job.masks)
    config = job.recipe.train
    if job.split is None:
        return split_pairs(pairs, val_fraction=config.val_fraction, val_names=config.val_names,
                           folds=config.folds, fold=config.fold, split=config.val_split, seed=config.seed)
    by_name = {p.name: p for p in pairs}
    missing = [n for n in job.split["train"] + job.split["val"] if n not in by_name]
    if missing:
        raise UserError(f"the run was trained on images that are missing now: {', '.join(missing[:5])}",
                        path=job.images, fix="resume with the same --images and --masks folders")
    return [by_name[n] for n in job.split["train"]], [by_name[n] for n in job.split["val"]]


def _patches(examples: list[Example], net, config: TrainConfig, data_config: DataConfig) -> PatchDataset:
    return PatchDataset(
        examples, target=config.patch_size - 2 * net.margin, margin=net.margin,
        slack=required_slack(config.augment, config.patch_size), seed=config.seed,
        samples_per_epoch=config.samples_per_epoch, fg_oversample=config.fg_oversample, ignore_index=data_config.ignore_index,
    )


def resolve(config: TrainConfig, run: RunConfig, net, examples: list[Example]) -> tuple[TrainConfig, RunConfig]:
    """Fill the `None` fields from the model and the data (patch, epoch length, learning rate, warm-up, length)."""
    smallest = min(min(e.shape) for e in examples)
    patch = config.patch_size or default_patch(net, smallest)
    try:
        net.check_input_size(patch, patch)
    except ValueError as exc:
        raise UserError(str(exc), fix="pass one of the valid sizes as --patch-size") from exc
    if net.margin and patch <= 2 * net.margin:
        raise UserError(f"patch {patch} leaves no output after the {net.margin} px margins", fix="raise --patch-size")
    per_epoch = config.samples_per_epoch or PatchDataset.covering_count(examples, patch - 2 * net.margin)
    per_epoch = -(-max(per_epoch, config.batch_size) // config.batch_size) * config.batch_size  # whole steps
    if run.epochs is None and run.steps is None and run.time_budget is None:
        run = dataclasses.replace(run, epochs=DEFAULT_EPOCHS)
    total = total_steps(run, per_epoch // config.batch_size)
    warmup = config.warmup_steps if config.warmup_steps is not None else min(100, (total or 2000) // 20)
    lr = config.lr or {"adamw": 1e-3, "sgd": 1e-2}[config.optimizer]
    return dataclasses.replace(config, patch_size=patch, samples_per_epoch=per_epoch, warmup_steps=warmup, lr=lr), run


def total_steps(run: RunConfig, steps_per_epoch: int) -> int | None:
    candidates = [n for n in (run.steps, run.epochs and run.epochs * steps_per_epoch) if n]
    return min(candidates) if candidates else None


def _resumed_loop(ctx: Context) -> Loop:
    state = load_train_state(ctx.run_dir)
    if state is None:
        raise UserError("no training state to resume from", path=ctx.run_dir, fix="train without --resume")
    loop = restore_checkpoint(ctx, state)
    loop.total_steps = total_steps(ctx.run, ctx.steps_per_epoch)  # stop options may have changed
    return loop


def _class_weights(config: TrainConfig, examples: list[Example], data_config: DataConfig) -> np.ndarray | None:
    """w_c per class: inverse training-set frequency ("auto"), median frequency ("median"), none, or given."""
    if config.class_weights == "none":
        return None
    if config.class_weights in ("auto", "median"):
        counts = sum(e.class_counts(data_config.n_classes, data_config.ignore_index) for e in examples)
        return balancing_weights(counts) if config.class_weights == "auto" else median_frequency_weights(counts)
    try:
        weights = np.array([float(w) for w in config.class_weights.split(",")], np.float32)
    except ValueError:
        weights = np.array([])
    if len(weights) != data_config.n_classes or np.any(weights < 0):
        raise UserError(f"--class-weights {config.class_weights!r} is not {data_config.n_classes} numbers >= 0",
                        fix="pass auto, median, none, or one weight per class like 1,3")
    return weights


def _attach_weight_maps(examples, config: TrainConfig, data_config: DataConfig, class_weights, progress: bool,
                        cache: Path | None = None) -> None:
    """The paper's weight map per training image, computed once here and cropped with every patch.

    Instance-map masks give their instances (`Example.objects`) for d1 and d2; they are not needed after.
    An image read lazily has its map computed band by band and kept on disk in `cache` (see `data.ondisk`).
    """
    from tqdm import tqdm

    class_weights = np.ones(data_config.n_classes, np.float32) if class_weights is None else class_weights
    for example in tqdm(examples, desc="weight maps", unit="image", disable=None if progress and config.weight_map else True):
        if config.weight_map:
            example.attach_weights(class_weights, w0=config.w0, sigma=config.sigma, ignore_index=data_config.ignore_index,
                                   cache=cache)
        example.objects = None


def cache_folder(out: Path, world: distributed.World) -> Path:
    """Where this process keeps the weight maps of lazily read images; removed when `train` ends."""
    return Path(out) / f".lazy-cache-{world.rank}"


@contextlib.contextmanager
def determinism(on: bool):
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
