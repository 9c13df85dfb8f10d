"""Fuzzing harness shared by tests/test_fuzz.py (bounded, in CI) and benchmarks/fuzz.py (long runs).

A case takes a valid seed file (PNG, JPEG, TIFF of many kinds), damages its
bytes (truncation, flipped bytes, inserted junk, a zeroed header, nothing at
all) and feeds it to a reader or the CLI. The only acceptable outcomes are a
valid result or a one-line `UserError`; anything else is a failure, and a
case that runs past its time limit is a hang.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import signal
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from unetkit import UserError
from unetkit.io import read_image, read_mask


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _tiff(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **kwargs)
    return buffer.getvalue()


def seeds() -> dict[str, tuple[str, bytes]]:
    """name -> (suffix, bytes) of valid files of the kinds users bring."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    mask = np.where(grey > 128, 255, 0).astype(np.uint8)
    floats = rng.random((32, 32), dtype=np.float32)
    floats[3, 4], floats[5, 6] = np.nan, np.inf
    return {
        "png8": (".png", _png(grey)),
        "png16": (".png", _png(grey.astype(np.uint16) * 257)),
        "png_rgb": (".png", _png(np.stack([grey] * 3, -1))),
        "png_mask": (".png", _png(mask)),
        "jpeg": (".jpg", _jpeg(grey)),
        "tiff8": (".tif", _tiff(grey)),
        "tiff_zlib": (".tif", _tiff(grey, compression="zlib")),
        "tiff_float_nan": (".tif", _tiff(floats)),
        "tiff_stack": (".tif", _tiff(np.stack([grey] * 3), photometric="minisblack")),
        "tiff_multiband": (".tif", _tiff(np.stack([grey] * 5), metadata={"axes": "CYX"})),
        "tiff_tiled": (".tif", _tiff(np.zeros((64, 64), np.uint8), tile=(16, 16))),
        "tiff_complex": (".tif", _tiff(floats.astype(np.complex64))),
        "tiff_int32_rgb": (".tif", _tiff(np.stack([grey.astype(np.int32)] * 3, -1), photometric="rgb")),
        "empty": (".png", b""),
    }


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """A damaged copy of `data`: one or a few of the ways files break."""
    data = bytearray(data)
    kind = rng.integers(6)
    if kind == 0 and data:  # truncated download
        return bytes(data[: rng.integers(len(data))])
    if kind == 1 and data:  # flipped bytes, mostly in the header where they hurt
        for _ in range(rng.integers(1, 8)):
            limit = len(data) if rng.random() < 0.3 else min(len(data), 64)
            data[rng.integers(limit)] = rng.integers(256)
        return bytes(data)
    if kind == 2:  # junk inserted
        at = rng.integers(len(data) + 1)
        return bytes(data[:at]) + rng.bytes(int(rng.integers(1, 64))) + bytes(data[at:])
    if kind == 3 and data:  # a zeroed block
        at = int(rng.integers(len(data)))
        end = min(len(data), at + int(rng.integers(1, 32)))
        data[at:end] = bytes(end - at)
        return bytes(data)
    if kind == 4:
        return bytes(data)  # intact: valid files must stay readable
    return b""  # empty file


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    """Raise Hang if the body runs longer than `seconds` (SIGALRM: main thread, Unix)."""

    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_outcome(path) -> str:
    """'ok' (a valid array) or 'user_error' (one line); any other exception propagates."""
    outcomes = []
    for reader in (read_image, read_mask):
        try:
            array = reader(path)
        except UserError as exc:
            if "\n" in str(exc) or str(path) not in str(exc):
                raise AssertionError(f"error is not one line naming the file: {exc!r}") from None
            outcomes.append("user_error")
            continue
        if array.size == 0 or array.ndim not in (2, 3):
            raise AssertionError(f"{reader.__name__} returned an empty or odd array {array.shape}")
        outcomes.append("ok")
    return "ok" if outcomes == ["ok", "ok"] else "user_error"


def fingerprint(*folders) -> dict[str, str]:
    """Path -> sha256 of every file under `folders`: what a case must leave exactly as it found."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def changes(before: dict[str, str], after: dict[str, str]) -> tuple[int, int]:
    """(files modified, files lost) between two fingerprints; new files are not counted."""
    modified = sum(1 for path, digest in before.items() if path in after and after[path] != digest)
    return modified, sum(1 for path in before if path not in after)


def damage_run(run, rng: np.random.Generator) -> str:
    """Damage one file of a run folder (config, weights or training state); return its name."""
    names = sorted(p.name for p in run.iterdir())
    name = names[int(rng.integers(len(names)))]
    (run / name).write_bytes(mutate((run / name).read_bytes(), rng))
    return name


def load_run_outcome(run) -> str:
    """Loading a damaged run folder: 'ok' or 'user_error' (one line naming a file of the run)."""
    from unetkit.checkpoint import load_run, load_train_state

    try:
        load_run(run, "last")
        load_train_state(run)
    except UserError as exc:
        if "\n" in str(exc) or str(run) not in str(exc):
            raise AssertionError(f"error is not one line naming the run: {exc!r}") from None
        return "user_error"
    return "ok"
