"""Every `unetkit train` flag changes the computation it names, run end to end through the CLI.

Each test watches the computation, not the stored config: the patches the data
set hands out, the AugmentConfig that reaches `augment_batch`, the loss, the
optimiser state in train_state.pt, the metrics rows, the processes that crop.
Runs are tiny (preset tiny, 48 px images, 1-4 steps) and shared through the
module-scoped `train` fixture: one run per distinct set of flags.
"""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import NamedTuple

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from _train_data import make_dataset
from unetkit.checkpoint import WEIGHT_FILES, load_train_state
from unetkit.cli import main
from unetkit.config import AugmentConfig
from unetkit.data import PatchDataset
from unetkit.data.augment import augment_batch
from unetkit.errors import UserError
from unetkit.io import read_image, write_image
from unetkit.model import create_model
from unetkit.training import step as training_step

TINY_FLAGS = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--quiet"]
ONE_STEP = ("--steps", "1", "--samples-per-epoch", "2")  # a fixed first batch: same seed, same patches


class Trained(NamedTuple):
    out: object  # the run folder
    patches: list  # the PatchDataset items this process handed out, in order
    pids: set  # the processes that cropped them
    augment: list  # the AugmentConfig of every augment_batch call


def cli_train(images, masks, out, *flags) -> int:
    return main(["train", "--images", str(images), "--masks", str(masks), "--out", str(out), *TINY_FLAGS, *flags])


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("discs"), n=4, size=48)


@pytest.fixture(scope="module")
def train(tmp_path_factory, discs):
    """`train(*flags, data=(images, masks))` -> Trained: one CLI run per distinct call, recorded as it computes."""
    cache = {}

    def run(*flags, data=None) -> Trained:
        key = (flags, data)
        if key not in cache:
            folder = tmp_path_factory.mktemp("run")
            (folder / "pids").mkdir()
            trained = Trained(folder / "run", [], set(), [])
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(PatchDataset, "__getitem__", _recording_getitem(trained, folder / "pids"))
                patch.setattr(training_step, "augment_batch", _recording_augment(trained))
                assert cli_train(*(data or discs), trained.out, *flags) == 0
            trained.pids.update(int(p.name) for p in (folder / "pids").iterdir())
            cache[key] = trained
        return cache[key]

    return run


def _recording_getitem(trained: Trained, pid_folder):
    original = PatchDataset.__getitem__

    def getitem(dataset, index):
        item = original(dataset, index)
        trained.patches.append({**item, "index": index})  # lost in a worker process; the pid file is not
        (pid_folder / str(os.getpid())).touch()
        return item

    return getitem


def _recording_augment(trained: Trained):
    def augment(batch, config, **sizes):
        trained.augment.append(config)
        return augment_batch(batch, config, **sizes)

    return augment


def metrics(run) -> list[dict]:
    with open(run / "metrics.csv") as file:
        return list(csv.DictReader(file))


def config_json(run) -> dict:
    return json.loads((run / "config.json").read_text())


def raw_masks(folder, names) -> list[np.ndarray]:
    return [read_image(folder / f"{name}.png")[0] for name in names]


def hand_class_weights(masks, n_classes, is_class, ignore=None) -> np.ndarray:
    """w_c = N / (K n_c) over the counted pixels (the paper's class balance, DESIGN.md), counted by hand."""
    pixels = np.concatenate([m.ravel() for m in masks])
    pixels = pixels if ignore is None else pixels[pixels != ignore]
    counts = np.array([np.count_nonzero(is_class(pixels, c)) for c in range(n_classes)], np.float64)
    return counts.sum() / (n_classes * counts)


# --------------------------------------------------------------------------- length and data loading


SHAPE_RUN = ("--epochs", "2", "--samples-per-epoch", "4", "--workers", "2")


def test_epochs_and_samples_per_epoch_set_the_metrics_rows(train):
    run = train(*SHAPE_RUN).out
    rows = metrics(run)
    assert [int(r["step"]) for r in rows] == [2, 4], "2 epochs of 4 samples at batch 2: a row after steps 2 and 4"
    assert [int(r["samples"]) for r in rows] == [4, 8]
    assert load_train_state(run)["loop"]["step"] == 4


def test_workers_crop_in_worker_processes(train):
    trained = train(*SHAPE_RUN)
    assert trained.pids and os.getpid() not in trained.pids, f"crops ran in {trained.pids}, main is {os.getpid()}"
    assert trained.patches == [], "no patch may be cropped in the main process with --workers 2"


