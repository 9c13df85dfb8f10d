"""One prediction job on one process or many (torchrun): the work split across ranks, resumable, bit-identical.

    torchrun --nproc_per_node N -m unetkit predict RUN INPUTS --out DIR

Rank 0 takes the output folder's lock (`ledger`), skips the images whose
outputs are complete for these weights and settings, and plans the rest;
every rank gets the same plan and does its tasks:
- an image predicted whole (in memory; or streamed, if the job has one
  process) is one task;
- an image above the streaming threshold, in a job of several processes, is
  cut at tile-row boundaries into row parts. A part's probabilities go to a
  .npy file of its own (memory-mapped, written atomically); after a barrier,
  one rank per image feeds the parts, top to bottom, into the very writer a
  single process uses. `predict_bands` gives a part's rows exactly as a
  whole-image pass does (same tiles, same tile batches, same order of sums),
  so the files are the same, byte for byte.
Tasks go, in order, to the rank with the fewest pixels so far. Every output
is written once, atomically, by one rank, and its record after it; a killed
job's rerun does only what is not recorded (finished parts included).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..checkpoint import Run, load_run
from ..config import to_dict
from ..errors import UserError
from ..io import atomic_path, image_size, is_zarr, write_text
from ..version import __version__
from ..world import World, all_gather_objects, barrier, from_main, joined
from .ledger import Ledger, output_lock, settings_key, weights_hash
from .predictor import PredictConfig, Predictor
from .writers import OUTPUT_TILE, Item, collect_inputs, item_source, predict_item, write_streamed

PART_TILE_ROWS = 32  # tile rows per part at most: a killed rank loses at most this much of an image
WAIT = datetime.timedelta(hours=24)  # how long a rank that is done waits at a barrier for the slowest one
CRASH_HOOK = "UNETKIT_TEST_CRASH_AFTER"  # tests: "RANK:N" makes that rank die (SIGKILL) after its N-th task


@dataclasses.dataclass(frozen=True)
class Task:
    item: int  # index into the job's items
    rows: tuple[int, int] | None  # a part of a split image, or None: the whole image
    rank: int


@dataclasses.dataclass(frozen=True)
class Plan:
    key: str  # the settings key of the records
    tasks: tuple[Task, ...]  # what is left to compute
    splits: dict[int, tuple[tuple[int, int], ...]]  # split image -> its parts (done or not), top to bottom
    assemblers: dict[int, int]  # split image -> the rank that writes its files
    skipped: int  # images complete already


def predict_files(model_or_run, inputs: Sequence[str | Path], out_dir: str | Path, config: PredictConfig = PredictConfig()) -> list[Path]:
    """Predict every image of `inputs` (files, folders, stack pages) into `out_dir`; returns the files written.

    Per image NAME: NAME_labels.png (NAME_labels.tif when streamed or georeferenced), NAME_probs.tif,
    NAME_overlay.png and, with `config.instances` (by default for a run trained on instance
    label maps), NAME_instances.tif; with `config.out_format="zarr"`, NAME.ome.zarr
    (labels and probabilities) and NAME_overlay.png. Inputs: image files, folders of them,
    zarr stores. `predict_config.json` records the resolved settings.
    Under torchrun the images (and the row parts of large ones) are shared among the
    processes; images already predicted into `out_dir` with the same weights and
    settings are skipped (see the module's notes).
    """
    import torch

    items = collect_inputs(inputs)
    out_dir = Path(out_dir)
    with joined(torch.device("cpu"), backend="gloo", timeout=WAIT) as world:  # gloo: only small objects travel
        run = load_run(model_or_run, config.weights) if isinstance(model_or_run, (str, Path)) else model_or_run
        predictor = Predictor.create(run, _for_rank(config, world))
        with output_lock(out_dir, world):
            plan = from_main(lambda: _start(items, predictor, run, config, inputs, out_dir, world.size), world)
            written = _work(plan, items, predictor, out_dir, world)
        return [path for files in all_gather_objects(written, world) for path in files]


def _for_rank(config: PredictConfig, world: World) -> PredictConfig:
    """The processes of a node spread over its GPUs (more processes than GPUs share them)."""
    import torch

    if world.distributed and config.device in ("auto", "cuda") and torch.cuda.is_available():
        return dataclasses.replace(config, device=f"cuda:{world.local_rank % torch.cuda.device_count()}")
    return config


def _start(items: list[Item], predictor: Predictor, run, config: PredictConfig, inputs, out_dir: Path, ranks: int) -> Plan:
    """Rank 0, under the lock: the settings on disk, what killed jobs left removed, the plan."""
    settings = _resolved(predictor, config, run)
    key = settings_key(settings)
    text = json.dumps({"run": _run_folder(run), "inputs": [str(p) for p in inputs], **settings}, indent=2) + "\n"
    config_path = out_dir / "predict_config.json"
    if not config_path.exists() or config_path.read_text() != text:
        write_text(config_path, text)
    ledger = Ledger(out_dir, key)
    work = plan(items, predictor, ledger, ranks)
    ledger.remove_stale(keep={ledger.part_path(items[i], rows) for i, parts in work.splits.items() for rows in parts})
    if work.skipped:
        print(f"{out_dir}: {work.skipped} of {len(items)} images already predicted with these weights and settings: skipped",
              file=sys.stderr)
    return work


def plan(items: list[Item], predictor: Predictor, ledger: Ledger, ranks: int) -> Plan:
    """What is left to do for `ranks` processes: images not done whole, split ones in parts not done; each task to
    the rank with the fewest pixels so far."""
    loads, tasks, splits, assemblers, skipped = [0] * ranks, [], {}, {}, 0
    for index, item in enumerate(items):
        if ledger.is_done(item):
            skipped += 1
            continue
        height, width = _image_size(item) if ranks > 1 else (1, 1)  # one process: no split, no balance
        parts = _parts(predictor, height, width, ranks)
        if parts:
            splits[index], assemblers[index] = tuple(parts), len(splits) % ranks
        for rows in parts or [None]:
            if rows is not None and ledger.part_path(item, rows).exists():
                continue  # done by a killed job
            rank = loads.index(min(loads))
            loads[rank] += width * (height if rows is None else rows[1] - rows[0])
            tasks.append(Task(index, rows, rank))
    return Plan(ledger.key, tuple(tasks), splits, assemblers, skipped)


def _image_size(item: Item) -> tuple[int, int]:
    if is_zarr(item.path):
        return item_source(item).shape[1:]
    try:
        return image_size(item.path, item.page)
    except UserError as exc:
        if "cannot stream" not in str(exc):
            raise
    source = item_source(item)  # a TIFF layout only read whole
    source.close()
    return source.shape[1:]


def _parts(predictor: Predictor, height: int, width: int, ranks: int) -> list[tuple[int, int]]:
    """Row ranges of a streamed image split among `ranks` (a multiple of `ranks` parts, cut where tile rows
    start); [] for an image predicted whole."""
    if ranks == 1 or height * width <= predictor.config.stream_above_mpix * 1e6 or predictor.config.out_format == "zarr":
        return []  # zarr output: one process streams the whole store
    axis = predictor.grid(height, width).rows
    count = min(axis.count, ranks * math.ceil(axis.count / (ranks * PART_TILE_ROWS)))
    cuts = [min(height, max(0, axis.output_start(round(p * axis.count / count)))) for p in range(1, count)]
    edges = [0, *cuts, height]
    parts = [(top, bottom) for top, bottom in zip(edges, edges[1:]) if top < bottom]
    return parts if len(parts) > 1 else []


def _work(plan: Plan, items: list[Item], predictor: Predictor, out_dir: Path, world: World) -> list[Path]:
    """This rank's tasks, then the files of the split images it assembles."""
    from tqdm import tqdm

    ledger, written = Ledger(out_dir, plan.key), []
    mine = [task for task in plan.tasks if task.rank == world.rank]
    for done, task in enumerate(tqdm(mine, unit="task", desc="predict", disable=None if world.main else True), 1):
        item = items[task.item]
        if task.rows is None:
            outputs = predict_item(predictor, item, out_dir)
            ledger.mark_done(item, outputs)
            written += outputs
        else:
            _write_part(predictor, item, task.rows, ledger.part_path(item, task.rows))
        if os.environ.get(CRASH_HOOK) == f"{world.rank}:{done}":
            os.kill(os.getpid(), signal.SIGKILL)
    barrier(world)  # every part is on disk
    for index, parts in plan.splits.items():
        if plan.assemblers[index] == world.rank:
            written += _assemble(predictor, items[index], [ledger.part_path(items[index], rows) for rows in parts], ledger)
    barrier(world)  # every file is written: rank 0 may let the lock go
    return written


def _write_part(predictor: Predictor, item: Item, rows: tuple[int, int], path: Path) -> None:
    """Image rows rows[0]..rows[1]-1 as probabilities (K, rows, W) float32 in a .npy file, band by band."""
    source = item_source(item)
    try:
        predictor.check_channels(source, item.path)
        shape = (predictor.n_classes, rows[1] - rows[0], source.shape[2])
        with atomic_path(path) as tmp:
            part = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            for top, band in predictor.bands(source, rows=rows):
                part[:, top - rows[0] : top - rows[0] + band.shape[1]] = band
            part.flush()
            del part  # unmapped before the rename
    finally:
        source.close()


def _assemble(predictor: Predictor, item: Item, parts: list[Path], ledger: Ledger) -> list[Path]:
    """A split image's files from its parts, by the writer of a single process; then its record, and the parts go."""
    source = item_source(item)
    try:
        outputs = write_streamed(predictor, item, source, ledger.out_dir, _read_parts(parts))
    finally:
        source.close()
    ledger.mark_done(item, outputs)
    for path in parts:
        path.unlink()
    return outputs


def _read_parts(parts: list[Path]) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, probabilities) bands of at most OUTPUT_TILE rows from the parts, top to bottom."""
    top = 0
    for path in parts:
        part = np.load(path, mmap_mode="r")
        for y in range(0, part.shape[1], OUTPUT_TILE):
            band = np.array(part[:, y : y + OUTPUT_TILE])
            yield top, band
            top += band.shape[1]
        del part


def _resolved(predictor: Predictor, config: PredictConfig, run) -> dict:
    """Everything that decides the outputs: weights, settings (the device as asked, not this rank's), tiles, configs."""
    model = run.model if isinstance(run, Run) else run
    return {
        "weights_sha256": weights_hash(model),
        "predict": to_dict(dataclasses.replace(predictor.config, device=config.device)),
        "tile": {"input": predictor.tile, "batch": predictor.batch, "margin": predictor.sizes.margin},
        "model": to_dict(predictor.model_config),
        "data": to_dict(predictor.data_config),
        "unetkit_version": __version__,
    }


def _run_folder(run) -> str | None:
    return None if not isinstance(run, Run) or run.path is None else str(run.path)
