"""Which number format the model computes in: fp32, or bf16 / fp16 autocast where the hardware is fast at it.

``auto`` picks bf16 on a CUDA GPU with native bf16 (compute capability 8.0 and up: A100, H100, RTX 30xx+)
and on a CPU with bf16 matrix units (AVX512_BF16 or AMX, read from /proc/cpuinfo), fp32 elsewhere: a CPU
without them emulates bf16 and runs it slower than fp32 (measured in benchmarks/bench_precision.py). Under
autocast the matmuls and convolutions run in the low precision, while torch keeps softmax and LayerNorm
statistics in fp32; the log-mel is computed before the model, in fp32, and the model's outputs are fp32.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from synchformer.errors import SynchformerError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """AVX512_BF16 or AMX-BF16 (Linux: /proc/cpuinfo flags; elsewhere: not known, so no)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve(precision: str, device: torch.device | str) -> str:
    """``auto`` -> fp32 or bf16 for ``device``; fp16 off a CUDA GPU is refused in one line."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise SynchformerError(None, f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise SynchformerError(None, f"precision fp16 needs a CUDA GPU (the device is {device}); use bf16 or fp32")
    return precision


def autocast(model) -> contextlib.AbstractContextManager:
    """The autocast context of ``model.precision`` on its device (a no-op for fp32)."""
    precision = getattr(model, "precision", "fp32")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(model.device.type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def using(precision: str | None, *models):
    """Run the block with ``models`` at ``precision`` (resolved for their device; None: as they are), then
    put their own back."""
    if precision is None:
        yield
        return
    models = [m for m in models if m is not None]
    saved = [getattr(m, "precision", "fp32") for m in models]
    try:
        for m in models:
            m.precision = resolve(precision, m.device)
        yield
    finally:
        for m, p in zip(models, saved):
            m.precision = p