def test_workers_train_the_weights_of_the_main_process(train):
    """On a CPU the workers crop and augment; a patch depends on its sample index only, so the weights are the same."""
    in_main, in_workers = train(*SHAPE_RUN[:-2]), train(*SHAPE_RUN)
    main_weights, worker_weights = (load_file(t.out / WEIGHT_FILES["last"]) for t in (in_main, in_workers))
    assert main_weights.keys() == worker_weights.keys()
    for name, weight in main_weights.items():
        assert torch.equal(weight, worker_weights[name]), name


def test_folds_hold_out_the_chosen_block(train):
    split = config_json(train(*SGD_RUN).out)["split"]
    assert split == {"train": ["00", "02", "03"], "val": ["01"]}, split  # fold 1 of 4 blocks of one file


# --------------------------------------------------------------------------- the optimiser

# SGD, constant lr, no warm-up, gradients clipped to a norm of 1e-7: only weight decay moves the weights, so
# with b the momentum buffer: b1 = wd th0; th1 = (1 - lr wd) th0; b2 = mu b1 + wd th1; th2 = th1 - lr b2.
LR, WD, MU = 0.1, 0.5, 0.5
SGD_RUN = ("--optimizer", "sgd", "--lr", str(LR), "--schedule", "constant", "--warmup-steps", "0", "--momentum", str(MU),
           "--weight-decay", str(WD), "--grad-clip", "1e-7", "--steps", "2", "--folds", "4", "--fold", "1")


