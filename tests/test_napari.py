"""The napari plugin, headless: widget, reader and sample data in a real viewer (napari's `make_napari_viewer`).

napari's canvas needs OpenGL, which Qt 6's offscreen platform does not give:
the viewer runs on a virtual X server (Xvfb) that nobody sees. The tests skip
where napari, pytest-qt or a display (or Xvfb) is missing.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from _runs import save_run
from unetkit import create_model, predict
from unetkit.cli import main
from unetkit.io import read_image, write_image
from unetkit.napari.reader import get_reader, read_prediction
from unetkit.synthetic import generate
from unetkit.zoo import export_package

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the widget's worker thread shares torch's thread pool

from napari.utils.notifications import Notification, notification_manager  # noqa: E402

from unetkit.napari.widget import PredictWidget  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def x_display():
    """A display for Qt: the one there is, else a private Xvfb (session-scoped: set before pytest-qt's QApplication)."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("no display and no Xvfb (Debian: apt-get install xvfb)")
    server = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    number = server.stdout.readline().decode().strip()  # written once the server accepts clients
    if not number:
        pytest.skip("Xvfb did not start")
    saved = {key: os.environ.get(key) for key in ("DISPLAY", "QT_QPA_PLATFORM")}
    os.environ.update(DISPLAY=f":{number}", QT_QPA_PLATFORM="xcb")  # Qt 6 "offscreen" has no OpenGL widgets
    yield os.environ["DISPLAY"]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.terminate()
    server.wait()


@pytest.fixture
def section(tmp_path):
    image, _ = generate((64, 64), seed=3)
    write_image(tmp_path / "section.png", image)
    return tmp_path / "section.png"


@pytest.fixture
def run_dir(tmp_path, section):
    """A saved, untrained width-4 model whose head is biased so that 40% of the section's pixels fall in class 0.

    Its labels then split the image and many pixels lie near the decision
    boundary: any difference in normalisation, tiling or class order shows.
    """
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    probs = predict(model, read_image(section))
    margin = np.sort((np.log(probs[1]) - np.log(probs[0])).ravel())
    k = margin.size * 2 // 5
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.bias[1] -= float(margin[k] + margin[k + 1]) / 2  # between two pixels: none sits on the boundary
    return save_run(tmp_path / "run", model)


@pytest.fixture
def notifications():
    """What napari notified during the test."""
    notification_manager.records.clear()
    return notification_manager.records


def predict_in_viewer(viewer, qtbot, run, layer_name: str, *, probabilities=False, instances=False) -> PredictWidget:
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.add_probabilities.value, widget.add_instances.value = probabilities, instances
    return predict_with(widget, qtbot, run, layer_name)


def predict_with(widget: PredictWidget, qtbot, run, layer_name: str) -> PredictWidget:
    widget.run_folder.value = run
    widget.image.value = widget.viewer.layers[layer_name]
    assert widget.predict() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=300_000)
    return widget


def test_widget_labels_equal_unetkit_predict(make_napari_viewer, qtbot, tmp_path, run_dir, section, notifications):
    out = tmp_path / "cli"
    assert main(["predict", str(run_dir), str(section), "--out", str(out), "--instances"]) == 0
    viewer = make_napari_viewer()
    viewer.open(section, plugin="napari")  # napari's own reader, as a user opens the file
    widget = predict_in_viewer(viewer, qtbot, run_dir, "section", probabilities=True, instances=True)

    labels = viewer.layers["section_labels"]
    assert isinstance(labels, napari.layers.Labels)
    expected = read_image(out / "section_labels.png")[0] // 255  # two classes are written as 0/255
    assert 0.5 < expected.mean() < 0.7  # both classes, as the run's bias set them: equality is no accident
    np.testing.assert_array_equal(labels.data, expected)
    probs = viewer.layers["section_probs"]
    assert isinstance(probs, napari.layers.Image)
    np.testing.assert_allclose(probs.data, read_image(out / "section_probs.tif"), atol=1e-6)
    objects = read_image(out / "section_instances.tif")[0]
    assert objects.any()  # objects found (the watershed ran)
    np.testing.assert_array_equal(viewer.layers["section_instances"].data, objects)
    assert widget.progress.value == widget.progress.max > 0  # every tile counted
    assert not [n for n in notifications if n.severity == "error"]


def test_widget_runs_a_bioimageio_package_like_its_run(make_napari_viewer, qtbot, tmp_path, run_dir, section, notifications):
    pytest.importorskip("bioimageio.spec")
    package = export_package(run_dir, section, tmp_path / "model.bioimageio.zip", test=False).path
    assert main(["predict", str(run_dir), str(section), "--out", str(tmp_path / "cli")]) == 0
    viewer = make_napari_viewer()
    viewer.open(section, plugin="napari")
    widget = PredictWidget(viewer)
    widget.package.value = package  # the package wins over the (empty) run folder
    predict_with(widget, qtbot, None, "section")
    expected = read_image(tmp_path / "cli" / "section_labels.png")[0] // 255
    assert 0.5 < expected.mean() < 0.7
    np.testing.assert_array_equal(viewer.layers["section_labels"].data, expected)
    assert not [n for n in notifications if n.severity == "error"]


