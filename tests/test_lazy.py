"""Lazy training: images above --lazy-above are read window by window from their tiled TIFF or zarr store, never
whole, and give the same patches, weight maps, statistics, plan, validation and resumed runs as the same files in memory."""

import os
import re
import signal
import sys

import numpy as np
import pytest
import tifffile
import torch
import zarr
from safetensors.torch import load_file
from skimage.draw import disk

import unetkit
from unetkit.checkpoint import load_train_state
from unetkit.cli import main
from unetkit.config import DataConfig, TrainConfig
from unetkit.data import LazyExample, PatchDataset, load_examples, pair_files
from unetkit.errors import UserError
from unetkit.io import TiffSource, ZarrSource, ome_zarr_writer
from unetkit.planning.fingerprint import fingerprint
from unetkit.training.setup import _attach_weight_maps, _class_weights

HEIGHT, WIDTH = 512, 256
BAND_ROWS = 32  # bands of 32 rows: objects span several, so the join of their pieces is exercised


@pytest.fixture(autouse=True)
def small_bands(monkeypatch):
    monkeypatch.setattr("unetkit.data.windows.BAND_PIXELS", BAND_ROWS * WIDTH)


def scene(seed: int, instances: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W) uint16 image and its mask: discs (some touching) and a U whose arms meet 100 rows below their tops."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((HEIGHT, WIDTH), np.uint16)
    for k in range(1, 40):
        rr, cc = disk(tuple(rng.integers(10, (HEIGHT - 10, WIDTH - 10))), int(rng.integers(4, 12)), shape=labels.shape)
        labels[rr, cc] = k
    labels[200:300, 100:110], labels[200:300, 125:135], labels[290:300, 100:135] = 50, 50, 50  # the U: one object
    image = (1000 + 2000 * (labels > 0) + rng.normal(0, 300, labels.shape)).clip(0, 65535).astype(np.uint16)
    return image, labels if instances else ((labels > 0) * 255).astype(np.uint8)


def write_data(root, count: int = 2, instances: bool = False):
    """Tiled, compressed TIFF pairs (64 x 64 tiles), named 00, 01, ...; returns the two folders."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(count):
        image, mask = scene(i, instances)
        tifffile.imwrite(images / f"{i:02d}.tif", image, tile=(64, 64), compression="zlib")
        tifffile.imwrite(masks / f"{i:02d}.tif", mask, tile=(64, 64), compression="zlib")
    return images, masks


def datasets(folders, tmp_path, config: DataConfig, train: TrainConfig, lazy_above):
    """The training patches of the first pair as training builds them: read, weighted and sampled."""
    pairs = pair_files(*folders)
    examples, _, data = load_examples(pairs[:1], pairs[1:], config, progress=False, lazy_above_mpix=lazy_above)
    weights = _class_weights(train, examples, data)
    _attach_weight_maps(examples, train, data, weights, False, tmp_path / f"cache-{lazy_above}")
    dataset = PatchDataset(examples, target=40, margin=6, slack=30, seed=3, samples_per_epoch=40, fg_oversample=0.5)
    return dataset, data, weights


@pytest.mark.parametrize("instances,normalization", [(False, "percentile"), (True, "meanstd")])
def test_lazy_patches_equal_the_in_memory_ones(tmp_path, monkeypatch, instances, normalization):
    """Image, mask, weight map (built in bands with 22 px of context and the whole image's objects) and seed, bit for bit."""
    monkeypatch.setattr(PatchDataset, "FG_POSITIONS", 500)  # foreground positions subsampled, in two passes when lazy
    folders = write_data(tmp_path / "data", instances=instances)
    config = DataConfig(normalization=normalization, mask_kind="instances" if instances else "auto")
    held, held_data, held_weights = datasets(folders, tmp_path, config, TrainConfig(), lazy_above=None)
    lazy, lazy_data, lazy_weights = datasets(folders, tmp_path, config, TrainConfig(), lazy_above=0)
    assert isinstance(lazy.examples[0], LazyExample) and not isinstance(held.examples[0], LazyExample)
    assert lazy_data == held_data and np.array_equal(lazy_weights, held_weights)  # normalisation and class weights
    np.testing.assert_array_equal(lazy.examples[0].weights.read(0, HEIGHT, 0, WIDTH), held.examples[0].weight)  # every pixel
    for index in range(len(held)):
        a, b = held[index], lazy[index]
        assert a.keys() == b.keys() == {"image", "mask", "weight", "seed"}
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), f"sample {index}: {key} differs"
    assert any(held[i]["weight"].max() > 5 for i in range(len(held))), "no patch shows the border term"


