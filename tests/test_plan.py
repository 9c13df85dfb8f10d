"""The plan from the data (planning/, `unetkit plan`, `train` running it): each rule flips on data made to trigger it
and stays off otherwise; EM gets today's defaults; given options win; the plan is stored and reused on resume."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from skimage.draw import disk

import unetkit
from unetkit.cli import main
from unetkit.config import AugmentConfig, DataConfig, TrainConfig
from unetkit.data import Pair, median_frequency_weights, split_pairs
from unetkit.io import write_image
from unetkit.model import preset_config
from unetkit.planning import rules
from unetkit.synthetic import write_dataset

TINY = dict(preset="tiny", batch_size=2, patch_size=32, progress=False)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def folder(root: Path, images: list, masks: list, names=None) -> tuple[Path, Path]:
    """`root/images` and `root/masks` from arrays ((H, W) or (C, H, W)), named 00, 01, ... or `names`."""
    names = names or [f"{i:02d}" for i in range(len(images))]
    for name, image, mask in zip(names, images, masks):
        write_image(root / "images" / f"{name}{'.tif' if image.dtype != np.uint8 else '.png'}", image)
        write_image(root / "masks" / f"{name}.png", mask)
    return root / "images", root / "masks"


def grey(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 255, (n, size, size), dtype=np.uint8))


def em(root: Path, n: int = 4, size: int = 128) -> tuple[Path, Path]:
    data = write_dataset(root, count=n, shape=(size, size))
    return data / "images", data / "labels"


def streets(n: int = 4, size: int = 64, turn: bool = False) -> list[np.ndarray]:
    """Street-like masks: sky (1) on top, road (2) in the bottom half, a 'car' (1) between; `turn`: a quarter turn."""
    rng = np.random.default_rng(1)
    masks = []
    for _ in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[: size // 4] = 1
        mask[size // 2 :] = 2
        rr, cc = disk((3 * size // 8, int(rng.integers(8, size - 8))), 4, shape=mask.shape)
        mask[rr, cc] = 1
        masks.append(np.rot90(mask).copy() if turn else mask)
    return masks


def choices(images, masks, **options) -> dict:
    the_plan = unetkit.plan(images, masks, **options)
    return {c.option: c for c in the_plan.choices}


def config_json(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


# --------------------------------------------------------------------------- EM: today's defaults


def test_em_gets_exactly_todays_defaults(tmp_path):
    """The hard constraint: on EM-like data (grey, two values, touching cells, numbered) the plan is the defaults."""
    planned = {k: c.value for k, c in choices(*em(tmp_path)).items()}
    defaults = {**vars(preset_config("default")), **vars(DataConfig()), **vars(AugmentConfig()), **vars(TrainConfig())}  # class_weights: the loss's
    defaults["normalization"] = "percentile"  # what "auto" resolves to for a U-Net without a pretrained encoder
    differ = {k: (v, defaults[k]) for k, v in planned.items() if k != "patch_size" and v != defaults[k]}
    assert not differ, f"the plan leaves the defaults on EM: {differ}"
    assert planned["patch_size"] == 128  # the default rule: 256, or the images' side when smaller


def test_em_run_with_the_plan_equals_the_run_without(tmp_path):
    data = em(tmp_path / "data")
    with_plan = unetkit.train(*data, tmp_path / "plan", steps=1, **TINY)
    without = unetkit.train(*data, tmp_path / "fixed", steps=1, plan=False, **TINY)
    a, b = config_json(with_plan), config_json(without)
    assert "plan" in a and "plan" not in b
    for section in ("model", "data", "train", "split"):
        assert a[section] == b[section], section


@pytest.mark.parametrize("name", ["isbi2012/train"])
def test_isbi_gets_todays_defaults(name):
    if not (SHARED / name / "images").is_dir():
        pytest.skip(f"{name} not found in ../shared/data")
    planned = {k: c.value for k, c in choices(SHARED / name / "images", SHARED / name / "labels").items()}
    assert planned == {"normalization": "percentile", "norm": "batch", "stem_stride": 1, "patch_size": 256, "batch_size": 4, "rotate": 180.0, "flip": True,
                       "weight_map": True, "class_weights": "auto", "loss": "ce", "val_split": "name", "refit": False}


# --------------------------------------------------------------------------- each rule, on and off


def test_scenes_with_an_up_get_no_rotations_but_keep_horizontal_flips(tmp_path):
    up = choices(*folder(tmp_path / "up", grey(4), streets()))
    assert up["rotate"].value == 0 and up["flip"].value is True, up["rotate"].reason
    turned = choices(*folder(tmp_path / "turned", grey(4), streets(turn=True)))  # the same scenes a quarter turn round
    assert turned["rotate"].value == 180, turned["rotate"].reason


def test_colour_photographs_get_no_rotations_grey_and_instrument_images_keep_them(tmp_path):
    rng = np.random.default_rng(0)
    masks = [np.where(rng.random((48, 48)) < 0.3, 255, 0).astype(np.uint8) for _ in range(4)]  # no up
    colour = [rng.integers(0, 255, (3, 48, 48), dtype=np.uint8) for _ in range(4)]
    photos = choices(*folder(tmp_path / "rgb", colour, masks))
    assert (photos["rotate"].value, photos["flip"].value) == (0, True) and "photographs" in photos["rotate"].reason
    grey_rgb = [np.repeat(c[:1], 3, axis=0) for c in colour]  # grey saved as RGB: microscopy-like
    assert choices(*folder(tmp_path / "grey_rgb", grey_rgb, masks))["rotate"].value == 180
    bands = [rng.integers(0, 4096, (4, 48, 48)).astype(np.uint16) for _ in range(4)]
    assert choices(*folder(tmp_path / "bands", bands, masks))["rotate"].value == 180


def regions(n: int = 4, size: int = 192) -> list[np.ndarray]:
    """Two-value masks of two regions each (land cover, not objects), split by a wavy line."""
    rows, cols = np.mgrid[:size, :size]
    return [np.where(cols < size // 2 + 12 * np.sin(rows / (9 + k)), 255, 0).astype(np.uint8) for k in range(n)]


def test_border_weights_off_for_regions_on_for_touching_objects_and_instances(tmp_path):
    stuff = choices(*folder(tmp_path / "stuff", grey(4, 192), regions()))["weight_map"]
    assert stuff.value is False and "regions" in stuff.reason
    assert choices(*em(tmp_path / "em"))["weight_map"].value is True
    instances = choices(*folder(tmp_path / "instances", grey(4, 96), instance_maps(4)))["weight_map"]
    assert instances.value is True and "instance" in instances.reason


def test_regions_get_a_half_resolution_stem_objects_and_chosen_networks_keep_theirs(tmp_path):
    stuff = folder(tmp_path / "stuff", grey(4, 192), regions())
    half = choices(*stuff)["stem_stride"]
    assert half.value == 2 and "regions" in half.reason
    assert choices(*em(tmp_path / "em"))["stem_stride"].value == 1
    assert choices(*folder(tmp_path / "instances", grey(4, 96), instance_maps(4)))["stem_stride"].value == 1
    for network in (dict(preset="fast"), dict(padding="valid"), dict(encoder="resnet18")):  # the user's network
        assert not {"stem_stride", "norm"} & set(choices(*stuff, **network)), network
    given = choices(*stuff, stem_stride=1)
    assert given["stem_stride"].given and given["stem_stride"].value == 1
    run = unetkit.train(*stuff, tmp_path / "run", steps=1, depth=3, base_width=4, batch_size=2, progress=False)
    assert config_json(run)["model"]["stem_stride"] == 2


def test_grey_and_colour_mixed_get_instance_norm_one_kind_batch_norm(tmp_path):
    rng = np.random.default_rng(0)
    colour = [rng.integers(0, 255, (3, 96, 96), dtype=np.uint8) for _ in range(8)]
    grey_rgb = [np.repeat(c[:1], 3, axis=0) for c in colour]  # grey saved as RGB
    masks = instance_maps(8)
    mixed = choices(*folder(tmp_path / "mixed", grey_rgb[:6] + colour[6:], masks))["norm"]
    assert mixed.value == "instance" and "75% grey" in mixed.reason, mixed
    assert choices(*folder(tmp_path / "grey", grey_rgb, masks))["norm"].value == "batch"
    assert choices(*folder(tmp_path / "colour", colour, masks))["norm"].value == "batch"


def test_instance_maps_get_a_border_width_from_their_object_size(tmp_path):
    def scaled(times: int) -> list[np.ndarray]:  # the discs of instance_maps, 19 * times px across
        return [np.kron(m, np.ones((times, times), m.dtype)) for m in instance_maps(4)]

    small = choices(*folder(tmp_path / "small", grey(4, 288), scaled(3)))["sigma"]
    large = choices(*folder(tmp_path / "large", grey(4, 480), scaled(5)))["sigma"]
    assert 2 < small.value < large.value < 5 and "px across" in small.reason, (small, large)
    assert large.value == pytest.approx(5 / 3 * small.value, abs=0.2)
    assert choices(*folder(tmp_path / "tiny", grey(4, 96), instance_maps(4)))["sigma"].value == 2, "at least 2 px"
    assert "sigma" not in choices(*em(tmp_path / "em")), "EM keeps the paper's sigma"


def instance_maps(n: int, size: int = 96) -> list[np.ndarray]:
    """uint16 label maps of 16, 17, ... touching discs on a grid (one value per object): the survey finds instances."""
    maps = []
    for i in range(n):
        labels = np.zeros((size, size), np.uint16)
        for k in range(16 + i):
            rr, cc = disk((9 + 18 * (k // 5), 9 + 18 * (k % 5)), 9.5, shape=labels.shape)
            labels[rr, cc] = k + 1
        maps.append(labels)
    return maps


def test_normalization_meanstd_for_colour_photographs_percentile_otherwise(tmp_path):
    rng = np.random.default_rng(0)
    colour = [rng.integers(0, 255, (3, 48, 48), dtype=np.uint8) for _ in range(4)]
    masks = [np.where(rng.random((48, 48)) < 0.3, 255, 0).astype(np.uint8) for _ in range(4)]
    assert choices(*folder(tmp_path / "rgb", colour, masks))["normalization"].value == "meanstd"
    grey_rgb = [np.repeat(c[:1], 3, axis=0) for c in colour]  # grey saved as RGB, as most of DSB 2018
    assert choices(*folder(tmp_path / "grey_rgb", grey_rgb, masks))["normalization"].value == "percentile"
    bands = [rng.integers(0, 4096, (4, 48, 48)).astype(np.uint16) for _ in range(4)]  # 12-bit in uint16, 4 bands
    assert choices(*folder(tmp_path / "bands", bands, masks))["normalization"].value == "percentile"
    # Weights trained elsewhere keep the normalisation they were trained with ("auto" resolves it at training).
    encoder = choices(tmp_path / "rgb" / "images", tmp_path / "rgb" / "masks", encoder="resnet18", padding="same")
    assert encoder["normalization"].value == "auto" and "resnet18" in encoder["normalization"].reason
    init = choices(tmp_path / "rgb" / "images", tmp_path / "rgb" / "masks", init=str(tmp_path / "some_run"))
    assert init["normalization"].value == "auto" and "--init" in init["normalization"].reason


def test_class_weighting_and_loss_follow_the_class_shares(tmp_path):
    rng = np.random.default_rng(0)
    many = [rng.choice(3, (48, 48), p=[0.8, 0.18, 0.02]).astype(np.uint8) for _ in range(4)]  # a 2% class
    rare = choices(*folder(tmp_path / "rare", grey(4, 48), many))
    assert (rare["class_weights"].value, rare["loss"].value) == ("median", "ce+dice")
    halves = [np.where(rng.random((48, 48)) < 0.5, 255, 0).astype(np.uint8) for _ in range(4)]
    balanced = choices(*folder(tmp_path / "balanced", grey(4, 48), halves))
    assert (balanced["class_weights"].value, balanced["loss"].value) == ("none", "ce")
    instances = choices(*folder(tmp_path / "instances", grey(4, 96), instance_maps(4)))  # objects on half the pixels: not rare
    assert instances["loss"].value == "ce+dice" and "instance" in instances["loss"].reason
    assert instances["class_weights"].value == "none" and "instance" in instances["class_weights"].reason


def test_validation_held_out_by_group_by_random_draw_or_by_name(tmp_path):
    masks = [np.where(np.random.default_rng(i).random((32, 32)) < 0.3, 255, 0).astype(np.uint8) for i in range(9)]
    tiles = [f"tile{t}_{k:03d}" for t in (1, 2, 3) for k in (1, 2, 3)]
    assert choices(*folder(tmp_path / "tiles", grey(9, 32), masks, tiles))["val_split"].value == "group"
    ids = [bytes(np.random.default_rng(i).integers(0, 256, 16, dtype=np.uint8)).hex() for i in range(9)]  # as DSB's
    assert choices(*folder(tmp_path / "ids", grey(9, 32), masks, ids))["val_split"].value == "random"
    assert choices(*folder(tmp_path / "numbered", grey(9, 32), masks))["val_split"].value == "name"


def test_small_sets_under_a_time_budget_train_on_every_image(tmp_path):
    data = em(tmp_path, size=64)
    timed, untimed = choices(*data, time_budget=5), choices(*data)
    assert timed["val_fraction"].value == 0.0 and "every image trains" in timed["val_fraction"].reason
    assert "val_split" not in timed and timed["refit"].value is False and "no hold-out" in timed["refit"].reason
    assert "val_fraction" not in untimed and untimed["val_split"].value == "name"  # the defaults: 20% held out
    for given in (dict(val_fraction=0.3), dict(refit=True), dict(folds=2)):  # the user's hold-out (a refit needs one) stays
        planned = choices(*data, time_budget=5, **given)
        assert "val_split" in planned and ("val_fraction" not in planned or planned["val_fraction"].given)
    many = SimpleNamespace(images=rules.SMALL_SET + 1, groups={}, names="numbered")
    assert "val_split" in rules.validation(many, fixed_hold_out=False, timed=True)


def test_refit_is_offered_to_small_sets_and_never_planned_on(tmp_path):
    data = em(tmp_path, size=64)
    timed, untimed = choices(*data, time_budget=5)["refit"], choices(*data)["refit"]
    assert timed.value is untimed.value is False
    assert "every image trains already" in timed.reason and "doubles the run" in untimed.reason
    assert "--refit asks for it" in untimed.reason
    assert "fixed by the user" in choices(*data, time_budget=5, folds=2)["refit"].reason
    assert "fixed by the user" in choices(*data, time_budget=5, val_fraction=0.0)["refit"].reason
    assert choices(*data, time_budget=5, refit=True)["refit"].given
    many = rules.refit(SimpleNamespace(images=rules.SMALL_SET + 1), False, True)["refit"]
    assert many[0] is False and "costs little" in many[1]


def test_split_by_group_holds_out_whole_groups_and_random_is_seeded():
    pairs = [Pair(Path(f"tile{t}_{k}.png"), Path("m.png")) for t in range(1, 6) for k in range(4)]
    train, val = split_pairs(pairs, val_fraction=0.2, split="group")
    assert sorted(p.name for p in val) == [f"tile5_{k}" for k in range(4)]  # the last group of five
    draws = [{p.name for p in split_pairs(pairs, split="random", seed=s)[1]} for s in (0, 0, 1)]
    assert draws[0] == draws[1] != draws[2] and len(draws[0]) == 4
    assert draws[0] != {p.name for p in split_pairs(pairs, split="name")[1]}


def test_a_small_memory_budget_lowers_the_batch(tmp_path):
    data = em(tmp_path)
    assert choices(*data)["batch_size"].value == 4
    assert choices(*data, memory_mb=160)["batch_size"].value < 4


def test_median_frequency_weights():
    weights = median_frequency_weights(np.array([600, 300, 100, 0]))
    np.testing.assert_allclose(weights, [0.5, 1.0, 3.0, 0.0])  # median of the present counts 300 over each count


# --------------------------------------------------------------------------- train runs the plan


def test_train_runs_the_plan_flags_override_single_choices(tmp_path):
    data = folder(tmp_path / "data", grey(4), streets())
    main(["train", "--images", str(data[0]), "--masks", str(data[1]), "--out", str(tmp_path / "run"), "--steps", "1",
          "--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--quiet", "--rotate", "45"])
    config = config_json(tmp_path / "run")
    planned = {c["option"]: c for c in config["plan"]["choices"]}
    assert config["train"]["augment"]["rotate"] == 45 and planned["rotate"]["given"]  # the flag wins
    assert config["train"]["class_weights"] == "median" == planned["class_weights"]["value"]  # the rest is planned
    assert config["options"] == {"steps": 1, "preset": "tiny", "batch_size": 2, "patch_size": 32, "rotate": 45.0}


def test_a_resume_reuses_the_stored_plan(tmp_path, monkeypatch, capsys):
    data = folder(tmp_path / "data", grey(4), streets())
    run = unetkit.train(*data, tmp_path / "run", steps=1, **{**TINY, "progress": True})
    stored = config_json(run)["plan"]
    monkeypatch.setattr(unetkit.training.api, "plan_data", lambda *a, **k: pytest.fail("a resume planned again"))
    capsys.readouterr()
    unetkit.train(*data, run, steps=2, resume=True, **{**TINY, "progress": True})
    assert config_json(run)["plan"] == stored and config_json(run)["run"]["steps"] == 2
    assert "the run's stored plan" in capsys.readouterr().out


def test_plan_cli_prints_and_writes_a_recipe_that_train_runs(tmp_path, capsys):
    data = folder(tmp_path / "data", grey(4), streets())
    assert main(["plan", "--images", str(data[0]), "--masks", str(data[1]), "--out", str(tmp_path / "plan.yaml")]) == 0
    table = capsys.readouterr().out
    assert "rotate         0" in table and "the scenes have an up" in table
    assert main(["train", "--config", str(tmp_path / "plan.yaml"), "--images", str(data[0]), "--masks", str(data[1]),
                 "--out", str(tmp_path / "run"), "--steps", "1", "--preset", "tiny", "--quiet"]) == 0
    config = config_json(tmp_path / "run")
    assert config["train"]["augment"]["rotate"] == 0 and config["train"]["class_weights"] == "median"
    assert all(c["given"] for c in config["plan"]["choices"])  # every choice came from the file