def test_plugin_widget_is_found_through_its_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("unetkit", "U-Net prediction")
    assert isinstance(widget, PredictWidget)


def test_bad_input_is_one_notification_line(make_napari_viewer, qtbot, tmp_path, run_dir, notifications, capfd):
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    rng = np.random.default_rng(0)
    grey, rgb, stack = rng.random((64, 64)), rng.integers(0, 255, (64, 64, 3), np.uint8), rng.random((5, 64, 64))
    cases = {  # case: (run folder, image, what the line says)
        "not a run": (not_a_run, grey, "not a unetkit run folder"),
        "no folder": (None, grey, "no run folder chosen"),
        "RGB for a grey model": (run_dir, rgb, "image has 3 channels, the model expects 1"),
        "3-D layer": (run_dir, stack, "the layer is 3-D (5 x 64 x 64)"),
    }
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    for case, (folder, image, message) in cases.items():
        viewer.layers.clear()
        notifications.clear()
        viewer.add_image(image, name="picture")
        predict_with(widget, qtbot, folder, "picture")
        errors = [n for n in notifications if n.severity == "error"]
        assert len(errors) == 1 and type(errors[0]) is Notification, case  # an ErrorNotification carries a traceback
        assert message in errors[0].message and "\n" not in errors[0].message, (case, errors[0].message)
        assert [layer.name for layer in viewer.layers] == ["picture"], case
    assert "Traceback" not in capfd.readouterr().err


def test_cancel_stops_the_prediction(make_napari_viewer, qtbot, run_dir, notifications):
    viewer = make_napari_viewer()
    viewer.add_image(generate((256, 256), seed=1)[0], name="section")
    widget = PredictWidget(viewer)
    widget.run_folder.value, widget.image.value = run_dir, viewer.layers["section"]
    assert widget.predict() is not None
    widget.cancel()  # before the first tile batch is done: the worker stops at it
    qtbot.waitUntil(lambda: widget.worker is None, timeout=300_000)
    assert [layer.name for layer in viewer.layers] == ["section"]
    assert widget.predict_button.enabled and not widget.cancel_button.enabled
    assert [n.message for n in notifications] == ["prediction cancelled"]


def test_reader_opens_each_kind_of_prediction_file_as_its_layer(make_napari_viewer, tmp_path, run_dir, section):
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(section), "--out", str(out), "--instances", "--min-size", "0"]) == 0
    assert main(["predict", str(run_dir), str(section), "--out", str(tmp_path / "streamed"), "--stream-above", "0"]) == 0
    viewer = make_napari_viewer()
    files = {
        out / "section_labels.png": napari.layers.Labels,
        tmp_path / "streamed" / "section_labels.tif": napari.layers.Labels,  # what a streamed (huge) image gets
        out / "section_instances.tif": napari.layers.Labels,
        out / "section_probs.tif": napari.layers.Image,
    }
    for path, kind in files.items():
        [layer] = viewer.open(path, plugin="unetkit")
        assert isinstance(layer, kind), path.name
    labels = read_image(out / "section_labels.png")[0] // 255
    np.testing.assert_array_equal(viewer.layers[0].data, labels)
    np.testing.assert_array_equal(viewer.layers[1].data, labels)
    assert viewer.layers["section_probs"].data.shape == (2, 64, 64)
    assert get_reader(str(section)) is None  # a plain image is napari's to read


def test_reader_gives_colour_coded_labels_one_id_per_colour(tmp_path):
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    classes = np.arange(12).reshape(3, 4) % 3
    write_image(tmp_path / "road_labels.png", colours[classes].transpose(2, 0, 1))
    data, meta, kind = read_prediction(tmp_path / "road_labels.png")
    assert kind == "labels"
    np.testing.assert_array_equal(data, np.array([1, 3, 2])[classes])  # ids follow the sorted colours: black, blue, red
    assert meta["colormap"][2] == (0.0, 0.0, 1.0) and meta["colormap"][3] == (1.0, 0.0, 0.0)


def test_sample_data_is_a_section_with_its_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("unetkit", "em_section")
    image, truth = viewer.layers["em_section"], viewer.layers["em_section_truth"]
    assert isinstance(image, napari.layers.Image) and isinstance(truth, napari.layers.Labels)
    expected_image, expected_label = generate((256, 256), seed=0)
    np.testing.assert_array_equal(image.data, expected_image)
    np.testing.assert_array_equal(truth.data, expected_label // 255)
