"""Crash harness shared by tests/test_crash.py (short, in CI) and benchmarks/crash.py (long runs).

Starts `unetkit train` / `unetkit predict` as a child process and SIGKILLs it
on a progress signal, never at a clock time: right after the first checkpoint
it writes, while a temporary file of an atomic write is in its folder, at a
chosen step, after N outputs. The folder is polled every millisecond; when the
signal shows, the child is frozen (SIGSTOP) and the signal read again while
nothing moves. Only if it still holds is the child SIGKILLed, so each kill
lands where it is reported to land; otherwise it runs on (SIGCONT).

After each kill the harness checks what a crash must never do: leave a file
under its final name that does not load, or lose a finished output. Training
is then resumed with `--resume` until it completes; it must end with the
weights of an uninterrupted run (deterministic mode, CPU).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unetkit.checkpoint import load_run, load_train_state
from unetkit.io import read_image
from unetkit.synthetic import write_dataset

STEPS = 20  # 2 epochs of 10 steps on the 5 training images of make_data
# --save-every 1: a checkpoint (two atomic writes) every step, so writes are frequent enough to be caught.
TRAIN_FLAGS = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--save-every", "1",
               "--deterministic", "--quiet", "--val-names", "05"]
# One thread per child: on a small shared machine, threads that spin waiting for each other make every
# step several times slower. The uninterrupted and the crashed runs get the same, so their bits can match.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
POLL_S = 0.001
TEMP_NAME = re.compile(r"\.(?P<final>.+)\.[^.]+\.tmp")  # unetkit.io.atomic_path: .{name}.XXXX.tmp beside name
EXITED = "process had already exited"


@dataclasses.dataclass(frozen=True)
class Kill:
    """Where a kill was meant to land and where it landed.

    `detail`: the step, file or outputs seen; `stops`: times the child was frozen to check (the last one killed).
    """

    intended: str
    landed: str
    detail: str = ""
    stops: int = 0

    @property
    def hit(self) -> bool:
        return self.landed == self.intended


def make_data(folder: Path, count: int = 6, side: int = 48) -> Path:
    return write_dataset(folder, count=count, shape=(side, side), seed=1)


def train_command(data: Path, run: Path, resume: bool, steps: int = STEPS) -> list[str]:
    command = [sys.executable, "-m", "unetkit", "train", "--images", str(data / "images"), "--masks", str(data / "labels"),
               "--out", str(run), "--steps", str(steps), *TRAIN_FLAGS]
    return command + ["--resume"] if resume else command


def predict_command(run: Path, images: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "unetkit", "predict", str(run), str(images), "--out", str(out)]


# --------------------------------------------------------------------------- progress signals


def checkpoint_step(run: Path) -> int:
    state = load_train_state(run)
    return 0 if state is None else state["loop"]["step"]


def _identity(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None if absent: it changes with every atomic replace."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


class AfterFirstCheckpoint:
    """Kill right after the first checkpoint the child writes (its train_state.pt replaced)."""

    intended = "after the first checkpoint"

    def start(self, run: Path) -> None:
        self.run, self.before = run, _identity(run / "train_state.pt")
        self.first = checkpoint_step(run) + 1  # --save-every 1

    def ready(self, pid: int) -> bool:
        return _identity(self.run / "train_state.pt") != self.before  # a stat: no load while the child runs

    def landed(self, pid: int) -> tuple[str, str] | None:
        if not self.ready(pid):
            return None
        step = checkpoint_step(self.run)
        return ("after the first checkpoint" if step == self.first else "after a later checkpoint"), f"step {step}"


class AtStep:
    """Kill once the checkpoint in the run folder reaches `after` steps past where the child started.

    The child is frozen at each new checkpoint while its step is read, so it cannot run past the target.
    """

    intended = "at the chosen step"

    def __init__(self, after: int):
        self.after = after

    def start(self, run: Path) -> None:
        self.run, self.seen = run, _identity(run / "train_state.pt")
        self.target = checkpoint_step(run) + self.after

    def ready(self, pid: int) -> bool:
        return _identity(self.run / "train_state.pt") != self.seen

    def landed(self, pid: int) -> tuple[str, str] | None:
        self.seen, step = _identity(self.run / "train_state.pt"), checkpoint_step(self.run)
        if step < self.target:
            return None
        return ("at the chosen step" if step == self.target else "past the chosen step"), f"step {step}"


class MidWrite:
    """Kill while a file of the folder is being written: a temporary file of an atomic write exists.

    `of`: glob patterns of the final names to catch. A file under its final name
    held open for writing by the child is a write in place (no temporary file):
    reported as such, since a kill there can tear it.
    """

    intended = "mid-write"

    def __init__(self, of: tuple[str, ...] = ("*",)):
        self.of = of

    def start(self, folder: Path) -> None:
        self.folder = folder.resolve()  # as /proc names it
        self.stale = set(self._temporaries())  # left by an earlier kill: not this child's write

    def _temporaries(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return [entry.name for entry in os.scandir(self.folder) if TEMP_NAME.fullmatch(entry.name)]

    def ready(self, pid: int) -> bool:
        return self.landed(pid) is not None

    def _wanted(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.of)

    def landed(self, pid: int) -> tuple[str, str] | None:
        writing = [TEMP_NAME.fullmatch(name)["final"] for name in self._temporaries() if name not in self.stale]
        if any(self._wanted(name) for name in writing):
            return "mid-write", next(name for name in writing if self._wanted(name))
        in_place = [path.name for path in open_for_writing(pid, self.folder) if not TEMP_NAME.fullmatch(path.name)]
        return ("mid-write under the final name", in_place[0]) if in_place else None


def open_for_writing(pid: int, folder: Path) -> list[Path]:
    """Files of `folder` that process `pid` holds open for writing (Linux /proc)."""
    files, fds = [], Path(f"/proc/{pid}/fd")
    try:
        for fd in os.listdir(fds):
            target = Path(os.readlink(fds / fd))
            if target.parent == folder and _flags(pid, fd) & (os.O_WRONLY | os.O_RDWR):
                files.append(target)
    except (FileNotFoundError, ProcessLookupError):
        pass  # the process or that descriptor is gone
    return files


def _flags(pid: int, fd: str) -> int:
    for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8)
    return 0


class AfterOutputs:
    """Kill once `count` outputs (NAME_labels.png) have been written by the child."""

    intended = "after the chosen outputs"

    def __init__(self, count: int):
        self.count = count

    def start(self, out: Path) -> None:
        self.out = out
        self.before = self._outputs()

    def _outputs(self) -> dict[str, tuple[int, int] | None]:
        return {path.name: _identity(path) for path in self.out.glob("*_labels.png")}

    def ready(self, pid: int) -> bool:
        return self.landed(pid) is not None

    def landed(self, pid: int) -> tuple[str, str] | None:
        written = sum(self.before.get(name) != identity for name, identity in self._outputs().items())
        if written < self.count:
            return None
        return ("after the chosen outputs" if written == self.count else "past the chosen outputs"), f"{written} outputs"


# --------------------------------------------------------------------------- killing


def kill_when(command: list[str], folder: Path, trigger, timeout: float = 600) -> Kill:
    """Run `command`; SIGKILL it where `trigger` says, checked while the child is frozen; say where it landed."""
    trigger.start(folder)
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=CHILD_ENV)
        deadline, stops = time.monotonic() + timeout, 0
        try:
            while child.poll() is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{' '.join(command[2:4])}: no '{trigger.intended}' within {timeout} s")
                if trigger.ready(child.pid) and _freeze(child):
                    stops += 1
                    where = trigger.landed(child.pid)  # read while frozen: the moment may have passed before the stop
                    if where is not None:
                        child.kill()
                        return Kill(trigger.intended, *where, stops=stops)
                    os.kill(child.pid, signal.SIGCONT)
                time.sleep(POLL_S)
        finally:
            if child.poll() is None:  # killed above, or an error (maybe while frozen): never leave it behind
                child.kill()
            child.wait()
        if child.returncode != 0:
            stderr.seek(0)
            raise AssertionError(f"{' '.join(command[2:4])} failed: {stderr.read().decode()[-1500:]}")
    return Kill(trigger.intended, EXITED, stops=stops)


def _freeze(child: subprocess.Popen) -> bool:
    """SIGSTOP the child and wait until it is stopped; False (and its exit code recorded) if it ended first."""
    os.kill(child.pid, signal.SIGSTOP)
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        return True
    child.returncode = os.waitstatus_to_exitcode(status)
    return False


class Never:
    intended = "never"

    def start(self, folder: Path) -> None:
        pass

    def ready(self, pid: int) -> bool:
        return False


def run_to_end(command: list[str], folder: Path) -> None:
    kill_when(command, folder, Never(), timeout=3600)


def straight_run(folder: Path, steps: int = STEPS) -> tuple[Path, Path]:
    """Fresh data under `folder` and an uninterrupted run of it: the reference a crashed run must equal."""
    data = make_data(folder / "data")
    run_to_end(train_command(data, folder / "straight", resume=False, steps=steps), folder / "straight")
    return data, folder / "straight"


# --------------------------------------------------------------------------- checks


def check_run_folder(run: Path) -> None:
    """Every file under a final name loads: weights, config, state, curves, metrics."""
    if not (run / "config.json").exists():
        assert not (run / "model.safetensors").exists(), "weights without a config"
        return
    json.loads((run / "config.json").read_text())
    if (run / "model.safetensors").exists():
        load_run(run, "last")
    if (run / "best.safetensors").exists():
        load_run(run, "best")
    load_train_state(run)
    if (run / "curves.png").exists():
        read_image(run / "curves.png")
    if (run / "metrics.csv").exists():
        lines = (run / "metrics.csv").read_text().splitlines()
        assert all(line.count(",") == lines[0].count(",") for line in lines), "torn metrics.csv"


def check_predictions(out: Path) -> None:
    """Every output under a final name is a whole image or JSON."""
    if not out.exists():
        return
    for path in out.iterdir():
        if path.name.startswith("."):
            continue  # a temporary file of the killed process: never a final name
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            read_image(path)


def finished(run: Path, steps: int) -> bool:
    return (run / "train_state.pt").exists() and checkpoint_step(run) >= steps


def crash_training(data: Path, run: Path, triggers: list, steps: int = STEPS) -> list[Kill]:
    """One child per trigger, each killed where it says (resuming from the second on); check the folder after
    each kill; then resume until the run ends. Returns where each kill landed."""
    kills = []
    for trigger in triggers:
        kills.append(kill_when(train_command(data, run, (run / "config.json").exists(), steps), run, trigger))
        check_run_folder(run)
    while not finished(run, steps):
        run_to_end(train_command(data, run, (run / "config.json").exists(), steps), run)
    check_run_folder(run)
    return kills


def crash_prediction(run: Path, images: Path, out: Path, triggers: list) -> list[Kill]:
    """One `unetkit predict` per trigger, each killed where it says; check the outputs after each kill; then
    predict to the end. Returns where each kill landed."""
    kills = []
    for trigger in triggers:
        kills.append(kill_when(predict_command(run, images, out), out, trigger))
        check_predictions(out)
    run_to_end(predict_command(run, images, out), out)
    check_predictions(out)
    return kills


def weights_equal(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(bool((left[k] == right[k]).all()) for k in left)
