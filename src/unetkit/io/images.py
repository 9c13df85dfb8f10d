"""Read and write images, masks and stacks; every write is atomic (see `atomic`).

Images come back channels-first, `(C, H, W)`, in their stored dtype. PNG and
JPEG go through Pillow, TIFF through tifffile. A multi-page TIFF is a stack of
images, one per page, unless its axes name a channel axis (`C` or `S`), as
tifffile writes with `metadata={"axes": "CYX"}` or for samples per pixel.
A zarr store (a folder) is one image, read through `zarr_source.ZarrSource`.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from ..errors import UserError, first_line
from .atomic import atomic_path

# Largest image decoded whole (bytes). Bigger TIFFs are predicted by streaming
# (io.sources.TiffSource); a file declaring more is refused before any allocation.
MAX_DECODED_BYTES = 4 * 2**30
MAX_PNG_PIXELS = 2**28  # Pillow's decompression-bomb limit, set explicitly (its default is 89 Mpx)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def is_tiff(path: str | Path) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def is_zarr(path: str | Path) -> bool:
    """A folder that is a zarr store (named `.zarr`, or holding zarr metadata)."""
    path = Path(path)
    return path.is_dir() and (path.suffix.lower() == ".zarr" or any((path / marker).is_file() for marker in ZARR_MARKERS))


def image_stem(path: str | Path) -> str:
    """The name an image goes by (its mask's, its outputs'): `scene` for scene.png, scene.zarr and scene.ome.zarr."""
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        return re.sub(r"(\.ome)?\.zarr$", "", path.name, flags=re.IGNORECASE)
    return path.name if is_zarr(path) else path.stem  # a store without the suffix: its whole name


def list_images(folder: str | Path, stores: bool = False) -> list[Path]:
    """Image files in `folder` (not recursive), and with `stores` its zarr stores, sorted by name; hidden ones skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("folder not found", path=folder, fix="pass an existing folder of images")
    files = sorted(p for p in folder.iterdir()
                   if (p.suffix.lower() in IMAGE_SUFFIXES or (stores and is_zarr(p))) and not p.name.startswith("."))
    if not files:
        kinds = "/".join(s[1:] for s in IMAGE_SUFFIXES) + (" files or zarr stores" if stores else " files")
        raise UserError("no images in folder", path=folder, fix=f"put {kinds} there")
    return files


def count_pages(path: str | Path) -> int:
    """Number of images in a file: pages of a TIFF stack, else 1."""
    if not is_tiff(path):
        return 1
    with _opening(path):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if _has_channel_axis(series.axes) or len(series.shape) == 2:
                return 1
            return int(series.shape[0])


def image_size(path: str | Path, page: int | None = None) -> tuple[int, int]:
    """(height, width) of an image from its header, without decoding the pixels."""
    if is_zarr(path):
        from .zarr_source import ZarrSource

        return ZarrSource(path).shape[1:]
    if is_tiff(path):
        from .sources import TiffSource

        source = TiffSource(path, page)
        source.close()
        return source.shape[1:]
    with _opening(path):
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = MAX_PNG_PIXELS
        with Image.open(path) as img:
            return img.height, img.width


def read_image(path: str | Path, page: int | None = None) -> np.ndarray:
    """An image as a `(C, H, W)` array in its stored dtype. `page` picks one image of a stack."""
    if is_zarr(path):
        return _read_store(path, page)
    array, axes = _read_raw(path)
    image = _to_chw(array, axes, path, page)
    check_pixels(image, path)
    return image


def check_pixels(pixels: np.ndarray, path) -> None:
    """Refuse pixels no model can use: complex or other odd types, NaN or infinite floats."""
    if pixels.dtype.kind not in "biuf":  # bool, integers, floats; not complex, strings, records
        raise UserError(f"unsupported pixel type {pixels.dtype}", path=path, fix="save integer or float pixels")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise UserError("image holds NaN or infinite values", path=path, fix="replace them (e.g. by 0) and save again")


def is_palette(path: str | Path) -> bool:
    """A palette image (PNG/GIF mode P), from its header: its pixels are indices into a colour table."""
    if is_tiff(path) or is_zarr(path):
        return False
    with _opening(path):
        from PIL import Image

        with Image.open(path) as img:
            return img.mode in ("P", "PA")


