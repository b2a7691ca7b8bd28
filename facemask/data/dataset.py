"""A torch Dataset over a sample table: cached or freshly decoded uint8 images -> preset transform."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class FaceDataset(Dataset):
    """Items are (uint8 CHW tensor, label). ``pixels`` is the decoded-image cache (rows = ``files``) or None.

    An item may be asked for as ``(index, seed)``: the transform then draws its randomness from that seed alone
    (see facemask.data.samplers), so augmentation is the same whatever the workers, batch order or resumption.
    """

    def __init__(self, files: Sequence[str], labels: Sequence[int] | None, size: tuple[int, int],
                 transform: Callable[[torch.Tensor], torch.Tensor], pixels: np.ndarray | None = None,
                 rows: Sequence[int] | None = None, crop: tuple[int, int] | None = None):
        self.files = list(files)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.size = size
        self.crop = crop
        self.transform = transform
        self.pixels = pixels
        self.rows = np.arange(len(self.files)) if rows is None else np.asarray(rows)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> torch.Tensor:
        if self.pixels is not None:
            array = np.array(self.pixels[self.rows[index]])  # a writable copy of the memmap row
        else:
            from facemask.data.images import load_image

            array = load_image(self.files[index], self.size, self.crop)
        return torch.from_numpy(array).permute(2, 0, 1)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = self.image(index)
        if seed is None:
            image = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):  # keep the caller's RNG stream (dropout) untouched
                torch.default_generator.manual_seed(seed)  # the CPU generator only (no CUDA seeding per sample)
                image = self.transform(image)
        label = -1 if self.labels is None else int(self.labels[index])
        return image, label
