from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from _runs import save_run
from unetkit import create_model
from unetkit.config import DataConfig
from unetkit.io import geo_tags, write_image
from unetkit.prediction import InstanceConfig, PredictConfig, predict_files

AMAZON = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon_forest"
UTM_33N = "WGS 84 / UTM zone 33N|"
GEO_KEYS = (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633, 3073, 34737, len(UTM_33N), 0)
GDAL_ITEMS = '<GDALMetadata><Item name="AREA_OR_POINT">Area</Item><Item name="DESCRIPTION" sample="0" role="description">red</Item></GDALMetadata>'
GEOREFERENCING = {  # (code, type, count, value): TIFF types 2 text, 3 short, 12 double
    "scale and tie point": [(33550, 12, 3, (10.0, 10.0, 0.0)), (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 4649776.0, 0.0))],
    "transformation": [(34264, 12, 16, (10.0, 0.5, 0.0, 500000.0, 0.5, -10.0, 0.0, 4649776.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0))],
}


def run(path, channels=1):
    torch.manual_seed(0)
    model = create_model("tiny", in_channels=channels).eval()
    return save_run(path, model, DataConfig(in_channels=channels))


def geotiff(path, placement):
    pixels = np.random.default_rng(0).integers(0, 255, (96, 80), dtype=np.uint8)
    tags = [*placement, (34735, 3, len(GEO_KEYS), GEO_KEYS), (34737, 2, 0, UTM_33N), (42112, 2, 0, GDAL_ITEMS), (42113, 2, 0, "0")]
    tifffile.imwrite(path, pixels, extratags=[(*tag, True) for tag in tags])
    return path


@pytest.mark.parametrize("placement", GEOREFERENCING)
@pytest.mark.parametrize("streamed", [False, True])
def test_geotiff_tags_survive_in_labels_probabilities_and_instances(tmp_path, placement, streamed, one_torch_thread):
    source = geotiff(tmp_path / "scene.tif", GEOREFERENCING[placement])
    config = PredictConfig(tile_size=64, stream_above_mpix=0.001 if streamed else 16, instances=InstanceConfig(min_size=0))
    written = predict_files(run(tmp_path / "run"), [source], tmp_path / "out", config)
    tiffs = sorted(p.name for p in written if p.suffix == ".tif")
    assert tiffs == ([] if streamed else ["scene_instances.tif"]) + ["scene_labels.tif", "scene_probs.tif"]
    with tifffile.TiffFile(source) as tif:
        expected = tif.geotiff_metadata
    assert expected["ProjectedCSTypeGeoKey"] == 32633  # the independent reader sees the CRS in the input
    for name in tiffs:
        with tifffile.TiffFile(tmp_path / "out" / name) as tif:
            assert tif.geotiff_metadata == expected, name
            tags = tif.pages.first.tags
            assert 42113 not in tags  # the input's no-data value is no class
            assert tags[42112].value.count("<Item") == 1 and "AREA_OR_POINT" in tags[42112].value  # band items dropped


def test_georeferencing_that_cannot_be_carried_is_said(tmp_path, capsys, one_torch_thread):
    source = geotiff(tmp_path / "scene.tif", GEOREFERENCING["transformation"])
    predict_files(run(tmp_path / "run"), [source], tmp_path / "zarr", PredictConfig(tile_size=64, out_format="zarr"))
    assert "scene.tif: its georeferencing (GeoTIFF tags) is not carried into zarr output" in capsys.readouterr().err
    write_image(tmp_path / "aerial.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "aerial.pgw").write_text("10\n0\n0\n-10\n500000\n4649776\n")
    predict_files(tmp_path / "run", [tmp_path / "aerial.png"], tmp_path / "png", PredictConfig(tile_size=64))
    assert "aerial.png: its georeferencing in aerial.pgw is not carried into the outputs" in capsys.readouterr().err


def test_plain_images_have_no_geo_tags(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))
    write_image(tmp_path / "plain.png", np.zeros((8, 8), np.uint8))
    assert geo_tags(tmp_path / "plain.tif") == () == geo_tags(tmp_path / "plain.png")


def test_a_real_geotiff_keeps_its_georeferencing(tmp_path, one_torch_thread):
    images = sorted((AMAZON / "val" / "images").glob("*.tiff"))
    if not images:
        pytest.skip("Amazon forest data not found at ../shared/data/amazon_forest")
    written = predict_files(run(tmp_path / "run", channels=3), images[:1], tmp_path / "out", PredictConfig(tile_size=128, overlay=False))
    with tifffile.TiffFile(images[0]) as tif:
        expected = tif.geotiff_metadata
    assert expected["GeographicTypeGeoKey"] == 4326
    for path in written:
        with tifffile.TiffFile(path) as tif:
            assert tif.geotiff_metadata == expected
