"""Files in and out: images, masks and stacks; sources read region by region (TIFF, zarr); OME-Zarr outputs; GeoTIFF tags; atomic writes."""

from .atomic import atomic_dir, atomic_path, write_bytes, write_text
from .geotiff import geo_tags, sidecars
from .images import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    check_pixels,
    count_pages,
    image_size,
    image_stem,
    is_palette,
    is_tiff,
    is_zarr,
    label_dtype,
    list_images,
    mask_values,
    read_image,
    read_mask,
    write_image,
)
from .sources import ArraySource, TiffSource, open_source, strided_sample
from .zarr_sink import ome_zarr_writer, pyramid_shapes
from .zarr_source import ZarrSource

__all__ = [
    "atomic_dir", "atomic_path", "write_bytes", "write_text", "IMAGE_SUFFIXES", "TIFF_SUFFIXES", "check_pixels", "count_pages", "image_size", "image_stem", "is_palette", "is_tiff",
    "label_dtype", "list_images", "mask_values", "read_image", "read_mask", "write_image", "ArraySource", "TiffSource", "open_source", "strided_sample",
    "geo_tags", "sidecars", "ome_zarr_writer", "pyramid_shapes", "ZarrSource", "is_zarr",
]
