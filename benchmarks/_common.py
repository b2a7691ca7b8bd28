"""Shared helpers for the benchmarks: timing loops measured side by side in one process, and the eval answers."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemask.errors import DataError  # noqa: E402
from facemask.submission import read_answers  # noqa: E402


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


def eval_labels(answers_path: str | Path, image_ids: Sequence[str]) -> np.ndarray:
    """The true class of each eval image, in ``image_ids``' order, from an answers file (ImageID,ans) read and
    checked as `facemask score` reads it; a DataError names the file and the first problem."""
    answers = read_answers(answers_path)
    by_id = answers.set_index("ImageID")["ans"]
    missing = sorted(set(image_ids) - set(by_id.index))
    if missing:
        raise DataError(f"{answers_path}: no answer for {missing[0]} ({len(missing)} eval images in all)")
    return by_id.loc[list(image_ids)].astype(int).to_numpy()
