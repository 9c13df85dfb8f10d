"""The napari widget: predict an image layer with a unetkit run, in a worker thread, with progress and Cancel.

Adds NAME_labels (class ids) and, when asked, NAME_probs (an image, one slice
per class) and NAME_instances; a second prediction of the same layer replaces
them. Every failure is one notification line (`show_error`): the worker
returns errors instead of raising them, since napari prints the traceback of
anything a worker raises.
"""

from __future__ import annotations

import logging
import threading
from functools import partial

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, ProgressBar, PushButton
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from ..errors import UserError, first_line
from ..prediction import InstanceConfig, PredictConfig
from .predict import Cancelled, LayerPrediction, layer_image, open_predictor, predict_layer

log = logging.getLogger(__name__)


@thread_worker
def _predict_in_thread(source, config: PredictConfig, layer: dict, cancel: threading.Event):
    """The worker's generator: yields progress; returns a LayerPrediction, an error line, or None when cancelled."""
    try:
        predictor = open_predictor(source, config)
        image = layer_image(layer["data"], rgb=layer["rgb"], multiscale=layer["multiscale"], name=layer["name"],
                            in_channels=predictor.model_config.in_channels)
        return (yield from predict_layer(predictor, image, cancel, layer["name"]))
    except Cancelled:
        return None
    except UserError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug or an unreadable file: one line here, the traceback in the log
        log.debug("prediction failed", exc_info=True)
        return f"prediction failed: {type(exc).__name__}: {first_line(exc)}"


class PredictWidget(Container):
    """Run folder, image layer, options, Predict / Cancel, progress in tiles."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.run_folder = FileEdit(label="run folder", mode="d", nullable=True, tooltip="the --out folder of `unetkit train`")
        self.package = FileEdit(label="or package", mode="r", filter="*.zip", nullable=True,
                                tooltip="a bioimage.io package that `unetkit export --format bioimageio` wrote")
        self.image = ComboBox(label="image", choices=self._image_layers)
        self.tta = CheckBox(text="test-time augmentation (8x slower)")
        self.add_probabilities = CheckBox(text="add probabilities")
        self.add_instances = CheckBox(text="add instances (watershed)")
        self.predict_button = PushButton(text="Predict")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="tiles", value=0, min=0, max=1)
        self.extend([self.run_folder, self.package, self.image, self.tta, self.add_probabilities, self.add_instances,
                     self.predict_button, self.cancel_button, self.progress])
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self.image.reset_choices)  # also when the widget is not docked (napari does it for docked ones)
        self.worker = None
        self._cancel = threading.Event()

    def _image_layers(self, _widget=None) -> list[tuple[str, napari.layers.Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def predict(self):
        """Start predicting the chosen layer; returns the worker (None when nothing started)."""
        layer = self.image.value
        if layer is None:
            show_error("no image layer to predict: open an image first")
            return None
        if self.worker is not None:
            return None  # one prediction at a time: the button is disabled meanwhile
        config = PredictConfig(tta=self.tta.value, instances=InstanceConfig() if self.add_instances.value else None)
        pixels = {"data": layer.data, "rgb": layer.rgb, "multiscale": layer.multiscale, "name": layer.name}
        self._cancel = threading.Event()
        worker = _predict_in_thread(self.package.value or self.run_folder.value, config, pixels, self._cancel)
        worker.yielded.connect(self._show_progress)
        worker.returned.connect(partial(self._add_layers, layer, self.add_probabilities.value))
        worker.finished.connect(self._finished)
        self.worker = worker
        self._set_running(True)
        worker.start()
        return worker

    def cancel(self):
        if self.worker is not None:
            self._cancel.set()
            show_info("prediction cancelled")

    def _set_running(self, running: bool):
        self.predict_button.enabled = not running
        self.cancel_button.enabled = running

    def _show_progress(self, progress: tuple[int, int]):
        done, total = progress
        self.progress.max = max(total, 1)
        self.progress.value = done

    def _finished(self):
        self.worker = None
        self._set_running(False)

    def _add_layers(self, layer, add_probabilities: bool, result: LayerPrediction | str | None):
        if isinstance(result, str):
            show_error(result)
            return
        if result is None:
            return  # cancelled
        scale, translate = tuple(layer.scale[-2:]), tuple(layer.translate[-2:])
        self._put("labels", f"{layer.name}_labels", result.labels, scale, translate)
        if add_probabilities:
            probs = result.probabilities
            probs = probs[0] if len(probs) == 1 else probs
            self._put("image", f"{layer.name}_probs", probs, scale, translate, colormap="magma", contrast_limits=(0.0, 1.0))
        if result.instances is not None:
            self._put("labels", f"{layer.name}_instances", result.instances, scale, translate)

    def _put(self, kind: str, name: str, data, scale, translate, **style):
        """Add a layer, or give an existing one of that name (an earlier prediction) the new data."""
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
            return
        extra = data.ndim - 2  # the class axis of probabilities: unit scale
        placement = {"scale": (1.0,) * extra + scale, "translate": (0.0,) * extra + translate}
        getattr(self.viewer, f"add_{kind}")(data, name=name, **placement, **style)