def read_mask(path: str | Path, page: int | None = None, *, palette_colours: bool = False) -> np.ndarray:
    """A mask's raw values: `(H, W)` integers, or `(H, W, 3)` uint8 for a colour-coded mask (see `data.masks`).

    An RGB-saved grey mask (all channels equal) is read as grey. A palette PNG
    is read as its indices, or as its colours with `palette_colours` (a set of
    colour-coded masks where some tool saved a few with a palette).
    """
    if is_zarr(path):
        return mask_values(_read_store(path, page, mask=True), path)
    if palette_colours and is_palette(path):
        array, axes = _read_raw(path, palette_colours=True)
        image = _to_chw(array, axes, path, page)
    else:
        image = read_image(path, page)
    return mask_values(image, path)


def mask_values(image: np.ndarray, path, colours: bool | None = None) -> np.ndarray:
    """A mask's raw values from its decoded `(C, H, W)` pixels: grey `(H, W)` integers, or `(H, W, 3)` uint8 colours.

    `colours`: None decides from these pixels (grey where all channels are
    equal); a window of a mask read in parts passes the answer for the whole file.
    """
    if colours is None:
        colours = image.shape[0] != 1 and not all(np.array_equal(image[0], c) for c in image[1:])
    if colours:
        if image.shape[0] not in (3, 4) or image.dtype != np.uint8:
            raise UserError(f"mask has {image.shape[0]} different {image.dtype} channels", path=path,
                            fix="save masks as one-channel label images or 8-bit RGB colours")
        return np.ascontiguousarray(image[:3].transpose(1, 2, 0))  # RGBA: the alpha is not a class
    mask = image[0]
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if np.issubdtype(mask.dtype, np.floating):
        if not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask)):
            raise UserError("mask holds non-integer values", path=path, fix="save masks as integer class ids")
        return mask.astype(np.int64)
    return mask


def _read_raw(path: str | Path, palette_colours: bool = False) -> tuple[np.ndarray, str]:
    path = Path(path)
    with _opening(path):
        if is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                _check_size(path, int(np.prod(series.shape)) * series.dtype.itemsize)
                return series.asarray(), series.axes
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = MAX_PNG_PIXELS
        with Image.open(path) as img:  # raises DecompressionBombError past 2x the limit
            _check_size(path, img.width * img.height * len(img.getbands()) * 2)
            img.load()
            if img.mode == "P" and not palette_colours:  # palette masks: the indices are the labels
                return np.asarray(img), "YX"
            if img.mode in ("P", "PA"):
                img = img.convert("RGB")
            if img.mode in ("LA", "RGBA", "PA"):
                img = img.convert("RGB") if img.mode != "LA" else img.convert("L")
            if img.mode in ("CMYK", "YCbCr", "HSV"):
                img = img.convert("RGB")
            array = np.asarray(img)
            return array, "YX" if array.ndim == 2 else "YXS"


def _read_store(path: str | Path, page: int | None, mask: bool = False) -> np.ndarray:
    """A zarr store's image (or mask: `ZarrSource`'s checks) read whole, its size checked first."""
    from .zarr_source import ZarrSource

    if page not in (None, 0):
        raise UserError(f"page {page} requested but a zarr store holds one image", path=path, fix="drop the page index")
    source = ZarrSource(path, mask=mask)
    _check_size(path, int(np.prod(source.shape)) * source.dtype.itemsize)
    return source.read(0, source.shape[1], 0, source.shape[2])


def _check_size(path, nbytes: int) -> None:
    """Refuse an image whose declared size would not fit, before allocating it."""
    if nbytes > MAX_DECODED_BYTES:
        raise UserError(
            f"image declares {nbytes / 2**30:.1f} GiB of pixels, more than the {MAX_DECODED_BYTES / 2**30:.0f} GiB "
            "read whole",
            path=path,
            fix="predict it as a tiled TIFF (streamed), or cut it into smaller images",
        )


