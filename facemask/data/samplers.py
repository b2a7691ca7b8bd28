"""Training samplers. The order depends only on (seed, epoch), so an interrupted epoch resumes at any batch, and
each sample carries its own augmentation seed (independent of workers, batch order and resumption).

- ``none``: a shuffle of every training image once per epoch.
- ``weighted``: draws with replacement, each image weighted by 1 / (its class's count), so every class is drawn
  equally often on average (the seed team's version weighted the wrong classes; tests check near-uniform batches).
- ``imbalanced``: per-class balanced without randomness in the counts: every class gets len/num_classes draws per
  epoch, taken from a shuffle of that class repeated as needed (small classes repeat, large ones are subsampled).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from facemask.errors import ConfigError

SAMPLERS = ("none", "weighted", "imbalanced")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch."""
    return (seed * 1_000_003 + epoch * 100_003 + index) % (2**63 - 1)


class EpochSampler(Sampler):
    """Yields ``(index, augmentation seed)`` in an order drawn from (seed, epoch), from position ``start`` on.

    With ``num_replicas`` > 1 (DDP) each rank takes every num_replicas-th position of the same order.
    """

    def __init__(self, labels: Sequence[int], seed: int, mode: str = "none", num_replicas: int = 1, rank: int = 0):
        if mode not in SAMPLERS:
            raise ConfigError(f"unknown option data.sampler={mode!r} (known: {', '.join(SAMPLERS)})")
        self.labels = np.asarray(labels)
        self.seed, self.mode = seed, mode
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> torch.Tensor:
        """The whole epoch's order, before splitting between replicas."""
        n = len(self.labels)
        generator = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
        if self.mode == "none":
            return torch.randperm(n, generator=generator)
        classes, inverse, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
        if self.mode == "weighted":
            weights = torch.as_tensor(1.0 / counts[inverse], dtype=torch.double)
            return torch.multinomial(weights, n, replacement=True, generator=generator)
        per_class = int(np.ceil(n / len(classes)))
        picks = []
        for c in range(len(classes)):
            members = torch.as_tensor(np.flatnonzero(inverse == c))
            repeats = int(np.ceil(per_class / len(members)))
            tiled = torch.cat([members[torch.randperm(len(members), generator=generator)] for _ in range(repeats)])
            picks.append(tiled[:per_class])
        everything = torch.cat(picks)
        return everything[torch.randperm(len(everything), generator=generator)][:n]

    def positions(self) -> torch.Tensor:
        order = self.order()
        usable = len(order) - len(order) % self.num_replicas  # equal share per rank (drop, never pad)
        return order[:usable][self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        positions = self.positions().tolist()
        for k in range(self.start, len(positions)):
            # a shuffle holds each image once: its index keys its seed; the other modes repeat images, so the
            # position in the whole epoch's order does (each copy gets its own augmentation, on any replica)
            key = positions[k] if self.mode == "none" else self.rank + k * self.num_replicas
            yield positions[k], sample_seed(self.seed, self.epoch, key)

    def __len__(self) -> int:
        return len(self.labels) // self.num_replicas - self.start
