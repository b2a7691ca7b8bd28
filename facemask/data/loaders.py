"""DataLoaders for a sample table, with the decoded-image cache and worker counts chosen for the machine."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from facemask.config import DataConfig
from facemask.data.dataset import FaceDataset
from facemask.data.images import build_cache
from facemask.utils import cpu_count


def resolve_workers(cfg: DataConfig) -> int:
    """Cached pixels need no workers (indexing + a flip is cheaper than inter-process transfer on few cores);
    decoding JPEGs per epoch does, but leave the compute threads most of the CPU."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    return 0 if cfg.cache else max(1, min(4, cpu_count() - 1))


def image_size(cfg: DataConfig) -> tuple[int, int]:
    return cfg.height, cfg.width


def load_pixels(files: Sequence[str], cfg: DataConfig, progress: bool = True) -> np.ndarray | None:
    if not cfg.cache:
        return None
    return build_cache(list(files), image_size(cfg), cfg.cache_dir or None, progress=progress)


def make_loader(files: Sequence[str], labels: Sequence[int] | None, cfg: DataConfig,
                transform: Callable, pixels: np.ndarray | None = None, rows: Sequence[int] | None = None,
                shuffle: bool = False, seed: int = 0, batch_size: int | None = None,
                pin_memory: bool = False) -> DataLoader:
    dataset = FaceDataset(files, labels, image_size(cfg), transform, pixels, rows)
    workers = resolve_workers(cfg)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size or cfg.batch_size, shuffle=shuffle, num_workers=workers,
                      generator=generator, pin_memory=pin_memory, persistent_workers=workers > 0,
                      drop_last=shuffle and len(dataset) > (batch_size or cfg.batch_size))  # no size-1 BN batch
