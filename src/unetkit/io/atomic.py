"""Atomic writes: a file appears under its final name whole, or not at all.

Every file unetkit writes (weights, configs, state, images, TIFF streams,
reports) goes through `atomic_path`: written to a temporary name beside the
final one, flushed to disk, then renamed over it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it over `path` only on success.

    A crash or error midway never leaves a partial file under the final name.
    The temporary file is fsynced before the rename, and the folder after it:
    without the first, a power cut after the rename can leave an empty file
    under the final name (ext4's delayed allocation); without the second the
    rename itself may be lost.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs get the usual rw-r--r--
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", path=path, fix="choose a writable output folder") from exc
    try:
        yield Path(tmp)
        _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", path=path, fix="free disk space or choose another folder") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def _fsync(path, flags: int) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
