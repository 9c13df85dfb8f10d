"""The georeferencing an image's outputs carry: its GeoTIFF tags, and a note for whatever they cannot carry."""

from __future__ import annotations

import sys
from pathlib import Path

from ..io import geo_tags, sidecars


def carried_geo_tags(path: Path, into_zarr: bool = False) -> tuple[tuple, ...]:
    """The input's GeoTIFF tags for its TIFF outputs (`extratags`); says on stderr what is not carried.

    Not carried: georeferencing in files beside the input (world file, .prj,
    .aux.xml), and GeoTIFF tags into a zarr store (OME-Zarr has no place for
    a map projection). The overlay PNG never carries it.
    """
    tags, beside = geo_tags(path), sidecars(path)
    if into_zarr and tags:
        note(f"{path}: its georeferencing (GeoTIFF tags) is not carried into zarr output, which holds no map projection "
             "-- fix: predict with --out-format tiff to keep it")
    if beside:
        note(f"{path}: its georeferencing in {', '.join(side.name for side in beside)} is not carried into the outputs "
             "-- fix: copy it beside them (they share the input's pixel grid)")
    return () if into_zarr else tags


def note(message: str) -> None:
    """One line on stderr that does not break the progress bars."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
