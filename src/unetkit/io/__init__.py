"""Files in and out: images, masks and stacks; sources read region by region; atomic writes."""

from .atomic import atomic_path, write_bytes, write_text
from .images import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    check_pixels,
    count_pages,
    image_size,
    is_palette,
    is_tiff,
    label_dtype,
    list_images,
    mask_values,
    read_image,
    read_mask,
    write_image,
)
from .sources import ArraySource, TiffSource, strided_sample

__all__ = [
    "atomic_path", "write_bytes", "write_text", "IMAGE_SUFFIXES", "TIFF_SUFFIXES", "check_pixels", "count_pages", "image_size", "is_palette", "is_tiff",
    "label_dtype", "list_images", "mask_values", "read_image", "read_mask", "write_image", "ArraySource", "TiffSource", "strided_sample",
]
