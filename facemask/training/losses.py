"""Losses by name. All take (logits (N, 18), targets) where targets are class ids (N,) or soft targets (N, 18)
(MixUp / CutMix), with optional label smoothing and class weights.

For the multi-head model the 18 logits are joint log-probabilities log p(mask) + log p(gender) + log p(age); the
loss is then applied to each attribute's marginal (exactly that head's log-softmax) and weighted per head.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facemask.config import LossConfig
from facemask.data.labels import NUM_CLASSES, SHAPE, decode
from facemask.errors import ConfigError

LOSSES: dict[str, Callable[[LossConfig], "SoftTargetLoss"]] = {}


def register_loss(name: str):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


def soft_targets(targets: torch.Tensor, classes: int, smoothing: float = 0.0) -> torch.Tensor:
    if targets.ndim == 1:
        targets = F.one_hot(targets, classes).float()
    return targets * (1 - smoothing) + smoothing / classes if smoothing else targets


class SoftTargetLoss(nn.Module):
    """Focal-style cross-entropy on soft targets: sum_c w_c t_c (1 - p_c)^gamma (-log p_c), averaged like
    PyTorch's weighted cross-entropy (divided by the summed target weights). gamma = 0 is cross-entropy."""

    def __init__(self, gamma: float = 0.0, smoothing: float = 0.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma, self.smoothing = gamma, smoothing
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = logits.float().log_softmax(1)
        t = soft_targets(targets, logits.shape[1], self.smoothing)
        per_class = -log_p * t
        if self.gamma:
            per_class = per_class * (1 - log_p.exp()).pow(self.gamma)
        if self.weight is None:
            return per_class.sum(1).mean()
        w = self.weight.to(logits.device)
        return (per_class * w).sum() / (t * w).sum()


class SoftF1Loss(nn.Module):
    """1 - macro F1 computed on probabilities (a differentiable stand-in for the competition metric)."""

    def __init__(self, smoothing: float = 0.0, weight: torch.Tensor | None = None, eps: float = 1e-7):
        super().__init__()
        self.smoothing, self.eps = smoothing, eps
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = logits.float().softmax(1)
        t = soft_targets(targets, logits.shape[1], self.smoothing)
        tp, fp, fn = (p * t).sum(0), (p * (1 - t)).sum(0), ((1 - p) * t).sum(0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        if self.weight is None:
            return 1 - f1.mean()
        w = self.weight.to(logits.device)
        return 1 - (f1 * w).sum() / w.sum()


@register_loss("ce")
def _ce(cfg: LossConfig, weight=None) -> nn.Module:
    return SoftTargetLoss(0.0, cfg.label_smoothing, weight)


@register_loss("label_smoothing")
def _label_smoothing(cfg: LossConfig, weight=None) -> nn.Module:
    return SoftTargetLoss(0.0, cfg.label_smoothing or 0.1, weight)


@register_loss("focal")
def _focal(cfg: LossConfig, weight=None) -> nn.Module:
    return SoftTargetLoss(cfg.gamma, cfg.label_smoothing, weight)


@register_loss("focal_ls")
def _focal_ls(cfg: LossConfig, weight=None) -> nn.Module:
    return SoftTargetLoss(cfg.gamma, cfg.label_smoothing or 0.1, weight)


@register_loss("f1")
def _f1(cfg: LossConfig, weight=None) -> nn.Module:
    return SoftF1Loss(cfg.label_smoothing, weight)


class MultiHeadLoss(nn.Module):
    """The loss applied to the mask (3), gender (2) and age (3) marginals of joint 18-class log-probabilities."""

    SHAPE = SHAPE

    def __init__(self, losses: list[nn.Module], head_weights: list[float]):
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.head_weights = head_weights

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        joint = logits.float().log_softmax(1).view(-1, *self.SHAPE)
        t = soft_targets(targets, NUM_CLASSES).view(-1, *self.SHAPE)
        total = logits.new_zeros((), dtype=torch.float32)
        for axis, (loss, weight) in enumerate(zip(self.losses, self.head_weights)):
            other = tuple(a + 1 for a in range(3) if a != axis)
            total = total + weight * loss(joint.logsumexp(other), t.sum(other))
        return total


def class_weights(mode: str, labels, classes: int = NUM_CLASSES) -> torch.Tensor | None:
    """none | inverse | sqrt_inverse class frequency, normalised to mean 1 over the classes present."""
    if mode == "none":
        return None
    counts = torch.bincount(torch.as_tensor(np.array(labels, dtype=np.int64)), minlength=classes).float()
    weight = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    if mode == "sqrt_inverse":
        weight = weight.sqrt()
    elif mode != "inverse":
        raise ConfigError(f"unknown option loss.class_weights={mode!r} (known: none, inverse, sqrt_inverse)")
    return weight * (counts > 0).sum() / weight.sum()


class AgeDistributionLoss(nn.Module):
    """For the age head (model.head=multi_age): the multi-head loss on the 18 joint classes, plus ``weight`` x the
    cross-entropy between the head's age distribution and a Gaussian of ``sigma`` years around the person's exact
    age (label distribution learning: neighbouring ages share the target's mass).

    Its targets pack the exact age with the class, ``class + NUM_CLASSES * age`` (see :func:`pack_ages`), so that
    loaders, samplers and the resume state carry one integer per image as for every other head."""

    def __init__(self, base: nn.Module, sigma: float, weight: float, bins: int):
        super().__init__()
        self.base, self.weight = base, weight
        ages = torch.arange(bins, dtype=torch.float32)
        self.register_buffer("ages", ages, persistent=False)
        self.sigma = sigma

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim != 1:
            raise ConfigError("model.head=multi_age trains on exact ages: turn batch mixing off (aug.mixup_alpha, "
                              "aug.cutmix_alpha, aug.halfmix_p)")
        classes, ages = targets % NUM_CLASSES, (targets // NUM_CLASSES).float()
        joint, age_log = outputs[:, :NUM_CLASSES], outputs[:, NUM_CLASSES:].float()
        target = torch.exp(-0.5 * ((self.ages.to(outputs.device)[None] - ages[:, None]) / self.sigma) ** 2)
        target = target / target.sum(1, keepdim=True)
        return self.base(joint, classes) + self.weight * -(target * age_log).sum(1).mean()


def pack_ages(labels, ages, bins: int):
    """Training targets for the age head: class id + NUM_CLASSES x exact age (clipped to the head's bins)."""
    return np.asarray(labels, dtype=np.int64) + NUM_CLASSES * np.clip(np.asarray(ages, dtype=np.int64), 0, bins - 1)


def create_loss(cfg: LossConfig, labels=None, multihead: bool = False, age_bins: int = 0) -> nn.Module:
    """The configured loss; ``labels`` (training class ids) are needed for class weights. ``age_bins`` > 0: the age
    head's loss (multi-head loss + exact-age distribution)."""
    if age_bins:
        return AgeDistributionLoss(create_loss(cfg, labels, multihead=True), cfg.age_sigma, cfg.age_weight, age_bins)
    if cfg.name not in LOSSES:
        raise ConfigError(f"unknown option loss.name={cfg.name!r} (known: {', '.join(sorted(LOSSES))})")
    if cfg.class_weights not in ("none", "inverse", "sqrt_inverse"):
        raise ConfigError(f"unknown option loss.class_weights={cfg.class_weights!r} "
                          f"(known: none, inverse, sqrt_inverse)")
    if not multihead:
        weight = class_weights(cfg.class_weights, labels) if labels is not None else None
        return LOSSES[cfg.name](cfg, weight)
    if len(cfg.head_weights) != 3:
        raise ConfigError(f"option loss.head_weights needs 3 values (mask, gender, age), got {cfg.head_weights}")
    heads = []
    for axis, classes in enumerate(MultiHeadLoss.SHAPE):
        weight = None
        if labels is not None and cfg.class_weights != "none":
            part = decode(torch.as_tensor(labels))[axis]
            weight = class_weights(cfg.class_weights, part, classes)
        heads.append(LOSSES[cfg.name](cfg, weight))
    return MultiHeadLoss(heads, cfg.head_weights)
