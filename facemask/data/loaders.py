"""DataLoaders for a sample table, with the decoded-image cache and worker counts chosen for the machine."""
from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from facemask.config import Config, DataConfig
from facemask.data.dataset import FaceDataset
from facemask.data.images import Decoding, build_cache, check_images
from facemask.data.transforms import decode_crop
from facemask.errors import ConfigError
from facemask.io import cpu_count


def resolve_workers(cfg: DataConfig) -> int:
    """Cached pixels need no workers (indexing + a flip is cheaper than inter-process transfer on few cores);
    decoding JPEGs per epoch does, but leave the compute threads most of the CPU."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    return 0 if cfg.cache else max(1, min(4, cpu_count() - 1))


AUGMENT_ON = ("auto", "loader", "device")
AUGMENT_MODES = ("per_image", "batch")


def augment_on_device(cfg: DataConfig, device: torch.device) -> bool:
    """Whether training augmentation runs on the device (data.augment_on; auto = on a GPU) instead of the loader."""
    if cfg.augment_on not in AUGMENT_ON:
        raise ConfigError(f"unknown option data.augment_on={cfg.augment_on!r} (known: {', '.join(AUGMENT_ON)})")
    return cfg.augment_on == "device" or (cfg.augment_on == "auto" and device.type == "cuda")


def batch_augment(cfg: Config, device: torch.device):
    """The training loop's ``augment(images, seeds, labels) -> (images, labels)``, or None when the loader augments
    each image itself:
    ``data.augment_mode=batch`` (vectorised presets, any device), or per-image presets on the device."""
    if cfg.data.augment_mode not in AUGMENT_MODES:
        raise ConfigError(f"unknown option data.augment_mode={cfg.data.augment_mode!r} "
                          f"(known: {', '.join(AUGMENT_MODES)})")
    from facemask.data.batch_transforms import COVERED, LABELLING, BatchAugment
    from facemask.data.transforms import build_transforms, preset_names

    covered = [name for name in preset_names(cfg.data.augment) if name in COVERED]
    if covered and cfg.data.augment_mode != "batch":
        raise ConfigError(f"data.augment preset {covered[0]!r} needs data.augment_mode=batch")
    if covered and not cfg.data.cache:
        raise ConfigError(f"data.augment preset {covered[0]!r} needs data.cache=true (it finds each mask from the "
                          "cached photos)")
    if cfg.data.augment_mode == "batch":
        return BatchAugment(cfg.data.augment, cfg.aug)
    labelling = [name for name in preset_names(cfg.data.augment) if name in LABELLING]
    if labelling:
        raise ConfigError(f"data.augment preset {labelling[0]!r} changes or reads labels, so it needs "
                          "data.augment_mode=batch")
    if augment_on_device(cfg.data, device):
        from facemask.data.dataset import augment_batch

        transform = build_transforms(cfg.data.augment, cfg.aug)[0]
        return lambda images, seeds, labels: (augment_batch(transform, images, seeds), labels)
    return None


def image_size(cfg: DataConfig) -> tuple[int, int]:
    return cfg.height, cfg.width


def decoding_of(cfg: Config, load_detector: bool = True) -> Decoding:
    """The run's decoding (centre crop, letterbox, face crop): one place, so training, evaluation and prediction
    agree. A face detector that cannot load fails here, before any work (unless ``load_detector`` is False)."""
    data = cfg.data
    decoding = Decoding(crop=decode_crop(data.augment, cfg.aug), resize=data.resize, face=data.face_crop,
                        face_margin=data.face_margin, face_fallback=data.face_fallback)
    if decoding.face != "none" and load_detector:
        from facemask.data.faces import get_detector

        get_detector(decoding.face)
    return decoding


def load_pixels(files: Sequence[str], cfg: Config, progress: bool = True
                ) -> tuple[np.ndarray | None, list[tuple[str, str]]]:
    """(decoded-image cache or None, [(file, problem)]): every image is decoded once up front either way, so a
    bad image is found before training starts, not an hour in."""
    decoding = decoding_of(cfg)
    if not cfg.data.cache:
        return None, check_images(list(files), image_size(cfg.data), progress=progress, decoding=decoding)
    return build_cache(list(files), image_size(cfg.data), cfg.data.cache_dir or None, progress=progress,
                       decoding=decoding)


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C is the trainer's to handle (it saves a checkpoint); workers must not die of it first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CachedBatches:
    """Evaluation batches sliced straight from the decoded-image cache: one copy per batch, no per-image work
    and no collation, and the (N, H, W, 3) rows viewed as NCHW are already channels-last (what the model wants).
    Written by hand because a DataLoader handles images one at a time. ``transform`` must act on batches
    (the deterministic evaluation presets do)."""

    def __init__(self, pixels: np.ndarray, rows: Sequence[int], labels: Sequence[int] | None, batch_size: int,
                 transform: Callable, pin_memory: bool = False):
        self.pixels, self.rows = pixels, np.asarray(rows)
        labels = np.full(len(self.rows), -1) if labels is None else np.asarray(labels)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.batch_size, self.transform, self.pin_memory = batch_size, transform, pin_memory

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.rows), self.batch_size):
            rows = self.rows[start:start + self.batch_size]
            contiguous = len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all()
            block = np.array(self.pixels[rows[0]:rows[-1] + 1] if contiguous else self.pixels[rows])
            images = self.transform(torch.from_numpy(block).permute(0, 3, 1, 2))
            yield (images.pin_memory() if self.pin_memory else images), self.labels[start:start + self.batch_size]


def make_loader(files: Sequence[str], labels: Sequence[int] | None, cfg: Config,
                transform: Callable, pixels: np.ndarray | None = None, rows: Sequence[int] | None = None,
                sampler: Sampler | None = None, batch_size: int | None = None,
                pin_memory: bool = False, defer_augment: bool = False, covers: np.ndarray | None = None
                ) -> DataLoader | CachedBatches:
    """A loader in the table's order, or in ``sampler``'s (training: drop the last partial batch). With
    ``defer_augment`` batches are (images, labels, seeds) and ``transform`` is left to the training loop; with
    ``covers`` (rows as ``pixels``'s) each image carries its bare face and cover as channels 4..7 (mask_restyle).
    Evaluation from the cache (no sampler) reads whole batches at once (:class:`CachedBatches`)."""
    if pixels is not None and sampler is None and not defer_augment and covers is None:
        return CachedBatches(pixels, np.arange(len(files)) if rows is None else rows, labels,
                             batch_size or cfg.data.batch_size, transform, pin_memory)
    dataset = FaceDataset(files, labels, image_size(cfg.data), transform, pixels, rows, decoding_of(cfg),
                          defer=defer_augment, covers=covers)
    workers = resolve_workers(cfg.data)
    batch_size = batch_size or cfg.data.batch_size
    # Own generator: a loader must not draw its base seed from the global RNG, which dropout uses (exact resume).
    generator = torch.Generator().manual_seed(0)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, generator=generator,
                      pin_memory=pin_memory, worker_init_fn=_ignore_sigint if workers else None,
                      drop_last=sampler is not None and len(dataset) > batch_size)  # no size-1 BatchNorm batch