def test_the_plan_reads_large_pairs_lazily_with_the_same_fingerprint(tmp_path):
    pairs = pair_files(*write_data(tmp_path / "data"))
    assert fingerprint(pairs, DataConfig(), lazy_above_mpix=0) == fingerprint(pairs, DataConfig(), lazy_above_mpix=None)


@pytest.fixture
def guarded(monkeypatch):
    """Fail if any TIFF or zarr store is read whole, or a region of more than half an image is read: the image never
    materialises. Validation predicts with 96-px tiles and the plan measures objects in a central 128-px crop
    (1024 px by default: bounded too), as a real large image holds many of either."""
    import unetkit.io.images as images
    from unetkit.prediction import PredictConfig

    def refuse(path, *args, **kwargs):
        raise AssertionError(f"{path} read whole")

    def bounded(original):
        def read(self, y0, y1, x0, x1):
            assert (y1 - y0) * (x1 - x0) <= self.shape[1] * self.shape[2] / 2, f"region {y0}:{y1} x {x0}:{x1} read from {self.path.name}"
            return original(self, y0, y1, x0, x1)

        return read

    monkeypatch.setattr(images, "_read_raw", refuse)
    monkeypatch.setattr(images, "_read_store", refuse)
    monkeypatch.setattr(TiffSource, "read", bounded(TiffSource.read))
    monkeypatch.setattr(ZarrSource, "read", bounded(ZarrSource.read))
    monkeypatch.setattr("unetkit.training.validate.PredictConfig", lambda: PredictConfig(tile_size=96))
    monkeypatch.setattr(sys.modules["unetkit.planning.fingerprint"], "CROP", 128)  # (the package's `fingerprint` is the function)


def test_a_lazy_training_run_completes_without_reading_an_image_whole(tmp_path, guarded, one_torch_thread):
    images, masks = write_data(tmp_path / "data")
    out = tmp_path / "run"
    flags = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--steps", "4",
             "--workers", "1", "--lazy-above", "0.1", "--quiet"]  # 0.13 MP images: lazy; planned (the plan reads lazily too)
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(out), *flags]) == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[1] == "4" and "val_mean_iou" in rows[0]  # validated: the held-out image, band by band
    assert not list(out.glob(".lazy-cache-*")), "the objects' cache outlived the run"


RESUMABLE = dict(preset="tiny", batch_size=2, patch_size=32, samples_per_epoch=8, steps=8, deterministic=True,
                 dropout=0.2, progress=False, plan=False)


def test_a_resumed_lazy_run_equals_an_uninterrupted_in_memory_run(tmp_path, one_torch_thread):
    data = write_data(tmp_path / "data")
    straight = unetkit.train(*data, tmp_path / "held", lazy_above_mpix=1000, **RESUMABLE)
    stop = lambda loop: loop.step == 4 and os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731 - stop cleanly after step 4
    resumed = unetkit.train(*data, tmp_path / "lazy", lazy_above_mpix=0, hooks={"on_step_end": stop}, **RESUMABLE)
    assert load_train_state(resumed)["loop"]["step"] == 4
    unetkit.train(*data, resumed, resume=True, progress=False)
    for name in ("model.safetensors", "best.safetensors"):
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert validation(straight) == validation(resumed)


def validation(run) -> list[dict]:
    """The validation scores of every metrics row (not the times)."""
    header, *rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    return [{k: v for k, v in zip(header, row) if k.startswith("val_") and k != "val_s"} for row in rows]


def test_a_tiff_compressed_in_one_strip_is_refused_and_in_strips_warned_about(tmp_path, capsys):
    images, masks = write_data(tmp_path / "data", count=1)
    image, mask = scene(0)
    tifffile.imwrite(masks / "00.tif", mask, compression="zlib", rowsperstrip=16)
    load_examples(pair_files(images, masks), [], DataConfig(), progress=False, lazy_above_mpix=0)
    assert "compressed in strips of 16 rows" in capsys.readouterr().err
    tifffile.imwrite(images / "00.tif", image, compression="zlib", rowsperstrip=HEIGHT)
    with pytest.raises(UserError, match="one strip.*tile=\\(256, 256\\)"):
        load_examples(pair_files(images, masks), [], DataConfig(), progress=False, lazy_above_mpix=0)


# --------------------------------------------------------------------------- zarr stores

SIDE = 256  # zarr stores hold the top SIDE x SIDE of the scenes


