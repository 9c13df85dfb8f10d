"""Instance label maps (data/instance_maps.py): recognised, trained with their touching borders, predicted and scored
as instances; masks a few pixels too large; classes only in the validation masks."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage
from skimage.draw import disk

from unetkit import DataConfig, UserError
from unetkit.cli import main
from unetkit.config import TrainConfig
from unetkit.data import describe, find_mask_convention, load_examples, pair_files, read_pair, weight_map
from unetkit.data.instance_maps import instance_classes, instance_objects
from unetkit.data.pairing import Pair
from unetkit.io import read_mask, write_image
from unetkit.prediction import InstanceConfig, PredictConfig
from unetkit.training.setup import _attach_weight_maps

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CORNERS = [(cy, cx) for cy in range(9, 64, 11) for cx in range(9, 64, 11)]  # a 5 x 5 grid: radius-6 discs touch


def touching_discs(rng: np.random.Generator, count: int, size: int = 64) -> np.ndarray:
    """A uint16 instance map: `count` discs of radius 6 on an 11-px grid (neighbours touch), ids 1..count."""
    labels = np.zeros((size, size), np.uint16)
    for k, i in enumerate(sorted(rng.choice(len(CORNERS), count, replace=False)), start=1):
        rr, cc = disk(CORNERS[i], 6, shape=labels.shape)
        labels[rr, cc] = k
    return labels


def folders(root: Path, masks: list[np.ndarray]) -> tuple[Path, Path]:
    """images/ and masks/ with one pair per mask; images are bright where the mask is non-zero."""
    rng = np.random.default_rng(1)
    for i, mask in enumerate(masks):
        fg = (mask > 0) if mask.ndim == 2 else mask.any(axis=-1)
        image = (40 + 150 * fg + rng.normal(0, 15, fg.shape)).clip(0, 255).astype(np.uint8)
        write_image(root / "images" / f"{i:02d}.png", image)
        write_image(root / "masks" / f"{i:02d}.png", mask if mask.ndim == 2 else mask.transpose(2, 0, 1))
    return root / "images", root / "masks"


def convention(pair_folders, **options) -> DataConfig:
    return find_mask_convention(pair_files(*pair_folders), DataConfig(**options))


def instance_maps(counts=(20, 14, 25)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [touching_discs(rng, n) for n in counts]


# --------------------------------------------------------------------------- recognised, or never


def test_instance_maps_are_recognised_and_described(tmp_path):
    config = convention(folders(tmp_path, instance_maps()))
    assert (config.mask_kind, config.n_classes) == ("instances", 2)
    assert "instance label maps" in describe(config)


def test_class_ids_two_values_palettes_and_colours_are_never_taken_for_instances(tmp_path):
    maps = instance_maps()
    stripes = (np.arange(64)[:, None] // 4 % 4 * np.ones((1, 64), int)).astype(np.uint16)  # 16-bit ids 0..3, many blobs
    assert convention(folders(tmp_path / "ids16", [stripes, stripes[::-1]])).mask_kind == "ids"
    isbi = [np.where(m > 0, 0, 255).astype(np.uint8) for m in maps]  # 0/255, ISBI's polarity
    assert convention(folders(tmp_path / "isbi", isbi)).mask_kind == "values"
    few = [np.minimum(m, 3).astype(np.uint8) for m in maps]  # 8-bit class ids 0..3
    assert convention(folders(tmp_path / "ids8", few)).mask_kind == "ids"
    bands = [(np.arange(64)[:, None] // 16 * np.ones((1, 64), int)).astype(np.uint8)[::s] for s in (1, -1)]
    assert convention(folders(tmp_path / "bands", bands)).mask_kind == "ids"  # 4 classes, each one object: still ids
    palette = folders(tmp_path / "palette", bands)[1]
    for path in palette.glob("*.png"):  # the same bands as palette PNGs (mode P), as Amazon's masks come
        image = Image.fromarray(read_mask(path).astype(np.uint8), mode="P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        image.save(path)
    assert convention((tmp_path / "palette" / "images", palette)).mask_kind == "ids"
    colours = [np.stack([m > 0, m % 2 == 1, m % 3 == 1], -1).astype(np.uint8) * 200 for m in maps]
    assert convention(folders(tmp_path / "rgb", colours)).mask_kind == "colours"


def test_ambiguous_masks_are_asked_about_naming_a_file(tmp_path):
    rng = np.random.default_rng(0)
    few = folders(tmp_path / "few", [touching_discs(rng, n) for n in (3, 2, 3)])  # 16-bit, but 3 objects could be 3 classes
    with pytest.raises(UserError, match=r"00.png holds 3 labels, each one connected object, but no mask holds 16.*"
                                        r"--mask-kind instances .*or --mask-kind ids"):
        convention(few)
    assert convention(few, mask_kind="instances").mask_kind == "instances"
    assert convention(few, mask_kind="ids").n_classes == 4
    narrow = folders(tmp_path / "8bit", [m.astype(np.uint8) for m in instance_maps()])  # an instance map saved in 8 bits
    with pytest.raises(UserError, match=r"02.png holds 25 labels.*but the masks are 8-bit"):
        convention(narrow)


# --------------------------------------------------------------------------- trained with the touching borders


def test_touching_instances_get_a_background_line_between_them():
    labels = np.zeros((24, 40), np.uint16)
    labels[4:20, 4:20], labels[4:20, 20:36] = 1, 2  # two squares sharing the column edge 19 | 20
    classes = instance_classes(labels)
    assert (classes[4:20, 19] == 0).all() and (classes[4:20, 20] == 1).all()  # one line of one side, 1 px wide
    assert (classes[5:19, 5:19] == 1).all() and classes.sum() == (labels > 0).sum() - 16
    assert ndimage.label(classes, structure=np.ones((3, 3)))[1] == 2  # apart even in 8-connectivity
    rng = np.random.default_rng(3)
    discs = touching_discs(rng, 25)
    assert ndimage.label(instance_classes(discs), structure=np.ones((3, 3)))[1] == 25  # each disc its own object


def test_the_weight_map_is_high_between_touching_instances_where_components_merge_them():
    labels = np.zeros((24, 40), np.uint16)
    labels[4:20, 4:20], labels[4:20, 20:36] = 1, 2
    classes = instance_classes(labels)
    by_instances = weight_map(classes, np.ones(2, np.float32), objects=instance_objects(labels, classes))
    by_components = weight_map((labels > 0).astype(np.int64), np.ones(2, np.float32))
    line = by_instances[6:18, 19]
    assert (line > 1 + 0.8 * 10).all(), line  # d1 = d2 = 1 px: w_c + w0 exp(-4 / 50)
    assert (by_components[6:18, 19] == 1).all()  # one merged component: no border term anywhere
    assert by_instances[1, 1] < 1.01  # far from both: class weight only


def test_two_pieces_of_one_instance_are_one_object_for_the_weight_map():
    labels = np.zeros((24, 40), np.uint16)
    labels[4:20, 4:18], labels[4:20, 22:36] = 1, 1  # one nucleus drawn in two pieces, 4 px apart
    classes = instance_classes(labels)
    by_instances = weight_map(classes, np.ones(2, np.float32), objects=instance_objects(labels, classes))
    by_components = weight_map(classes, np.ones(2, np.float32))
    assert (by_instances[6:18, 18:22] < 1.01).all()  # no second object near: nothing to keep open
    assert (by_components[6:18, 18:22] > 4).all()  # two components: a gap the loss would hold open


def test_training_weighs_by_the_instances_and_then_drops_them(tmp_path):
    labels = np.zeros((24, 40), np.uint16)
    labels[4:20, 0:4], labels[4:20, 4:18], labels[4:20, 22:36] = 2, 1, 1  # 1 in two pieces; 2 touches the left one
    pairs = pair_files(*folders(tmp_path, [labels]))
    train, _, config = load_examples(pairs, [], DataConfig(mask_kind="instances"), progress=False)
    _attach_weight_maps(train, TrainConfig(), config, np.ones(2, np.float32), progress=False)
    weight = train[0].weight
    assert (weight[6:18, 4] > 1 + 0.8 * 10).all()  # the line between 1 and 2
    assert (weight[6:18, 18:22] < 1.1).all()  # the gap inside instance 1 (2 is 15 px off): nothing to hold open
    assert train[0].objects is None  # measured once, not kept


def test_read_pair_carries_the_instances_as_trained(tmp_path):
    pair_folders = folders(tmp_path, instance_maps())
    config = convention(pair_folders)
    _, classes, objects = read_pair(pair_files(*pair_folders)[0], config)
    assert objects.max() == 20 and ((objects > 0) == (classes == 1)).all()


# --------------------------------------------------------------------------- train -> predict -> evaluate


def test_instance_maps_train_predict_instances_and_score_ap_and_seg(tmp_path):
    maps = instance_maps((20, 14, 25, 18))
    images, masks = folders(tmp_path / "data", maps)
    run, pred, report = tmp_path / "run", tmp_path / "pred", tmp_path / "scores.json"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(run), "--preset", "tiny",
                 "--batch-size", "2", "--patch-size", "48", "--steps", "3", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["mask_kind"] == "instances"
    assert main(["predict", str(run), str(images / "03.png"), "--out", str(pred)]) == 0
    written = tifffile.imread(pred / "03_instances.tif")  # by default for a run trained on instance maps
    assert written.shape == (64, 64) and written.dtype in (np.uint16, np.uint32)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "03.png").symlink_to(masks / "03.png")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(tmp_path / "gt"), "--run", str(run), "--json", str(report)]) == 0
    scores = json.loads(report.read_text())["stack"]
    assert scores["n_gt_objects"] == 18 and scores["n_pred_objects"] == np.count_nonzero(np.unique(written))
    assert 0 <= scores["ap"] <= 1 and 0 <= scores["seg"] <= 1 and len(scores["iou_per_class"]) == 2
    write_image(tmp_path / "perfect" / "03_labels.png", (maps[3] > 0).astype(np.uint8) * 255)
    write_image(tmp_path / "perfect" / "03_instances.tif", maps[3])  # the ground truth as its own prediction
    assert main(["evaluate", "--pred", str(tmp_path / "perfect"), "--gt", str(tmp_path / "gt"), "--run", str(run),
                 "--json", str(report)]) == 0
    scores = json.loads(report.read_text())["stack"]
    assert scores["ap"] == scores["seg"] == 1  # matched with the maps as they are, not as trained (borders taken out)
    assert main(["predict", str(run), str(images / "03.png"), "--out", str(tmp_path / "off"), "--no-instances"]) == 0
    assert not (tmp_path / "off" / "03_instances.tif").exists()


def test_predict_config_writes_instances_by_default_only_for_instance_runs():
    instance_run, ids_run = DataConfig(mask_kind="instances", n_classes=2), DataConfig(mask_kind="ids", n_classes=2)
    assert PredictConfig().resolved(instance_run).instances == InstanceConfig()
    assert PredictConfig().resolved(ids_run).instances is False
    assert PredictConfig(instances=False).resolved(instance_run).instances is False
    settings = InstanceConfig(min_size=3)
    assert PredictConfig(instances=settings).resolved(ids_run).instances == settings


# --------------------------------------------------------------------------- masks a few pixels off


def test_a_mask_a_few_pixels_too_large_is_cropped_with_a_warning_and_more_is_refused(tmp_path, capsys):
    mask = np.zeros((131, 128), np.uint8)  # 3 rows (2% of 128, rounded up) more than its image, as Amazon's 515 x 512
    mask[10:30, 10:30], mask[128:] = 255, 255
    write_image(tmp_path / "image.png", np.zeros((128, 128), np.uint8))
    write_image(tmp_path / "mask.png", mask)
    pair, config = Pair(tmp_path / "image.png", tmp_path / "mask.png"), DataConfig(mask_kind="values", n_classes=2, mask_values=(0, 255))
    _, classes, _ = read_pair(pair, config)
    assert classes.shape == (128, 128) and classes[10:30, 10:30].all() and classes.sum() == 400  # top-left aligned
    assert "mask.png: mask is 131 x 128, its image 128 x 128: cropped" in capsys.readouterr().err
    for shape in ((132, 128), (128, 140), (126, 128)):  # one row more than 2%, another raster, smaller: never padded
        write_image(tmp_path / "mask.png", np.zeros(shape, np.uint8))
        with pytest.raises(UserError, match=rf"image is 128 x 128 but its mask mask.png is {shape[0]} x {shape[1]}"):
            read_pair(pair, config)


# --------------------------------------------------------------------------- classes only in validation


def test_a_class_only_in_validation_masks_is_named_or_refused(tmp_path, capsys):
    ids = np.zeros((16, 16), np.uint8)
    ids[:8], ids[8:, :8] = 1, 3  # training holds 0, 1, 3: four classes, class 2 never
    held_out = ids.copy()
    held_out[12:, 12:] = 2
    pair_folders = folders(tmp_path / "a", [ids, ids, held_out])
    pairs = pair_files(*pair_folders)
    config = find_mask_convention(pairs[:2], DataConfig(), pairs[2:])
    assert config.n_classes == 4
    assert "class 2 is in the validation masks (e.g. 02.png) but in none of the training masks" in capsys.readouterr().err
    find_mask_convention(pairs[:2], DataConfig(), pairs[:1])
    assert "validation" not in capsys.readouterr().err
    held_out[12:, 12:] = 5  # beyond the class table found from training
    pairs = pair_files(*folders(tmp_path / "b", [ids, ids, held_out]))
    with pytest.raises(UserError, match=r"02.png: mask value 5 is in the validation masks but in none of the training"):
        find_mask_convention(pairs[:2], DataConfig(), pairs[2:])


# --------------------------------------------------------------------------- the shared data


@pytest.mark.skipif(not (SHARED / "dsb2018").is_dir(), reason="shared data absent")
def test_dsb2018_reads_as_instance_maps():
    labels = sorted((SHARED / "dsb2018" / "labels").glob("*.png"))[:20]
    pairs = [Pair(SHARED / "dsb2018" / "images" / p.name, p) for p in labels]
    config = find_mask_convention(pairs, DataConfig())
    assert config.mask_kind == "instances"
    _, classes, objects = read_pair(pairs[0], config)
    assert objects.max() == read_mask(labels[0]).max() and set(np.unique(classes)) <= {0, 1}
