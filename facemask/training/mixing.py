"""Batch mixing for training: timm's Mixup/CutMix, and the winning team's half-face mix."""
from __future__ import annotations

import torch
from timm.data import Mixup

from facemask.config import AugConfig
from facemask.data.labels import NUM_CLASSES
from facemask.training.losses import soft_targets


class HalfMix:
    """With probability p, the right half of every face comes from another face of the batch (the batch reversed);
    the targets are mixed half and half."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand(()) >= self.p:
            return images, targets
        half = images.shape[-1] // 2
        mixed = images.clone()
        mixed[..., half:] = images.flip(0)[..., half:]
        soft = soft_targets(targets, NUM_CLASSES)
        return mixed, 0.5 * soft + 0.5 * soft.flip(0)


class BatchMixer:
    """Applies the configured mixes to a float batch; returns (images, targets) with soft targets when mixed."""

    def __init__(self, aug: AugConfig):
        self.mixup = None
        if aug.mixup_alpha > 0 or aug.cutmix_alpha > 0:
            self.mixup = Mixup(mixup_alpha=aug.mixup_alpha, cutmix_alpha=aug.cutmix_alpha, prob=aug.mix_prob,
                               switch_prob=aug.mix_switch_prob, mode="batch", label_smoothing=0.0,
                               num_classes=NUM_CLASSES)
        self.halfmix = HalfMix(aug.halfmix_p) if aug.halfmix_p > 0 else None

    @property
    def active(self) -> bool:
        return self.mixup is not None or self.halfmix is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.float()
        targets = labels
        if self.mixup is not None and len(images) % 2 == 0:  # timm's Mixup pairs the batch with its reverse
            images, targets = self.mixup(images, labels)
        if self.halfmix is not None:
            images, targets = self.halfmix(images, targets)
        return images, targets
