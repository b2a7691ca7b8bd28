"""A torch Dataset over a sample table: cached or freshly decoded uint8 images -> preset transform."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from facemask.data.images import Decoding, load_image


class FaceDataset(Dataset):
    """Items are (uint8 CHW tensor, label). ``pixels`` is the decoded-image cache (rows = ``files``) or None.

    An item may be asked for as ``(index, seed)``: the transform then draws its randomness from that seed alone
    (see facemask.data.samplers), so augmentation is the same whatever the workers, batch order or resumption.
    """

    def __init__(self, files: Sequence[str], labels: Sequence[int] | None, size: tuple[int, int],
                 transform: Callable[[torch.Tensor], torch.Tensor], pixels: np.ndarray | None = None,
                 rows: Sequence[int] | None = None, decoding: Decoding | None = None, defer: bool = False,
                 covers: np.ndarray | None = None):
        self.files = list(files)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.size = size
        self.decoding = decoding
        self.defer = defer  # return (image, label, seed) and leave ``transform`` to the training loop
        self.transform = transform
        self.pixels = pixels
        self.rows = np.arange(len(self.files)) if rows is None else np.asarray(rows)
        self.covers = covers  # (N, H, W, 4) rows as ``pixels``: bare face and cover, appended as channels 4..7
        if covers is not None and (pixels is None or not defer):
            raise ValueError("covers come with the image cache and batch augmentation (mask_restyle)")

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> torch.Tensor:
        if self.pixels is not None:
            array = np.array(self.pixels[self.rows[index]])  # a writable copy of the memmap row
            if self.covers is not None:
                array = np.concatenate([array, self.covers[self.rows[index]]], axis=2)
        else:
            array = load_image(self.files[index], self.size, self.decoding)
        return torch.from_numpy(array).permute(2, 0, 1)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = self.image(index)
        label = -1 if self.labels is None else int(self.labels[index])
        if self.defer:  # augmentation happens on the device, per sample, from the same seed (augment_batch)
            return image, label, -1 if seed is None else seed
        return apply_seeded(self.transform, image, seed), label


def apply_seeded(transform: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, seed: int | None
                 ) -> torch.Tensor:
    """``transform(image)`` drawing its randomness from ``seed`` alone (None: from the current RNG)."""
    if seed is None or seed < 0:
        return transform(image)
    with torch.random.fork_rng(devices=[]):  # keep the caller's RNG stream (dropout) untouched
        torch.default_generator.manual_seed(seed)  # the CPU generator: transforms draw their parameters there
        return transform(image)


def augment_batch(transform: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                  seeds: torch.Tensor) -> torch.Tensor:
    """Augment a batch already on the device, one sample at a time with its own seed, so the result is the same
    as augmenting in the loader (bit for bit on the CPU) whatever the device. Written by hand: torchvision's v2
    transforms draw one set of parameters for a whole batch."""
    return torch.stack([apply_seeded(transform, image, int(seed)) for image, seed in zip(images, seeds.tolist())])
