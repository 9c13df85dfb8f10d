import dataclasses

import numpy as np
import pytest
import tifffile
import torch
import zarr

from _runs import save_run
from unetkit import UserError, create_model
from unetkit.cli import main
from unetkit.io import ZarrSource, ome_zarr_writer, read_image
from unetkit.prediction import PredictConfig, Predictor, predict_files


@pytest.fixture
def run_dir(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    probs = Predictor.create(model, PredictConfig(tile_size=64)).probabilities(image((64, 64), seed=9))[1]
    with torch.no_grad():  # centre the untrained model's foreground odds, so that both classes occur in the labels
        model.head.bias[1] -= float(np.log(np.median(probs) / (1 - np.median(probs))))
    save_run(tmp_path / "run", model)
    return tmp_path / "run"


def image(shape=(200, 300), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def ome_image(path, pixels, axes, version="0.5", scale=None):
    """An OME-Zarr image group (NGFF 0.5 in zarr v3, 0.4 in zarr v2) with a second, halved level."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3 if version == "0.5" else 2)
    names = [axis["name"] for axis in axes]
    group.create_array("0", data=pixels, **({"dimension_names": names} if version == "0.5" else {}))
    halved = pixels[(slice(None),) * (pixels.ndim - 2) + (slice(None, None, 2),) * 2]
    group.create_array("1", data=np.ascontiguousarray(halved))
    scale = scale or [1.0] * len(axes)
    datasets = [{"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": [s * (2**level if n in "yx" else 1)
                                                                                                for s, n in zip(scale, names)]}]}
                for level in range(2)]
    multiscale = {"name": "img", "axes": axes, "datasets": datasets}
    group.attrs.update({"ome": {"version": "0.5", "multiscales": [multiscale]}} if version == "0.5"
                       else {"multiscales": [{"version": "0.4", **multiscale}]})
    return path


def axes_of(names):
    kinds = {"t": "time", "c": "channel"}
    return [{"name": n, "type": kinds.get(n, "space"), **({"unit": "micrometer"} if n in "zyx" else {})} for n in names]


def test_zarr_in_zarr_out_equals_tiff_in_tiff_out(tmp_path, run_dir, one_torch_thread):
    pixels = image((200, 300))
    tifffile.imwrite(tmp_path / "scene.tif", pixels)
    zarr.create_array(str(tmp_path / "scene.zarr"), data=pixels, chunks=(64, 64))  # plain array, no axis names: y, x
    predict_files(run_dir, [tmp_path / "scene.tif"], tmp_path / "tiff", PredictConfig(tile_size=64))
    written = predict_files(run_dir, [tmp_path / "scene.zarr"], tmp_path / "zarr", PredictConfig(tile_size=64, out_format="zarr"))
    assert [p.name for p in written] == ["scene.ome.zarr", "scene_overlay.png"]
    store = zarr.open_group(str(tmp_path / "zarr/scene.ome.zarr"), mode="r")
    np.testing.assert_allclose(store["0"][:], read_image(tmp_path / "tiff/scene_probs.tif"), atol=1e-6)
    labels = store["labels/scene_labels/0"][:]
    np.testing.assert_array_equal(labels * 255, read_image(tmp_path / "tiff/scene_labels.png"))  # class ids here, 0/255 in the PNG
    assert 0 < labels.mean() < 1  # both classes occur: the comparison says something


def test_pyramid_levels_and_ngff_metadata(tmp_path):
    rng = np.random.default_rng(1)
    labels, probs = rng.integers(0, 3, (600, 530)).astype(np.uint8), rng.random((3, 600, 530), dtype=np.float32)
    colours = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
    with ome_zarr_writer(tmp_path / "a.ome.zarr", 600, 530, name="a", labels_dtype=np.uint8, colours=colours, probs_channels=3) as write:
        for top, bottom in [(0, 37), (37, 38), (38, 301), (301, 555), (555, 600)]:  # bands of any heights, odd and even
            write(labels[top:bottom], probs[:, top:bottom])
    store = zarr.open_group(str(tmp_path / "a.ome.zarr"), mode="r")
    ome = store.attrs["ome"]
    label_ome = store["labels/a_labels"].attrs["ome"]
    assert ome["version"] == "0.5" and store["labels"].attrs["ome"]["labels"] == ["a_labels"]
    assert [d["path"] for d in ome["multiscales"][0]["datasets"]] == [d["path"] for d in label_ome["multiscales"][0]["datasets"]] == ["0", "1", "2"]
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == list(store["0"].metadata.dimension_names) == ["c", "y", "x"]
    assert label_ome["multiscales"][0]["datasets"][2]["coordinateTransformations"] == [{"type": "scale", "scale": [1.0, 4.0, 4.0]}]
    assert label_ome["image-label"]["colors"][2] == {"label-value": 2, "rgba": [0, 0, 255, 255]}
    expected = probs
    for level in range(3):
        np.testing.assert_array_equal(store[f"labels/a_labels/{level}"][0], labels[:: 2**level, :: 2**level])
        np.testing.assert_allclose(store[str(level)][:], expected, rtol=1e-6)
        h, w = expected.shape[1:]  # the next level: means of 2 x 2 blocks, an odd edge averaged over what is there
        padded = np.pad(expected, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge").astype(np.float64)
        expected = (padded[:, ::2, ::2] + padded[:, 1::2, ::2] + padded[:, ::2, 1::2] + padded[:, 1::2, 1::2]) / 4
    assert store["2"].shape == (3, 150, 133)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_input_with_ngff_axes(tmp_path, run_dir, one_torch_thread, version):
    pixels = image((72, 96), seed=2)
    ome_image(tmp_path / "cells.ome.zarr", pixels[None, None, None], axes_of("tczyx"), version, scale=[1, 1, 2.0, 0.5, 0.25])
    source = ZarrSource(tmp_path / "cells.ome.zarr")
    assert source.shape == (1, 72, 96)
    np.testing.assert_array_equal(source.read(10, 20, 30, 50)[0], pixels[10:20, 30:50])
    predict_files(run_dir, [tmp_path / "cells.ome.zarr"], tmp_path / "out", PredictConfig(tile_size=64, out_format="zarr"))
    store = zarr.open_group(str(tmp_path / "out/cells.ome.zarr"), mode="r")
    expected = Predictor.create(run_dir, PredictConfig(tile_size=64)).probabilities(pixels[None])
    np.testing.assert_allclose(store["0"][:], expected, atol=1e-6)
    multiscale = store.attrs["ome"]["multiscales"][0]
    assert multiscale["axes"][1:] == [{"name": n, "type": "space", "unit": "micrometer"} for n in "yx"]  # the input's units
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.5, 0.25]  # and pixel size


def test_channel_axis_anywhere_by_dimension_names(tmp_path):
    pixels = np.random.default_rng(3).random((40, 50, 3), dtype=np.float32)
    zarr.create_array(str(tmp_path / "rgb.zarr"), data=pixels, dimension_names=("y", "x", "c"))
    source = ZarrSource(tmp_path / "rgb.zarr")
    assert source.shape == (3, 40, 50)
    np.testing.assert_array_equal(source.read(5, 9, 7, 20), pixels[5:9, 7:20].transpose(2, 0, 1))


BAD_STORES = {
    "time points": (lambda p: ome_image(p, np.zeros((3, 1, 1, 16, 16), np.uint8), axes_of("tczyx")), "t has 3 entries"),
    "z planes": (lambda p: ome_image(p, np.zeros((4, 16, 16), np.uint8), axes_of("zyx")), "z has 4 entries"),
    "unknown axis": (lambda p: ome_image(p, np.zeros((2, 16, 16), np.uint8), [{"name": "angle", "type": "angle"}] + axes_of("yx")),
                     "zarr axes angle,y,x (2, 16, 16) are not an image's"),
    "complex": (lambda p: zarr.create_array(str(p), data=np.zeros((16, 16), np.complex64)), "holds complex64 pixels"),
    "bool": (lambda p: zarr.create_array(str(p), data=np.zeros((16, 16), bool)), "holds bool pixels"),
    "4-D unnamed": (lambda p: zarr.create_array(str(p), data=np.zeros((1, 1, 16, 16), np.uint8)), "4-D zarr array (1, 1, 16, 16) without axis names"),
    "plain group": (lambda p: zarr.open_group(str(p), mode="w").create_array("x", data=np.zeros((4, 4))), "no OME-Zarr image"),
    "no metadata": (lambda p: p.mkdir(), "cannot read zarr store"),
}


@pytest.mark.parametrize("case", BAD_STORES)
def test_bad_stores_give_one_line_errors(tmp_path, run_dir, capsys, case):
    make, message = BAD_STORES[case]
    make(tmp_path / "bad.zarr")
    assert main(["predict", str(run_dir), str(tmp_path / "bad.zarr"), "--out", str(tmp_path / "out"), "--out-format", "zarr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.zarr: " in err and message in err, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predict_config.json"]


def test_zarr_output_is_atomic(tmp_path, run_dir, monkeypatch):
    zarr.create_array(str(tmp_path / "img.zarr"), data=image((300, 200)))
    config = PredictConfig(tile_size=32, tile_batch=4, out_format="zarr", overlay=False)
    predict_files(run_dir, [tmp_path / "img.zarr"], tmp_path / "out", config)
    before = zarr.open_group(str(tmp_path / "out/img.ome.zarr"), mode="r")["0"][:]
    calls = []

    def fail_on_third_band(self, band, level=0):
        calls.append(level)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return add(self, band, level)

    from unetkit.io.zarr_sink import Pyramid

    add = Pyramid.add
    monkeypatch.setattr(Pyramid, "add", fail_on_third_band)
    other = dataclasses.replace(config, overlap=0.3)  # other settings: a rerun predicts the image again
    with pytest.raises(UserError, match=r"img.ome.zarr: cannot write \(No space left on device\)"):
        predict_files(run_dir, [tmp_path / "img.zarr"], tmp_path / "out", other)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".unetkit-predict", "img.ome.zarr", "predict_config.json"]  # no temporary left
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "out/img.ome.zarr"), mode="r")["0"][:], before)  # the old store, whole


def test_a_zarr_store_is_one_input_not_a_folder(tmp_path, run_dir):
    zarr.create_array(str(tmp_path / "plain"), data=image((40, 40)))  # no .zarr suffix: known by its zarr.json
    written = predict_files(run_dir, [tmp_path / "plain"], tmp_path / "out", PredictConfig(overlay=False))
    assert [p.name for p in written] == ["plain_labels.png", "plain_probs.tif"]  # small, in memory, to TIFF/PNG by default
