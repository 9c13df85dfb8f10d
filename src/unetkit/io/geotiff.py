"""GeoTIFF georeferencing, carried from an input TIFF to the TIFFs predicted from it.

Predicted images keep the input's pixel grid, so its georeferencing applies
to them unchanged and its tags are copied as they are: ModelPixelScale
(33550), ModelTiepoint (33922), ModelTransformation (34264), the GeoKey
directory with its double and ASCII parameters (34735-34737, the CRS) and RPC
coefficients (50844). Of GDAL's tags, GDAL_METADATA (42112) keeps its dataset
items only: its band items describe the input's bands (names, statistics,
colour rules), not classes or probabilities. GDAL_NODATA (42113) is not
copied: the input's no-data value is no class or probability (copied, it
would hide class 0 or probability 0).

Georeferencing held outside the TIFF (a world file, `.aux.xml`, `.prj`) is
not read; `sidecars` lists it so that the writers can say it is not carried.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from .images import _opening, is_tiff

GEO_TAGS = {
    33550: "ModelPixelScaleTag",
    33922: "ModelTiepointTag",
    34264: "ModelTransformationTag",
    34735: "GeoKeyDirectoryTag",
    34736: "GeoDoubleParamsTag",
    34737: "GeoAsciiParamsTag",
    50844: "RPCCoefficientTag",
}
GDAL_METADATA = 42112
ASCII = 2  # TIFF data type of text tags
SIDECAR_SUFFIXES = (".tfw", ".tifw", ".tiffw", ".pgw", ".pngw", ".jgw", ".jpgw", ".wld", ".prj")


def geo_tags(path: str | Path) -> tuple[tuple, ...]:
    """The georeferencing tags of a TIFF's first page as tifffile `extratags`; () for any other image.

    The first page is where GDAL and other GeoTIFF readers look, for stacks too.
    """
    if not is_tiff(path):
        return ()
    import tifffile

    with _opening(path), tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        extratags = [(tag.code, tag.dtype, tag.count, _values(tag.value), True) for tag in tags if tag.code in GEO_TAGS]
        if extratags and GDAL_METADATA in tags:
            dataset_items = _dataset_metadata(tags[GDAL_METADATA].value)
            if dataset_items:
                extratags.append((GDAL_METADATA, ASCII, 0, dataset_items, True))
    return tuple(extratags)


def _values(value):
    """A tag value as tifffile's writer takes it: text as text, numbers as a sequence."""
    if isinstance(value, (str, bytes)):
        return value
    return tuple(value) if hasattr(value, "__len__") else (value,)


def _dataset_metadata(text: str) -> str | None:
    """GDAL_METADATA without its band items (`sample=`), or None when none are left (or it cannot be parsed)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    for item in [item for item in root if "sample" in item.attrib]:
        root.remove(item)
    return ElementTree.tostring(root, encoding="unicode") if len(root) else None


def sidecars(path: str | Path) -> list[Path]:
    """Files beside an image that georeference it from outside (world file, .prj, GDAL's .aux.xml)."""
    path = Path(path)
    candidates = [path.with_suffix(suffix) for suffix in SIDECAR_SUFFIXES] + [path.with_name(path.name + ".aux.xml")]
    return [candidate for candidate in candidates if candidate.is_file()]
