"""DataLoaders for a sample table, with the decoded-image cache and worker counts chosen for the machine."""
from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from facemask.config import Config, DataConfig
from facemask.data.dataset import FaceDataset
from facemask.data.images import build_cache, check_images
from facemask.data.transforms import decode_crop
from facemask.utils import cpu_count


def resolve_workers(cfg: DataConfig) -> int:
    """Cached pixels need no workers (indexing + a flip is cheaper than inter-process transfer on few cores);
    decoding JPEGs per epoch does, but leave the compute threads most of the CPU."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    return 0 if cfg.cache else max(1, min(4, cpu_count() - 1))


def image_size(cfg: DataConfig) -> tuple[int, int]:
    return cfg.height, cfg.width


def load_pixels(files: Sequence[str], cfg: Config, progress: bool = True
                ) -> tuple[np.ndarray | None, list[tuple[str, str]]]:
    """(decoded-image cache or None, [(file, problem)]): every image is decoded once up front either way, so a
    bad image is found before training starts, not an hour in."""
    crop = decode_crop(cfg.data.augment, cfg.aug)
    if not cfg.data.cache:
        return None, check_images(list(files), image_size(cfg.data), progress=progress, crop=crop)
    return build_cache(list(files), image_size(cfg.data), cfg.data.cache_dir or None, progress=progress, crop=crop)


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C is the trainer's to handle (it saves a checkpoint); workers must not die of it first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(files: Sequence[str], labels: Sequence[int] | None, cfg: Config,
                transform: Callable, pixels: np.ndarray | None = None, rows: Sequence[int] | None = None,
                sampler: Sampler | None = None, batch_size: int | None = None,
                pin_memory: bool = False) -> DataLoader:
    """A loader in the table's order, or in ``sampler``'s (training: drop the last partial batch)."""
    crop = decode_crop(cfg.data.augment, cfg.aug)
    dataset = FaceDataset(files, labels, image_size(cfg.data), transform, pixels, rows, crop)
    workers = resolve_workers(cfg.data)
    batch_size = batch_size or cfg.data.batch_size
    # Own generator: a loader must not draw its base seed from the global RNG, which dropout uses (exact resume).
    generator = torch.Generator().manual_seed(0)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, generator=generator,
                      pin_memory=pin_memory, worker_init_fn=_ignore_sigint if workers else None,
                      drop_last=sampler is not None and len(dataset) > batch_size)  # no size-1 BatchNorm batch
