"""The napari plugin (`pip install unetkit[napari]`): a prediction widget, a reader for predict's files, sample data.

The npe2 manifest `napari.yaml` names the contributions; napari imports them
lazily. Only `widget.py` imports napari and Qt, so `import unetkit` never
needs them; `predict.py`, `reader.py` and `samples.py` are plain numpy.
"""
