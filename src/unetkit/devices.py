"""Where computation runs: the device named by an option, its precision and memory layout, a CPU's bf16, its allocator."""

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


def autocast_dtype(run, device) -> object | None:
    """The autocast dtype of training on `device` under RunConfig `run` (None: fp32).

    CUDA: bf16 where the GPU has it, else fp16 (with loss scaling). CPU: bf16 where native, unless switched off.
    """
    import torch

    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if run.amp else None
    native = cpu_has_native_bf16()
    if run.cpu_bf16 and not native:
        raise UserError("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 would be emulated and slower",
                        fix="train without --cpu-bf16")
    return torch.bfloat16 if native and run.cpu_bf16 is not False else None


def training_memory_format(run, norm: str, device):
    """channels_last (NHWC, faster convolutions) unless RunConfig `run` switched it off, or the model's `norm` is
    group norm on a CPU: NHWC is slower there (a default-preset step of 4 x 256^2, bf16, one thread: 1,246 ms in
    NHWC against 477 contiguous; in NHWC batch norm 329, unetkit's instance norm 314)."""
    import torch

    group_on_cpu = norm == "group" and torch.device(device).type == "cpu"
    return torch.channels_last if run.channels_last and not group_on_cpu else torch.contiguous_format


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed blocks instead of returning them to the system.

    A training step allocates and frees the same tens of MB each time; by
    default glibc maps large blocks afresh (and the kernel zero-fills their
    pages) on every allocation. Keeping them made a default-preset CPU step
    ~10% faster (docs/RESULTS.md); the cost is that the peak stays resident.
    A no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 32 * 2**20)  # blocks up to 32 MB (glibc's maximum) come from the heap ...
    mallopt(m_trim_threshold, 2**31 - 1)  # ... which is never trimmed ...
    mallopt(m_top_pad, 256 * 2**20)  # ... and grows in 256 MB strides
