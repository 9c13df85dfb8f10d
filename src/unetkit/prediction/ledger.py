"""The bookkeeping of an output folder: the lock of the job writing there, and a record per finished image.

A prediction job keeps its state in OUT/.unetkit-predict/:
- `lock`: the owner (host, pid, process start time), created exclusively. A
  second job into the same folder stops with a one-line error; a lock whose
  process is gone (on this host) is stale and taken over.
- `done/NAME.json`, written after all of image NAME's outputs: the settings
  key (weights hash and every prediction setting), the input file's identity
  and each output's (inode, size, mtime). A rerun skips NAME only while all
  of them still match: an output rewritten since (by other settings, or by a
  job killed midway) no longer matches, so NAME is predicted again.
- `parts/`: row parts of images split across ranks (`sharding`), named by
  the image's key, so a part of other settings or of a changed input is
  never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path

from ..errors import UserError
from ..io import write_text
from ..world import World, from_main
from .writers import Item

STATE_DIR = ".unetkit-predict"


def settings_key(settings: dict) -> str:
    """A hash of everything that decides the outputs' bytes."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def weights_hash(model) -> str:
    """sha256 of a model's state (names, dtypes, shapes and bytes of every tensor)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def input_identity(item: Item) -> dict:
    stat = item.path.stat()
    return {"path": str(item.path.resolve()), "page": item.page, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _stamp(path: Path) -> list[int] | None:
    """What changes when a file is rewritten (atomic writes rename a new inode over it)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


class Ledger:
    """The records of one output folder under one settings key."""

    def __init__(self, out_dir: Path, key: str):
        self.out_dir, self.key = Path(out_dir), key
        self.dir = self.out_dir / STATE_DIR

    def record_path(self, item: Item) -> Path:
        return self.dir / "done" / f"{item.name}.json"

    def is_done(self, item: Item) -> bool:
        """Whether `item`'s outputs are those of this key and of the input as it is now, untouched since."""
        try:
            record = json.loads(self.record_path(item).read_text())
        except (FileNotFoundError, ValueError):
            return False
        if record.get("key") != self.key or record.get("input") != input_identity(item):
            return False
        return all(_stamp(self.out_dir / name) == stamp for name, stamp in record.get("outputs", {}).items())

    def mark_done(self, item: Item, outputs: list[Path]) -> None:
        record = {"key": self.key, "input": input_identity(item), "outputs": {p.name: _stamp(p) for p in outputs}}
        write_text(self.record_path(item), json.dumps(record, indent=1) + "\n")

    def part_path(self, item: Item, rows: tuple[int, int]) -> Path:
        item_key = settings_key({"key": self.key, "input": input_identity(item)})[:16]
        return self.dir / "parts" / f"{item.name}.{item_key}.rows{rows[0]}-{rows[1]}.npy"

    def remove_stale(self, keep: set[Path]) -> None:
        """Delete what killed jobs left: temporary files (`.NAME.XXXX.tmp`) and parts not in `keep`.

        Only under the lock: no other job writes here, so no live write can be hit.
        """
        for path in [*self.out_dir.glob(".*.tmp"), *self.dir.glob("*/.*.tmp"), *self.dir.glob("parts/*.npy")]:
            if path not in keep:
                path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the lock


def _start_time(pid: int) -> str | None:
    """A process's start time (Linux: /proc/PID/stat field 22): a pid reused by another process differs in it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _parsed(text: str) -> dict:
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive(owner: dict) -> bool:
    """Whether a lock's owner may still run: always when on another host (it cannot be checked from here)."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return True
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return _start_time(owner["pid"]) == owner.get("started")


def _acquire(path: Path) -> None:
    """Take the lock; a UserError if a live job holds it."""
    owner = json.dumps(_owner())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # again after a stale lock was taken over, or the lock was released meanwhile
            if _create(path, owner):
                return
            try:
                held = path.read_text()
            except FileNotFoundError:
                continue
            holder = _parsed(held)
            if _alive(holder):
                raise UserError(f"another prediction job writes here (pid {holder.get('pid', '?')} on {holder.get('host', '?')})",
                                path=path.parent.parent, fix=f"wait for it, or use another --out; if no job runs, delete {path}")
            _take_over(path, held)
    except OSError as exc:
        raise UserError(f"cannot write the output folder's lock ({exc.strerror})", path=path, fix="choose a writable --out") from exc
    raise UserError("the output folder's lock keeps changing hands", path=path.parent.parent, fix="run one job at a time")


def _create(path: Path, text: str) -> bool:
    """Create `path` holding `text` unless it exists (False). Written aside and hard-linked, it is whole from the
    first instant; where the file system has no hard links, an exclusive create (empty for an instant: read as held)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            file.write(text)
        return True
    finally:
        os.unlink(tmp)


def _take_over(path: Path, stale: str) -> None:
    """Remove a stale lock, unless another job replaced it meanwhile (then put that one back)."""
    moved = path.with_name(f".{path.name}.{os.getpid()}.stale.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, moved)
        if moved.read_text() != stale:
            with contextlib.suppress(FileExistsError):
                os.link(moved, path)
        moved.unlink()


@contextlib.contextmanager
def output_lock(out_dir: str | Path, world: World | None = None):
    """Hold OUT's lock for a block: rank 0 takes it for the whole job; a held one is a UserError on every rank."""
    world = world or World()
    path = Path(out_dir) / STATE_DIR / "lock"
    from_main(lambda: _acquire(path), world)
    try:
        yield
    finally:
        if world.main:
            path.unlink(missing_ok=True)
            for folder in (path.parent / "parts", path.parent):  # leave no empty state folders behind
                with contextlib.suppress(OSError):
                    folder.rmdir()
