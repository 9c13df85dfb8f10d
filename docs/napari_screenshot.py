"""Take docs/napari.png: the sample EM section predicted by the unetkit widget in a napari viewer.

    xvfb-run -a python docs/napari_screenshot.py RUN [docs/napari.png]

RUN is a run folder (e.g. demo_out/run after `make demo`). Needs `unetkit[napari]`
and a display (xvfb-run gives a virtual one).
"""

import sys
import time

import napari
from qtpy.QtWidgets import QApplication

from unetkit.napari.samples import em_section
from unetkit.napari.widget import PredictWidget


def main(run: str, out: str = "docs/napari.png") -> None:
    viewer = napari.Viewer(title="unetkit in napari")
    viewer.window.resize(1100, 640)
    (image, meta, _), _ = em_section()
    viewer.add_image(image, **meta)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net prediction (unetkit)", area="right")
    widget.run_folder.value = run
    widget.add_probabilities.value = True
    widget.predict()
    while widget.worker is not None:
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.layers[f"{meta['name']}_probs"].visible = False  # added, shown in the layer list, hidden on the canvas
    viewer.layers[f"{meta['name']}_labels"].opacity = 0.5
    viewer.layers.selection.active = viewer.layers[meta["name"]]
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(out, canvas_only=False, flash=False)
    print(out)
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
