"""Shared helpers for the benchmarks: timing loops measured side by side in one process."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def bf16_supported() -> bool:
    """True where the CPU has native bf16 matrix instructions (AVX-512 BF16 / AMX); otherwise bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def images_per_second(step: Callable[[], None], batch: int, warmup: int = 2, seconds: float = 6.0,
                      min_steps: int = 3) -> float:
    """Run ``step`` (one batch) after ``warmup`` calls until ``seconds`` have passed; images per second."""
    for _ in range(warmup):
        step()
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)
