"""Classifier heads by name, put on a timm backbone that returns pooled features (``num_classes=0``).

Every head returns 18 values whose softmax is the class distribution, so evaluation, prediction, ensembles and
ONNX treat all heads alike. The multi-head returns log p(mask) + log p(gender) + log p(age) for each class; the
age head (``multi_age``) gets p(age group) from a distribution over the exact age.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from facemask.config import ModelConfig
from facemask.data.labels import NUM_CLASSES, SHAPE
from facemask.errors import ConfigError

HEADS: dict[str, Callable[..., nn.Module]] = {}
AGE_BINS = 101  # the age head's distribution: one bin per year, 0..100


def register_head(name: str):
    def wrap(fn):
        HEADS[name] = fn
        return fn
    return wrap


@register_head("linear")
def linear_head(in_features: int, num_classes: int, cfg: ModelConfig) -> nn.Module:
    """Dropout + one linear layer."""
    return nn.Sequential(nn.Dropout(cfg.drop_rate), nn.Linear(in_features, num_classes))


@register_head("shallow")
def shallow_head(in_features: int, num_classes: int, cfg: ModelConfig) -> nn.Module:
    """Two layers: linear -> ReLU -> dropout -> linear."""
    return nn.Sequential(nn.Dropout(cfg.drop_rate), nn.Linear(in_features, cfg.hidden), nn.ReLU(inplace=True),
                         nn.Dropout(cfg.drop_rate), nn.Linear(cfg.hidden, num_classes))


class MultiHead(nn.Module):
    """Separate mask (3), gender (2) and age (3) classifiers joined into 18 joint log-probabilities."""

    def __init__(self, in_features: int, drop_rate: float):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.mask = nn.Linear(in_features, SHAPE[0])
        self.gender = nn.Linear(in_features, SHAPE[1])
        self.age = nn.Linear(in_features, SHAPE[2])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.drop(features)
        mask = self.mask(x).log_softmax(1)[:, :, None, None]
        gender = self.gender(x).log_softmax(1)[:, None, :, None]
        age = self.age(x).log_softmax(1)[:, None, None, :]
        return (mask + gender + age).flatten(1)  # row-major over SHAPE: the class ids of facemask.data.labels


@register_head("multi")
def multi_head(in_features: int, num_classes: int, cfg: ModelConfig, **_) -> nn.Module:
    if num_classes != NUM_CLASSES:
        raise ConfigError(f"model.head=multi needs the {NUM_CLASSES} mask x gender x age classes")
    return MultiHead(in_features, cfg.drop_rate)


class AgeHead(nn.Module):
    """Mask (3) and gender (2) classifiers, and a distribution over the exact age (one bin per year) whose mass in
    each age group is the group's probability: joined into 18 joint log-probabilities like ``multi``.

    Trained on the exact ages of train.csv (facemask.training.losses.AgeDistributionLoss), so that a 29-year-old and
    a 31-year-old teach the head that they are neighbours rather than two unrelated classes. In training mode the
    output also carries the age distribution (18 + AGE_BINS columns) for the loss; in eval mode (validation,
    prediction, ONNX) it is the 18 classes only."""

    def __init__(self, in_features: int, drop_rate: float, age_thresholds: tuple[int, int]):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.mask = nn.Linear(in_features, SHAPE[0])
        self.gender = nn.Linear(in_features, SHAPE[1])
        self.age = nn.Linear(in_features, AGE_BINS)
        low, high = age_thresholds
        groups = torch.tensor([0 if a < low else 1 if a < high else 2 for a in range(AGE_BINS)])
        self.register_buffer("bin_groups", nn.functional.one_hot(groups, SHAPE[2]).float(), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.drop(features)
        mask = self.mask(x).log_softmax(1)[:, :, None, None]
        gender = self.gender(x).log_softmax(1)[:, None, :, None]
        ages = self.age(x).log_softmax(1)  # (N, AGE_BINS)
        # log of each group's mass: logsumexp over its bins (log 0 for bins outside it)
        group = torch.logsumexp(ages[:, :, None] + torch.log(self.bin_groups.clamp(min=1e-30))[None], 1)
        joint = (mask + gender + group[:, None, None, :]).flatten(1)
        return torch.cat([joint, ages], 1) if self.training else joint


@register_head("multi_age")
def multi_age_head(in_features: int, num_classes: int, cfg: ModelConfig, age_thresholds=(30, 60)) -> nn.Module:
    if num_classes != NUM_CLASSES:
        raise ConfigError(f"model.head=multi_age needs the {NUM_CLASSES} mask x gender x age classes")
    return AgeHead(in_features, cfg.drop_rate, tuple(age_thresholds))


def create_head(cfg: ModelConfig, in_features: int, num_classes: int,
                age_thresholds: tuple[int, int] = (30, 60)) -> nn.Module:
    if cfg.head not in HEADS:
        raise ConfigError(f"unknown option model.head={cfg.head!r} (known: {', '.join(sorted(HEADS))})")
    if cfg.head == "multi_age":
        return HEADS[cfg.head](in_features, num_classes, cfg, age_thresholds=age_thresholds)
    return HEADS[cfg.head](in_features, num_classes, cfg)