def test_momentum_weight_decay_and_grad_clip_drive_the_sgd_steps(train):
    state = load_train_state(train(*SGD_RUN).out)
    buffer_share = MU + 1 - LR * WD  # b2 / (wd th0)
    ratio = WD * buffer_share / ((1 - LR * WD) - LR * WD * buffer_share)  # b2 / th2: 0.826 (momentum 0.99: 1.137)
    names = [name for name, _ in create_model("tiny").named_parameters()]  # the optimiser's parameter order
    for index, name in enumerate(names):
        buffer, weight = state["optimizer"]["state"].get(index, {}).get("momentum_buffer"), state["model"][name]
        assert buffer is not None, f"{name}: no momentum buffer"
        torch.testing.assert_close(buffer, ratio * weight, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    group = state["optimizer"]["param_groups"][0]
    assert (group["momentum"], group["weight_decay"]) == (MU, WD)


# --------------------------------------------------------------------------- patches, weights and the loss


def test_seed_changes_the_patches(train):
    base, same_seed, seeded = train(*ONE_STEP), train(*ONE_STEP, "--w0", "30"), train(*ONE_STEP, "--seed", "7")
    assert len(base.patches) == len(seeded.patches) == 2
    for a, b in zip(base.patches, same_seed.patches):
        assert torch.equal(a["image"], b["image"]) and a["seed"] == b["seed"], "seed 0 twice: the same patches"
    for a, b in zip(base.patches, seeded.patches):
        assert not torch.equal(a["image"], b["image"]) and a["seed"] != b["seed"], "--seed 7 drew the patches of seed 0"


def _border_terms(trained: Trained) -> list[torch.Tensor]:
    """The border term of each patch's weight map: the weight minus its class weight w_c."""
    class_weights = torch.tensor(config_json(trained.out)["data"]["class_weights"])
    return [p["weight"] - class_weights[p["mask"]] for p in trained.patches]


def test_w0_and_sigma_shape_the_weight_map_and_the_loss(train):
    base, w0, sigma = train(*ONE_STEP), train(*ONE_STEP, "--w0", "30"), train(*ONE_STEP, "--sigma", "2")
    for b, b_w0, b_sigma in zip(_border_terms(base), _border_terms(w0), _border_terms(sigma)):
        assert b.max() > 1, "the patch must show some border term"
        torch.testing.assert_close(b_w0, 3 * b, rtol=1e-5, atol=1e-5)  # w0 10 -> 30
        # w0 exp(-d^2 / 2 sigma^2) with sigma 5 -> 2: the normalised term to the power 25 / 4
        torch.testing.assert_close(b_sigma, 10 * (b / 10) ** 6.25, rtol=0, atol=2e-3)
    loss = {name: float(metrics(t.out)[0]["train_loss"]) for name, t in (("base", base), ("w0", w0), ("sigma", sigma))}
    assert loss["w0"] > 1.2 * loss["base"] and loss["sigma"] < 0.95 * loss["base"], loss  # the same first batch


def test_normalization_meanstd_uses_the_training_set_statistics(train, discs):
    trained = train(*ONE_STEP, "--normalization", "meanstd")
    data = config_json(trained.out)["data"]
    pixels = np.concatenate([read_image(discs[0] / f"{n}.png").ravel() for n in ("00", "01", "02")]).astype(np.float64)
    assert data["mean"] == pytest.approx([pixels.mean()]) and data["std"] == pytest.approx([pixels.std()])
    for patch in trained.patches:  # un-normalised, a patch holds the 8-bit grey values again
        raw = patch["image"].double() * pixels.std() + pixels.mean()
        assert torch.allclose(raw, raw.round(), atol=2e-3) and raw.min() > -0.01 and raw.max() < 255.01


def test_foreground_value_flips_what_is_foreground(train, discs):
    trained = train(*ONE_STEP, "--foreground-value", "0")
    masks = raw_masks(discs[1], ("00", "01", "02"))
    expected = hand_class_weights(masks, 2, lambda px, c: (px == 0) == bool(c))  # class 1: the raw 0 pixels
    assert config_json(trained.out)["data"]["class_weights"] == pytest.approx(expected, rel=1e-5)
    assert all(set(p["mask"].unique().tolist()) <= {0, 1} for p in trained.patches)


@pytest.fixture(scope="module")
def corner_squares(tmp_path_factory):
    """64 px images with one 4 x 4 object near a corner: a random 32 px window rarely holds it."""
    root = tmp_path_factory.mktemp("corners")
    rng = np.random.default_rng(0)
    for i in range(4):
        mask = np.zeros((64, 64), np.uint8)
        mask[2:6, 2:6] = 255
        mask = np.rot90(mask, i).copy()
        write_image(root / "images" / f"{i:02d}.png", (40 + 150 * (mask > 0) + rng.normal(0, 20, mask.shape)).clip(0, 255).astype(np.uint8))
        write_image(root / "masks" / f"{i:02d}.png", mask)
    return root / "images", root / "masks"


def test_fg_oversample_centres_patches_on_objects(train, corner_squares):
    trained = train("--fg-oversample", "1", "--steps", "2", data=corner_squares)
    assert len(trained.patches) == 4
    for patch in trained.patches:
        side = patch["mask"].shape[-1]
        start = (side - 32) // 2  # the target window sits in the middle of the warp's slack
        assert patch["mask"][start : start + 32, start : start + 32].any(), f"patch {patch['index']} missed the object"


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """Masks of class ids 0, 1 (discs), 2 (a bar) and 7 (an unlabelled band), 48 px."""
    root = tmp_path_factory.mktemp("three")
    rng = np.random.default_rng(1)
    for i in range(4):
        mask = np.zeros((48, 48), np.uint8)
        mask[np.hypot(*np.mgrid[:48, :48] - rng.integers(12, 36, (2, 1, 1))) < 7] = 1
        mask[30:36, 4:40] = 2
        mask[:, 44:] = 7
        image = 40 + 80 * (mask == 1) + 160 * (mask == 2) + rng.normal(0, 10, mask.shape)
        write_image(root / "images" / f"{i:02d}.png", image.clip(0, 255).astype(np.uint8))
        write_image(root / "masks" / f"{i:02d}.png", mask)
    return root / "images", root / "masks"


# --class-weights auto: the inverse frequencies the hand computation below checks (a plan chooses median for 3 classes).
MULTI_RUN = ("--classes", "3", "--ignore-index", "7", "--steps", "2", "--class-weights", "auto")


def test_three_classes_give_a_three_class_model_and_three_ious(train, three_classes):
    run = train(*MULTI_RUN, data=three_classes).out
    assert load_file(run / "model.safetensors")["head.weight"].shape[0] == 3
    columns = metrics(run)[0].keys()
    assert {"val_iou_0", "val_iou_1", "val_iou_2"} <= columns and "val_iou_3" not in columns


def test_ignore_index_pixels_count_in_no_loss_and_no_class_weight(train, three_classes):
    trained = train(*MULTI_RUN, data=three_classes)
    masks = raw_masks(three_classes[1], ("00", "01", "02"))
    expected = hand_class_weights(masks, 3, lambda px, c: px == c, ignore=7)
    assert config_json(trained.out)["data"]["class_weights"] == pytest.approx(expected, rel=1e-5)
    for patch in trained.patches:
        ignored = patch["mask"] == 7
        assert ignored.any() and torch.all(patch["weight"][ignored] == 0)  # weight 0: no loss


# --------------------------------------------------------------------------- augmentation

AUGMENT_FLAGS = {"elastic_std": 4.0, "rotate": 30.0, "scale": 0.3, "shift": 3.0, "brightness": 0.4, "contrast": 0.5,
                 "gamma": 0.6, "noise": 0.2, "blur": 2.0}
AUGMENT_RUN = (*(x for k, v in AUGMENT_FLAGS.items() for x in (f"--{k.replace('_', '-')}", str(v))), "--no-flip", "--steps", "1")
STILL = AugmentConfig(elastic_std=0, rotate=0, scale=0, shift=0, flip=False, brightness=0, contrast=0, gamma=0, noise=0, blur=0)


def fixed_batch(n=16, side=48) -> dict:
    image = torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0))
    return {"image": image, "mask": (image[:, 0] > 0.5).long(), "seed": torch.arange(n)}


