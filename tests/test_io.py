import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit import UserError
from unetkit.io import count_pages, list_images, read_image, read_mask, write_image


@pytest.mark.parametrize(
    "array,suffix",
    [
        (np.arange(48, dtype=np.uint8).reshape(6, 8), ".png"),
        (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000, ".png"),
        (np.arange(144, dtype=np.uint8).reshape(3, 6, 8), ".png"),
        (np.random.default_rng(0).random((6, 8), dtype=np.float32), ".tif"),
        (np.random.default_rng(0).integers(0, 4000, (13, 6, 8)).astype(np.uint16), ".tif"),
    ],
)
def test_write_read_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"x{suffix}"
    write_image(path, array)
    back = read_image(path)
    expected = array if array.ndim == 3 else array[None]
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, expected)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_channels_last_multiband_tiff(tmp_path):
    hwc = np.random.default_rng(1).integers(0, 255, (10, 12, 5)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", hwc, photometric="minisblack", planarconfig="contig", metadata={"axes": "YXS"})
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), np.moveaxis(hwc, -1, 0))


def test_multipage_stack_reads_page_by_page(tmp_path):
    stack = np.random.default_rng(2).integers(0, 255, (4, 10, 12)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    assert count_pages(tmp_path / "s.tif") == 4
    np.testing.assert_array_equal(read_image(tmp_path / "s.tif", page=2)[0], stack[2])
    with pytest.raises(UserError, match="stack of 4"):
        read_image(tmp_path / "s.tif")


def test_jpeg_and_palette_and_rgba(tmp_path):
    Image.fromarray(np.full((5, 7, 3), 100, np.uint8)).save(tmp_path / "a.jpg")
    assert read_image(tmp_path / "a.jpg").shape == (3, 5, 7)
    Image.fromarray(np.full((5, 7, 4), 9, np.uint8)).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").shape == (3, 5, 7)
    pal = Image.frombytes("P", (2, 2), np.array([[0, 1], [2, 1]], np.uint8).tobytes())
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    pal.save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png"), [[0, 1], [2, 1]])


def test_truncated_file_is_a_one_line_user_error(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((64, 64), np.uint8) + 7)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as info:
        read_image(tmp_path / "bad.png")
    message = str(info.value)
    assert "bad.png" in message and "fix:" in message and "\n" not in message


def test_missing_and_empty(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(UserError, match="no images in folder"):
        list_images(tmp_path)
    with pytest.raises(UserError, match="folder not found"):
        list_images(tmp_path / "absent")


def test_float_png_is_refused_with_the_fix(tmp_path):
    with pytest.raises(UserError, match="write it as .tif"):
        write_image(tmp_path / "a.png", np.zeros((4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


def _patch_tiff_size(path, side):
    """Make a small TIFF declare side x side pixels (a decompression bomb)."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        offsets = [tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
        fmt = "<I" if tags["ImageWidth"].dtype == 4 else "<H"
        byteorder = tif.byteorder
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset : offset + struct.calcsize(fmt)] = struct.pack(byteorder + fmt[1], side)
    path.write_bytes(bytes(data))


def test_absurd_declared_sizes_are_refused_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr("unetkit.io.images.MAX_DECODED_BYTES", 2**20)  # the mechanism, at a small scale
    tifffile.imwrite(tmp_path / "bomb.tif", np.zeros((64, 64), np.uint8))
    _patch_tiff_size(tmp_path / "bomb.tif", 4000)  # a read would fail on the missing data instead
    with pytest.raises(UserError, match="GiB of pixels"):
        read_image(tmp_path / "bomb.tif")
    header = struct.pack(">IIBBBBB", 70000, 70000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 10)) + _chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(UserError, match="too large to decode"):
        read_image(tmp_path / "bomb.png")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_nan_and_inf_float_images_are_refused(tmp_path):
    image = np.zeros((8, 8), np.float32)
    image[2, 3] = np.nan
    write_image(tmp_path / "nan.tif", image)
    with pytest.raises(UserError, match="NaN or infinite"):
        read_image(tmp_path / "nan.tif")


def test_complex_pixels_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.ones((4, 4), np.complex64))
    with pytest.raises(UserError, match="unsupported pixel type complex64"):
        read_image(tmp_path / "c.tif")
