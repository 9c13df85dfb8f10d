"""Where computation runs: the device named by an option, and whether a CPU has native bf16."""

from __future__ import annotations

from .errors import UserError


def resolve_device(name: str = "auto"):
    """A `torch.device` from "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r}", fix="use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA is not available on this machine", fix="use --device cpu")
    return device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 autocast runs natively (elsewhere it is emulated, and slower)."""
    import torch

    # torch exposes the CPU feature checks only as private helpers; absent ones mean "no".
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)