def write_stores(root, layout: str, instances: bool = False, rows: int = SIDE):
    """The top `rows` of two scenes as zarr stores (64-px chunks) and as files; returns (store folders, file folders).

    "plain": zarr arrays (y, x), images/00.zarr + masks/00_mask.zarr; "ome": OME-Zarr images (c, y, x),
    images/00.ome.zarr + masks/00.ome.zarr holding only a labels image, as `predict --out-format zarr` writes it.
    """
    stores, files = (root / "stores/images", root / "stores/masks"), (root / "files/images", root / "files/masks")
    for folder in stores + files:
        folder.mkdir(parents=True)
    for i in range(2):
        image, mask = (a[:rows] for a in scene(i, instances))
        tifffile.imwrite(files[0] / f"{i:02d}.tif", image)
        tifffile.imwrite(files[1] / f"{i:02d}.{'tif' if instances else 'png'}", mask)
        if layout == "plain":
            zarr.create_array(str(stores[0] / f"{i:02d}.zarr"), data=image, chunks=(64, 64))
            zarr.create_array(str(stores[1] / f"{i:02d}_mask.zarr"), data=mask, chunks=(64, 64))
            continue
        group = zarr.open_group(str(stores[0] / f"{i:02d}.ome.zarr"), mode="w", zarr_format=3)
        group.create_array("0", data=image[None], chunks=(1, 64, 64), dimension_names=("c", "y", "x"))
        axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
        group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}
        colours = [(k % 256,) * 3 for k in range(int(mask.max()) + 1)]
        with ome_zarr_writer(stores[1] / f"{i:02d}.ome.zarr", rows, WIDTH, name=f"{i:02d}", labels_dtype=mask.dtype, colours=colours) as write:
            write(mask)
    return stores, files


@pytest.mark.parametrize("lazy_above", [None, 0], ids=["in-memory", "lazy"])
@pytest.mark.parametrize("layout,instances,normalization", [("plain", False, "percentile"), ("ome", True, "meanstd")])
def test_zarr_stores_give_the_patches_and_plan_of_the_same_files(tmp_path, monkeypatch, layout, instances, normalization, lazy_above):
    """Zarr pairs, read whole when small and window by window above the threshold: image, mask, weight map, seed bit for bit."""
    monkeypatch.setattr(PatchDataset, "FG_POSITIONS", 500)
    stores, files = write_stores(tmp_path / "data", layout, instances)
    config = DataConfig(normalization=normalization, mask_kind="instances" if instances else "auto")
    held, held_data, held_weights = datasets(files, tmp_path / "files", config, TrainConfig(), lazy_above=None)
    store, store_data, store_weights = datasets(stores, tmp_path / "stores", config, TrainConfig(), lazy_above=lazy_above)
    assert [e.name for e in store.examples] == [e.name for e in held.examples] == ["00"]
    assert isinstance(store.examples[0], LazyExample) == (lazy_above == 0)
    assert store_data == held_data and np.array_equal(store_weights, held_weights)
    for index in range(len(held)):
        a, b = held[index], store[index]
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), f"sample {index}: {key} differs"
    assert any(held[i]["weight"].max() > 5 for i in range(len(held))), "no patch shows the border term"
    assert fingerprint(pair_files(*stores), config, lazy_above) == fingerprint(pair_files(*files), config, None)


def test_a_lazy_zarr_training_run_completes_without_reading_a_store_whole(tmp_path, guarded, one_torch_thread):
    (images, masks), _ = write_stores(tmp_path / "data", "ome", rows=HEIGHT)  # validation's 136-row bands: < half of it
    out = tmp_path / "run"
    flags = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--steps", "4",
             "--workers", "1", "--lazy-above", "0.1", "--quiet"]  # 0.13 MP stores: lazy; planned lazily too
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(out), *flags]) == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[1] == "4" and "val_mean_iou" in rows[0]  # validated: the held-out store, band by band


@pytest.mark.parametrize("broken,message", [
    ("images/01.zarr", "zarr axes z,y,x \\(3, 256, 256\\): z has 3 entries"),
    ("masks/01_mask.zarr", "zarr mask store holds 1 channel\\(s\\) of float32"),
])
def test_a_store_with_a_bad_layout_is_one_line_naming_it(tmp_path, capsys, broken, message):
    (images, masks), _ = write_stores(tmp_path / "data", "plain")
    path = images.parent / broken
    if broken.startswith("images"):  # a z-stack of 3 sections: no 2-D image
        zarr.create_array(str(path), data=np.zeros((3, SIDE, SIDE), np.uint16), dimension_names=("z", "y", "x"), overwrite=True)
    else:  # float labels: no class ids
        zarr.create_array(str(path), data=np.zeros((SIDE, SIDE), np.float32), overwrite=True)
    for lazy_above in ("1000", "0.01"):
        argv = ["train", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "run"), "--preset", "tiny",
                "--steps", "1", "--lazy-above", lazy_above, "--quiet"]
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and str(path) in error, error
        assert re.search(message, error), error
