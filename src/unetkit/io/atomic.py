"""Atomic writes: a file appears under its final name whole, or not at all.

Every file unetkit writes (weights, configs, state, images, TIFF streams,
reports) goes through `atomic_path` (zarr stores, which are folders, through
`atomic_dir`): written to a temporary name beside the
final one, flushed to disk, then renamed over it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary folder beside `path`; on success its files are fsynced and it is renamed to `path`.

    For stores that are folders (zarr). A store already under that name is
    moved aside first and removed after, so the name holds the old store,
    briefly nothing, then the new one: never a part of either.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; outputs get the usual rwxr-xr-x
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", path=path, fix="choose a writable output folder") from exc
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                _fsync(os.path.join(folder, name), os.O_RDONLY)
            _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.replace(old, path)  # put the old store back
            raise
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", path=path, fix="free disk space or choose another folder") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)


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