@pytest.mark.parametrize("knob", AUGMENT_FLAGS)
def test_augmentation_knob_reaches_augment_batch_and_changes_it(train, knob):
    used = train(*AUGMENT_RUN).augment
    assert used and getattr(used[0], knob) == AUGMENT_FLAGS[knob]
    batch = fixed_batch()
    still = augment_batch(batch, STILL, input_size=32, target_size=32)
    moved = augment_batch(batch, dataclasses.replace(STILL, **{knob: getattr(used[0], knob)}), input_size=32, target_size=32)
    assert not torch.allclose(moved[0], still[0], atol=1e-3), f"--{knob} left the augmented patches unchanged"


def test_flip_switch_reaches_augment_batch_and_mirrors(train):
    assert train(*AUGMENT_RUN).augment[0].flip is False  # --no-flip
    batch = fixed_batch()
    still = augment_batch(batch, STILL, input_size=32, target_size=32)[0]
    flipped = augment_batch(batch, dataclasses.replace(STILL, flip=True), input_size=32, target_size=32)[0]
    mirrored = [torch.allclose(f, s.flip(-1), atol=1e-4) for f, s in zip(flipped, still)]
    kept = [torch.allclose(f, s, atol=1e-4) for f, s in zip(flipped, still)]
    assert all(m or k for m, k in zip(mirrored, kept)), "a flip either mirrors a patch or leaves it"
    assert any(mirrored) and any(kept), f"mirrored {sum(mirrored)} of {len(mirrored)} patches; about half expected"


# --------------------------------------------------------------------------- recipes, resume, signals, errors


def test_resume_with_a_new_time_budget_trains_on(discs, tmp_path):
    run = tmp_path / "run"
    assert cli_train(*discs, run, "--time-budget", "0.002") == 0  # 0.12 s
    first = load_train_state(run)["loop"]
    budget_s = first["elapsed"] + 1.0
    assert cli_train(*discs, run, "--resume", "--time-budget", str(budget_s / 60)) == 0
    second = load_train_state(run)["loop"]
    assert second["step"] > first["step"] and second["elapsed"] >= budget_s, (first, second)


def test_config_recipe_flags_override_it_and_run_recipe_repeats_the_run(discs, tmp_path):
    recipe = {"preset": "tiny", "batch_size": 2, "patch_size": 32, "optimizer": "sgd", "momentum": 0.8, "seed": 3,
              "steps": 5, "deterministic": True}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    images, masks = map(str, discs)
    first, again = tmp_path / "first", tmp_path / "again"
    base = ["train", "--images", images, "--masks", masks, "--quiet"]
    assert main([*base, "--out", str(first), "--config", str(tmp_path / "recipe.yaml"), "--steps", "2"]) == 0
    state = load_train_state(first)
    assert state["loop"]["step"] == 2, "the flag --steps 2 overrides the recipe's 5"
    assert state["optimizer"]["param_groups"][0]["momentum"] == 0.8 and "momentum_buffer" in state["optimizer"]["state"][0]
    assert main([*base, "--out", str(again), "--config", str(first / "recipe.yaml")]) == 0
    a, b = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "RUN/recipe.yaml must repeat the run"


def test_ctrl_c_saves_then_exits_130(discs, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "unetkit", "train", "--images", str(discs[0]), "--masks", str(discs[1]),
               "--out", str(run), *TINY_FLAGS, "--steps", "10000", "--samples-per-epoch", "2"]  # a checkpoint per step
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "train_state.pt").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, err[-2000:]
    assert "interrupted" in err
    step = load_train_state(run)["loop"]["step"]
    assert 1 <= step < 10000 and int(metrics(run)[-1]["step"]) == step, "validated and saved at the stop"


def test_debug_shows_the_traceback_with_the_original_cause(discs, tmp_path, capsys):
    argv = ["train", "--images", str(discs[0]), "--masks", str(discs[1]), "--out", str(tmp_path / "run"), "--batch-size", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "batch_size must be a positive integer" in err and "Traceback" not in err
    with pytest.raises(UserError) as raised:
        main(["--debug", *argv])
    assert isinstance(raised.value.__cause__, ValueError)
    shown = "".join(traceback.format_exception(raised.value))
    assert "direct cause of the following exception" in shown and "ValueError: batch_size must be" in shown

