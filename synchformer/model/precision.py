"""Which number format the model computes in: fp32, or bf16 / fp16 autocast where the hardware is fast at it.

``auto`` picks bf16 on a CUDA GPU with native bf16 (compute capability 8.0 and up: A100, H100, RTX 30xx+)
and on a CPU with bf16 matrix units (AVX512_BF16 or AMX, read from /proc/cpuinfo), fp32 elsewhere: a CPU
without them emulates bf16 and runs it slower than fp32 (measured in benchmarks/bench_precision.py). On a CPU
it also needs a model whose matrices are big enough to gain: the tiny synthetic models (32-64 px, width 48-64)
run slower in bf16 even with the units (casts cost more than the small matmuls save), so they stay in fp32. Under
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


# bf16 pays on a CPU once a visual segment's activations (tokens x width) are this large. Measured with
# `benchmarks/bench_precision.py --sizes` on a 2-core Xeon with AVX512_BF16 + AMX, bf16 against fp32: 32 px /
# width 48 (1.5k) 0.65x, 64 px / 64 (8k) 0.76x, 224 px / 128 (200k) 1.75x, 224 px / 768 (1.2M) 3.20x.
CPU_BF16_MIN_ACTIVATION = 1 << 16


def gains_from_bf16_on_cpu(cfg) -> bool:
    """Whether a model of ``cfg`` (a ModelConfig) runs faster in bf16 than fp32 on a CPU with bf16 units."""
    tokens = cfg.v_tokens * cfg.v_patches
    return tokens * cfg.v_width >= CPU_BF16_MIN_ACTIVATION


def resolve(precision: str, device: torch.device | str, cfg=None) -> str:
    """``auto`` -> fp32 or bf16 for ``device`` (and, on a CPU, for a model of ``cfg``: small ones stay fp32);
    fp16 off a CUDA GPU is refused in one line."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise SynchformerError(None, f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp32"
        fast = device.type == "cpu" and cpu_has_fast_bf16()
        return "bf16" if fast and (cfg is None or gains_from_bf16_on_cpu(cfg)) else "fp32"
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
            m.precision = resolve(precision, m.device, getattr(m, "cfg", None))
        yield
    finally:
        for m, p in zip(models, saved):
            m.precision = p
