"""`--out-format zarr`: an image's labels and probabilities as one OME-Zarr store (`io.zarr_sink`), band by band.

Every image is streamed, whatever its size: labels are class ids (the
training masks' colours are the label image's `colors`), probabilities
float32 (K, y, x). An OME-Zarr input's pixel size, units and offset carry
over. Instance labels need a whole image in memory and are not written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import label_dtype, ome_zarr_writer, strided_sample, write_image
from ..report import class_colours, overlay, thumbnail_step
from .georef import carried_geo_tags, note
from .predictor import Predictor, labels_from


def write_zarr(predictor: Predictor, item, source, out_dir: Path) -> list[Path]:
    """Predict `source` into OUT/NAME.ome.zarr (and NAME_overlay.png, downsampled); returns the paths written."""
    from tqdm import tqdm

    config, k = predictor.config, predictor.n_classes
    _, height, width = source.shape
    if config.instances:
        note(f"{item.path}: zarr output holds labels and probabilities; instance labels need the whole image and are skipped")
    carried_geo_tags(item.path, into_zarr=True)
    stats = predictor.stats(source)
    step, thumbnail = thumbnail_step((height, width)), []
    path = out_dir / f"{item.name}.ome.zarr"
    data = predictor.data_config
    colours = data.colours if data.mask_kind == "colours" and data.colours else class_colours(k)
    writer = ome_zarr_writer(path, height, width, name=item.name, labels_dtype=label_dtype(max(k - 1, 1)), colours=colours,
                             probs_channels=k if config.probabilities else 0, spatial=getattr(source, "spatial", None))
    with tqdm(total=predictor.grid(height, width).count, unit="tile", desc=item.name, leave=False, disable=None) as progress, writer as write:
        for top, band in predictor.bands(source, stats, progress):
            labels = labels_from(band)
            thumbnail.append(labels[(-top) % step :: step, ::step])
            write(labels, band if config.probabilities else None)
    written = [path]
    if config.overlay:
        written.append(out_dir / f"{item.name}_overlay.png")
        write_image(written[-1], overlay(strided_sample(source, step), np.concatenate(thumbnail), k))
    return written