@contextlib.contextmanager
def _opening(path: str | Path):
    """Turn every way a file read can fail into a one-line UserError naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError("file not found", path=path, fix="check the path")
    try:
        yield
    except UserError:
        raise
    except MemoryError as exc:
        raise UserError("image too large to hold in memory", path=path, fix="use a tiled TIFF and streaming prediction") from exc
    except Exception as exc:  # noqa: BLE001 - a decoder's error means an unreadable file
        if type(exc).__name__ == "DecompressionBombError":  # Pillow's refusal of an absurd declared size
            raise UserError(f"image too large to decode ({exc})", path=path, fix="cut it into smaller images") from exc
        reason = first_line(exc)
        raise UserError(
            f"cannot read image ({reason})", path=path, fix="re-export it as PNG or TIFF; it may be truncated or corrupt"
        ) from exc


def _has_channel_axis(axes: str) -> bool:
    return "C" in axes or "S" in axes


def _to_chw(array: np.ndarray, axes: str, path, page: int | None) -> np.ndarray:
    """Normalise a decoded array to (C, H, W), picking `page` from a stack."""
    axes = axes.upper()
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and _has_channel_axis(axes):
        channel = axes.index("S") if "S" in axes else axes.index("C")
        array = np.moveaxis(array, channel, 0)
    elif array.ndim == 3:  # a stack of 2-D pages
        if page is None:
            if array.shape[0] != 1:
                raise UserError(
                    f"file is a stack of {array.shape[0]} images", path=path, fix="read it page by page (page=...)"
                )
            page = 0
        if not 0 <= page < array.shape[0]:
            raise UserError(f"page {page} not in stack of {array.shape[0]}", path=path, fix="use a valid page index")
        return array[page][None]
    elif array.ndim == 4 and _has_channel_axis(axes):  # stack of multi-channel pages
        channel = axes.index("S") if "S" in axes else axes.index("C")
        array = np.moveaxis(array, channel, -1)
        page = 0 if page is None else page
        if not 0 <= page < array.shape[0]:
            raise UserError(f"page {page} not in stack of {array.shape[0]}", path=path, fix="use a valid page index")
        return np.moveaxis(array[page], -1, 0)
    else:
        raise UserError(f"unsupported image shape {array.shape} (axes {axes})", path=path, fix="save 2-D images")
    if page not in (None, 0):
        raise UserError(f"page {page} requested but file holds one image", path=path, fix="drop the page index")
    if 0 in array.shape:
        raise UserError(f"image is empty (shape {array.shape})", path=path, fix="re-export the image")
    return array


def write_image(path: str | Path, image: np.ndarray, *, compress: bool = True, extratags=()) -> None:
    """Write an `(H, W)` or `(C, H, W)` array atomically; the suffix picks PNG, JPEG or TIFF.

    Arrays PNG cannot hold (float, > 4 channels, huge) must go to TIFF.
    `extratags`: tifffile's extra tags (e.g. `geotiff.geo_tags`), TIFF only.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise UserError(f"unknown image suffix {suffix!r}", path=path, fix=f"use one of {', '.join(IMAGE_SUFFIXES)}")
    if extratags and suffix not in TIFF_SUFFIXES:
        raise ValueError(f"{path}: only a TIFF holds extra tags")
    hwc = image if image.ndim == 2 else np.moveaxis(image, 0, -1)
    with atomic_path(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            axes = "YX" if image.ndim == 2 else "CYX"
            tifffile.imwrite(tmp, image, metadata={"axes": axes}, compression="zlib" if compress else None, extratags=extratags)
        else:
            from PIL import Image

            if image.ndim == 3 and image.shape[0] == 1:
                hwc = hwc[..., 0]
            if hwc.dtype == bool:
                hwc = hwc.astype(np.uint8) * 255
            if hwc.dtype not in (np.uint8, np.uint16) or (hwc.dtype == np.uint16 and hwc.ndim == 3):
                raise UserError(
                    f"{hwc.dtype} {'colour ' if hwc.ndim == 3 else ''}data does not fit a {suffix} file",
                    path=path,
                    fix="write it as .tif",
                )
            fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[suffix]
            Image.fromarray(hwc).save(tmp, format=fmt)


def label_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned integer type that holds label values up to `max_value` (uint8, uint16 or uint32)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label value {max_value} does not fit 32 bits")
