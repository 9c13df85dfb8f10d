"""What every benchmark shares: machine info and dated JSON results."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str | None:
    """The CPU's model name on Linux (the platform string names the kernel, not the CPU)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def machine() -> dict:
    """The facts a reader needs to compare figures across machines."""
    import numpy
    import torch

    import unetkit

    info = {
        "unetkit": unetkit.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def save(name: str, result: dict) -> Path:
    """Write `results/NAME-YYYYmmdd-HHMMSS.json` with the date and machine info; print and return its path.

    Two benchmarks ending in the same second (one per core) get `-2`, `-3`, ... rather than one overwriting the other.
    """
    from unetkit.io import write_text

    now = datetime.datetime.now()
    path = _claim(f"{name}-{now:%Y%m%d-%H%M%S}")
    record = {"date": now.isoformat(timespec="seconds"), "machine": machine(), **result}
    write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    print(f"saved {path.relative_to(RESULTS.parent.parent)}")
    return path


def _claim(stem: str) -> Path:
    """A new results path for `stem`, reserved by creating it (O_EXCL), so no concurrent save takes it too."""
    for n in range(1, 100):
        path = RESULTS / f"{stem}{'' if n == 1 else f'-{n}'}.json"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free results name for {stem}")
