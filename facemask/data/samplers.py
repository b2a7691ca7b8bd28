"""Samplers. The training order depends only on (seed, epoch), so an interrupted epoch resumes at any batch."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch: independent of workers, batch order and resumption."""
    return (seed * 1_000_003 + epoch * 100_003 + index) % (2**63 - 1)


class EpochSampler(Sampler):
    """Yields ``(index, augmentation seed)`` in a shuffled order drawn from (seed, epoch), from ``start`` on."""

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.order()[self.start:].tolist():
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.size - self.start
