"""Mask conventions found from the training masks as a whole (data/masks.py), on made-up files and the shared data."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetkit
from unetkit import DataConfig, UserError
from unetkit.cli import main
from unetkit.data import find_mask_convention, mask_to_classes, pair_files, survey_masks
from unetkit.data.masks import parse_colour, read_palette
from unetkit.io import read_image, read_mask, write_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COLOURS = [(60, 16, 152), (254, 221, 58), (110, 193, 228)]  # three classes, as an aerial set paints them
UNLABELED = (155, 155, 155)


def pairs(root, masks: list[np.ndarray]):
    """Image/mask folders from a list of raw masks (H, W) or (H, W, 3); images are noise."""
    rng = np.random.default_rng(0)
    for i, mask in enumerate(masks):
        write_image(root / "images" / f"{i:02d}.png", rng.integers(0, 255, mask.shape[:2], dtype=np.uint8))
        write_image(root / "masks" / f"{i:02d}.png", mask if mask.ndim == 2 else mask.transpose(2, 0, 1))
    return root / "images", root / "masks"


def painted(rows: list[int], colours=COLOURS, extra=None) -> np.ndarray:
    """A 32 x 32 RGB mask: horizontal bands of the given classes (and an `extra` colour in one corner)."""
    mask = np.zeros((32, 32, 3), np.uint8)
    for band, k in enumerate(rows):
        mask[band * 32 // len(rows) : (band + 1) * 32 // len(rows)] = colours[k]
    if extra is not None:
        mask[:4, :4] = extra
    return mask


def convention(folders, **options):
    return find_mask_convention(pair_files(*folders), DataConfig(**options))


def test_two_values_of_either_polarity_hold_for_a_file_that_has_only_one(tmp_path):
    """The Amazon trap: values 1/2, one mask holds only 2; read alone it would be class id 2 of 2 classes."""
    only_two = np.full((16, 16), 2, np.uint8)
    folders = pairs(tmp_path, [np.where(np.eye(16, dtype=bool), 1, 2).astype(np.uint8), only_two])
    config = convention(folders)
    assert (config.mask_kind, config.n_classes, config.mask_values) == ("values", 2, (1, 2))
    assert (mask_to_classes(only_two, config) == 1).all()
    inverted = pairs(tmp_path / "inverted", [np.where(np.eye(16, dtype=bool), 0, 255).astype(np.uint8)] * 2)
    assert convention(inverted).mask_values == (0, 255)


def test_class_ids_give_the_class_count_and_255_beside_them_is_asked_not_guessed(tmp_path):
    ids = np.arange(16 * 16).reshape(16, 16).astype(np.uint8) % 4
    assert convention(pairs(tmp_path / "a", [ids, ids])).n_classes == 4
    with_void = ids.copy()
    with_void[0] = 255
    folders = pairs(tmp_path / "b", [ids, with_void])
    with pytest.raises(UserError, match=r"class ids up to 3.*255.*--ignore-index 255"):
        convention(folders)
    config = convention(folders, ignore_index=255)
    assert (config.mask_kind, config.n_classes) == ("ids", 4)
    assert (mask_to_classes(with_void, config)[0] == 255).all()


def test_colour_masks_get_a_class_table_and_ignored_colours(tmp_path):
    folders = pairs(tmp_path, [painted([0, 1]), painted([2, 0], extra=UNLABELED)])
    config = convention(folders, ignore_colours=(UNLABELED,))
    assert config.mask_kind == "colours" and config.colours == tuple(sorted(COLOURS)) and config.n_classes == 3
    classes = mask_to_classes(read_mask(folders[1] / "01.png"), config)
    assert classes[0, 8] == sorted(COLOURS).index(COLOURS[2]) and (classes[:4, :4] == config.ignore_index).all()
    with pytest.raises(UserError, match=r"#9B9B9B is not in the class table.*--ignore-colour 155,155,155"):
        mask_to_classes(read_mask(folders[1] / "01.png"), convention(pairs(tmp_path / "b", [painted([0, 1, 2])])))


def test_mixed_conventions_in_one_folder_name_the_file(tmp_path):
    folders = pairs(tmp_path, [painted([0, 1]), np.zeros((32, 32), np.uint8)])
    with pytest.raises(UserError, match=r"01.png.*grey values but 00.png holds RGB colours"):
        convention(folders)


def test_palette_png_masks_are_read_as_their_indices(tmp_path):
    mask = Image.fromarray(np.arange(12 * 12).reshape(12, 12).astype(np.uint8) % 3, mode="P")
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    mask.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), np.asarray(mask))


def test_palette_file_and_colour_flags_parse(tmp_path):
    (tmp_path / "palette.txt").write_text("#3C1098 building\n254,221,58 vegetation\n\n110,193,228\n")
    assert read_palette(tmp_path / "palette.txt") == (COLOURS[0], COLOURS[1], COLOURS[2])
    assert parse_colour("#9B9B9B") == UNLABELED
    with pytest.raises(UserError, match="not a colour"):
        parse_colour("300,1,2")


def test_a_colour_run_predicts_in_its_colours_and_repeats_its_table(tmp_path):
    masks = [painted([k % 3, (k + 1) % 3], extra=UNLABELED if k == 1 else None) for k in range(4)]
    images, labels = pairs(tmp_path / "data", masks)
    flags = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--steps", "2", "--quiet"]
    out = tmp_path / "run"
    assert main(["train", "--images", str(images), "--masks", str(labels), "--out", str(out), *flags,
                 "--ignore-colour", "155,155,155"]) == 0
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["mask_kind"] == "colours" and len(data["colours"]) == 3 and data["ignore_colours"] == [list(UNLABELED)]
    assert main(["predict", str(out), str(images / "00.png"), "--out", str(tmp_path / "pred")]) == 0
    written = read_image(tmp_path / "pred" / "00_labels.png")
    assert written.shape == (3, 32, 32)
    assert {tuple(c) for c in written.reshape(3, -1).T} <= set(COLOURS)  # the training masks' own colours
    report = tmp_path / "scores.json"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--run", str(out),
                 "--json", str(report)]) == 2  # no ground truth folder yet: a one-line error, not a crash
    write_image(tmp_path / "gt" / "00.png", written)  # the prediction as its own ground truth: a perfect score
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--run", str(out),
                 "--json", str(report)]) == 0
    scores = json.loads(report.read_text())["stack"]
    assert scores["pixel_error"] == 0 and len(scores["iou_per_class"]) == 3
    assert main(["train", "--config", str(out / "recipe.yaml"), "--images", str(images), "--masks", str(labels),
                 "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "config.json").read_text())["data"]["colours"] == data["colours"]
    assert unetkit.load(out).model.config.n_classes == 3


@pytest.mark.skipif(not (SHARED / "dubai_aerial").is_dir(), reason="shared data absent")
def test_the_aerial_set_reads_as_colours_with_its_unlabeled_colours_named():
    masks = sorted((SHARED / "dubai_aerial" / "masks").glob("tile1_*.png"))[:2]
    config = DataConfig(ignore_colours=((155, 155, 155), (0, 0, 0)))
    from unetkit.data.masks import Survey, resolve_masks

    survey = Survey()
    for path in masks:
        survey.add(read_mask(path), path)
    config = resolve_masks(survey, config)
    assert config.mask_kind == "colours" and (60, 16, 152) in config.colours and (155, 155, 155) not in config.colours
    classes = mask_to_classes(read_mask(masks[0]), config)
    assert classes.shape == read_mask(masks[0]).shape[:2] and classes.max() <= max(config.n_classes - 1, config.ignore_index)


@pytest.mark.skipif(not (SHARED / "amazon_forest").is_dir(), reason="shared data absent")
def test_the_amazon_palette_masks_read_as_two_values():
    from unetkit.data.masks import Survey, resolve_masks

    survey = Survey()
    for path in sorted((SHARED / "amazon_forest" / "train" / "masks").glob("*.png")):
        survey.add(read_mask(path), path)
    config = resolve_masks(survey, DataConfig())
    assert (config.mask_kind, config.mask_values) == ("values", (1, 2))


def test_palette_pngs_among_colour_masks_are_read_as_their_colours(tmp_path):
    """dubai_aerial saves 18 of its 72 colour masks as palette PNGs."""
    colours = np.array([[60, 16, 152], [254, 221, 58]], np.uint8)
    indices = (np.arange(32)[:, None] // 16 + np.zeros(32, int)).astype(np.uint8)
    write_image(tmp_path / "m" / "00.png", colours[indices].transpose(2, 0, 1))
    palette = Image.fromarray(indices[::-1].copy(), mode="P")
    palette.putpalette(colours.ravel().tolist())
    palette.save(tmp_path / "m" / "01.png")
    for name in ("00", "01"):
        write_image(tmp_path / "i" / f"{name}.png", np.full((32, 32), 100 + int(name), np.uint8))
    config, _, raws = survey_masks(pair_files(tmp_path / "i", tmp_path / "m"), DataConfig(), keep=True)
    assert config.mask_kind == "colours" and config.n_classes == 2
    assert raws[1].shape == (32, 32, 3)
    assert unetkit.train(tmp_path / "i", tmp_path / "m", tmp_path / "run", steps=1, val_fraction=0, preset="tiny", batch_size=2, patch_size=32, progress=False)
